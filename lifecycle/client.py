"""The one HTTP client of the prediction service (a local process or Cloud Run): the lifecycle's checks, the
shadow and the notebooks all call the service through it, so a route or a body format changes in one place."""

from __future__ import annotations

from typing import Any

import numpy as np
import requests

from contracts.serving import ROLLOUT_ROUTE

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

    def rollout(self) -> dict:
        return self._call("GET", ROLLOUT_ROUTE)

    def classes_json(self, images: np.ndarray, batch: int = 100) -> np.ndarray:
        """Class ids for any number of images, as Vertex AI JSON in requests of `batch`."""
        out: list[int] = []
        for start in range(0, len(images), batch):
            out += [p["class_id"] for p in self.predict_json(images[start : start + batch])]
        return np.asarray(out, dtype=np.int64)

    def classes_bytes(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
        """Class ids for any number of images, as raw bytes in requests of `batch`."""
        out: list[int] = []
        for start in range(0, len(images), batch):
            out += [p["class_id"] for p in self.predict_bytes(images[start : start + batch])]
        return np.asarray(out, dtype=np.int64)

    def reset_drift(self) -> bool:
        """Reset the drift counts, if this client holds the service's operator token; False (and why) if not."""
        if not self.admin_token:
            print("drift not reset: the reset is an operator route and this client has no ADMIN_TOKEN for it")
            return False
        self._call("POST", "/monitoring/drift/reset", headers={"Authorization": f"Bearer {self.admin_token}"})
        return True

    def close(self) -> None:
        self.session.close()
