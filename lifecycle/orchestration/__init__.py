"""Orchestration: the plan of steps, running it locally, compiling it into a Kubeflow pipeline, running or drawing
the compiled pipeline. Reads the trainer only through its command lines and the registry."""
