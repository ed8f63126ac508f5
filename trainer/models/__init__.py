"""The model directory and its lifecycle: saving and loading it, evaluation, ONNX export, the registry and its gate."""
