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
from typing import Any

import numpy as np
import requests

from contracts.layout import model_reference

TARGETS = ("local", "cloud-run", "vertex")
OCTET_STREAM = {"Content-Type": "application/octet-stream"}


class ServiceUnreachable(RuntimeError):
    """The configured service could not be reached or answered with an error; the message says which and why."""


class HttpService:
    """The service's own HTTP API at a base URL (the local process or Cloud Run)."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30, admin_token: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.admin_token = admin_token  # the service's operator routes (drift reset) need it; None: not ours to use
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        url = self.base_url + path
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise ServiceUnreachable(f"{method} {url}: {exc}") from None
        if response.status_code != 200:
            raise ServiceUnreachable(f"{method} {url} -> {response.status_code}: {response.text[:500]}")
        return response.json()

    def model(self) -> dict:
        return self._call("GET", "/v1/model")

    def predict_json(self, images: np.ndarray) -> list[dict]:
        """Vertex AI's request format: {"instances": [28x28 lists of 0-255]}."""
        return self._call("POST", "/predict", json={"instances": np.asarray(images).tolist()})["predictions"]

    def predict_bytes(self, images: np.ndarray) -> list[dict]:
        """N x 784 raw uint8 bytes: no JSON parsing on either side."""
        body = np.ascontiguousarray(images, dtype=np.uint8).tobytes()
        return self._call("POST", "/predict", data=body, headers=OCTET_STREAM)["predictions"]

    def drift(self) -> dict | None:
        return self._call("GET", "/monitoring/drift")

    def reset_drift(self) -> bool:
        """Reset the drift counts, if this client holds the service's operator token; False (and why) if not."""
        if not self.admin_token:
            print("drift not reset: the reset is an operator route and this client has no ADMIN_TOKEN for it")
            return False
        self._call("POST", "/monitoring/drift/reset", headers={"Authorization": f"Bearer {self.admin_token}"})
        return True

    def close(self) -> None:
        self.session.close()


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
    env = {"ADMIN_ENABLED": "true", "ADMIN_TOKEN": admin_token, **(local_env or {})}
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
