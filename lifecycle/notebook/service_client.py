"""Reach the prediction service from a notebook: a local process on the champion (default), a URL (Cloud Run) or
the Vertex AI endpoint, each behind the same small client (predict as Vertex JSON or raw bytes, read drift).

Why one client for three places: the notebook reads the same top to bottom wherever the model is served; only
the first cell's choice changes. Drift is read from the service itself: the Vertex AI endpoint forwards only the
predict and health routes, so there it is None.
"""

from __future__ import annotations

import atexit
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import numpy as np

from contracts.layout import model_reference
from lifecycle.client import OCTET_STREAM, HttpService, ServiceUnreachable

TARGETS = ("local", "cloud-run", "vertex")


class VertexEndpoint:
    """The Vertex AI endpoint: `predict` for JSON, `rawPredict` passes the bytes to the same container."""

    def __init__(self, endpoint_name: str):
        from google.cloud import aiplatform

        self.endpoint_name = endpoint_name
        self.endpoint = aiplatform.Endpoint(endpoint_name)

    def model(self) -> dict:
        return {"endpoint": self.endpoint_name, "deployed_models": [m.id for m in self.endpoint.list_models()]}

    def predict_json(self, images: np.ndarray) -> list[dict]:
        return list(self.endpoint.predict(instances=np.asarray(images).tolist()).predictions)

    def predict_bytes(self, images: np.ndarray) -> list[dict]:
        body = np.ascontiguousarray(images, dtype=np.uint8).tobytes()
        response = self.endpoint.raw_predict(body=body, headers=OCTET_STREAM)
        if response.status_code != 200:
            raise ServiceUnreachable(f"rawPredict on {self.endpoint_name} -> {response.status_code}: {response.text}")
        return response.json()["predictions"]

    def drift(self) -> dict | None:
        return None

    def reset_drift(self) -> bool:
        return False

    def close(self) -> None:
        return None


def identity_token(audience: str) -> str:
    """An ID token for a private Cloud Run service: from service-account credentials (on Workbench, the VM's),
    else from `gcloud auth print-identity-token` (user credentials cannot mint one for an audience)."""
    try:
        import google.auth.exceptions
        import google.auth.transport.requests
        import google.oauth2.id_token

        return google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
    except (ImportError, google.auth.exceptions.GoogleAuthError):
        pass
    try:
        return subprocess.run(
            ["gcloud", "auth", "print-identity-token"], capture_output=True, text=True, check=True, timeout=60
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServiceUnreachable(
            f"no identity token for {audience}: no service-account credentials and gcloud failed ({exc})"
        ) from None


@contextmanager
def open_service(
    settings, target: str = "local", url: str | None = None, *, local_env: dict[str, str] | None = None
) -> Iterator[HttpService | VertexEndpoint]:
    """A client for `target`: "local" starts `python -m service` on the champion and stops it afterwards;
    "cloud-run" calls `url` (`cdktf output` service_url) or, without one, a service already running there;
    "vertex" calls the endpoint infra/ declares for this environment."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    if target == "vertex":
        client: HttpService | VertexEndpoint = VertexEndpoint(settings.names.endpoint_name)
        yield client
        return
    if url:
        client = HttpService(url, token=identity_token(url) if target == "cloud-run" else None)
        try:
            yield client
        finally:
            client.close()
        return
    if target == "cloud-run":
        raise ValueError("cloud-run needs the service's URL (`npx cdktf output` prints service_url)")
    from lifecycle.served import running_service

    admin_token = secrets.token_urlsafe(32)  # a private local service: its operator routes are ours
    from trainer.api import index_key_environment  # the service checks the index's signature

    env = {"ADMIN_ENABLED": "true", "ADMIN_TOKEN": admin_token, **index_key_environment(settings), **(local_env or {})}
    with running_service(model_reference(settings.models_bucket), workers=1, extra_env=env) as (base, _):
        client = HttpService(base, admin_token=admin_token)
        try:
            yield client
        finally:
            client.close()


def predicted_classes(client: HttpService | VertexEndpoint, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """Class ids for any number of images, as raw bytes in requests of `batch` (the service's default limit)."""
    out: list[int] = []
    for start in range(0, len(images), batch):
        out += [p["class_id"] for p in client.predict_bytes(images[start : start + batch])]
    return np.asarray(out, dtype=np.int64)


_open_for_notebook = ExitStack()
atexit.register(_open_for_notebook.close)


def connect(
    settings, target: str = "local", url: str | None = None, *, local_env: dict[str, str] | None = None
) -> HttpService | VertexEndpoint:
    """open_service for a notebook, where the client must outlive a cell: `disconnect()` or the kernel's exit
    stops a local service, so none is left running when a later cell fails."""
    return _open_for_notebook.enter_context(open_service(settings, target, url, local_env=local_env))


def disconnect() -> None:
    _open_for_notebook.close()
