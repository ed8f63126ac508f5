"""Fashion-MNIST prediction service: an exported ONNX model behind Flask + gunicorn.

One image serves Cloud Run and Vertex AI endpoints. It needs only the model directory (model.onnx + metadata.json),
never the trainer package or TensorFlow. Start it with `python -m service`; build the app with `create_app`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from service.config import ServiceConfig


def create_app(config: ServiceConfig | Mapping[str, str] | None = None, **kwargs: Any) -> Flask:
    """The Flask application factory (imported lazily so `import service` stays cheap)."""
    from service.app import create_app as _create_app

    return _create_app(config, **kwargs)
