"""Fashion-MNIST prediction service: an exported ONNX model behind Flask + gunicorn.

One image serves Cloud Run and Vertex AI endpoints. It needs only the model directory (model.onnx + metadata.json),
never the trainer package or TensorFlow. Start it with `python -m service`; build the app with `create_app`.
"""


def create_app(config=None, **kwargs):
    """The Flask application factory (imported lazily so `import service` stays cheap)."""
    from service.app import create_app as _create_app

    return _create_app(config, **kwargs)
