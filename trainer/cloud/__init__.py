"""Google Cloud adapters: Vertex AI custom jobs, model deployment, Experiments and AutoML.

Each module builds its requests with pure functions (tests bind them to the SDK's signatures) and sends them in
one small function; nothing else in the trainer imports google-cloud-aiplatform.
"""
