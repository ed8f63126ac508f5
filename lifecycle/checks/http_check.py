"""Drive the real prediction service over HTTP: start it, score the test set, time it, show drift, stop it.

Why over HTTP: the number that matters is what a client gets back from the serving image's code under gunicorn,
not what the trainer measured in-process; the two must agree exactly.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import numpy as np

from lifecycle.client import HttpService
from lifecycle.served import running_service


@dataclass
class HttpFigures:
    """What the service did with the real test set."""

    cold_start_s: float = 0.0
    json_accuracy: float = 0.0
    binary_accuracy: float = 0.0
    json_seconds: float = 0.0
    binary_images_per_s: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    drift_before: dict = field(default_factory=dict)
    drift_after: dict = field(default_factory=dict)


def single_image_latency(client: HttpService, images: np.ndarray, count: int = 300):
    """p50 and p99 in ms of one-image JSON requests, one client, after a short warm-up."""
    timings = []
    for i in range(count + 20):
        one = images[i % len(images)][None]
        start = time.perf_counter()
        client.predict_json(one)
        if i >= 20:
            timings.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(timings, 50)), float(np.percentile(timings, 99))


def shifted(images: np.ndarray) -> np.ndarray:
    """A batch a production system should flag: inverted images (dark garments on a white background)."""
    return (255 - images).astype(np.uint8)


# what starts the service: (model URI, extra_env=...) -> a context yielding (base URL, cold start in seconds)
Starter = Callable[..., AbstractContextManager[tuple[str, float]]]


def check_service(
    model_uri: str,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    log=print,
    extra_env: dict | None = None,
    serve: Starter = running_service,
) -> HttpFigures:
    """Start the service on `model_uri`, score the test set on both paths, time it, show drift, stop it.

    `serve`: the launcher (the demo's default starts `python -m service`; a test gives a loopback stand-in so the
    figures computed here are pinned in-process)."""
    figures = HttpFigures()
    # the drift reset is an operator route: enabled for this private run only, with a token made here
    token = secrets.token_urlsafe(32)
    admin = {"ADMIN_ENABLED": "true", "ADMIN_TOKEN": token, **(extra_env or {})}
    with serve(model_uri, extra_env=admin) as (base, cold_start):
        client = HttpService(base, admin_token=token)
        figures.cold_start_s = cold_start
        log(f"service healthy {cold_start:.2f} s after launch at {base}")
        start = time.perf_counter()
        figures.json_accuracy = float((client.classes_json(x_test) == y_test).mean())
        figures.json_seconds = time.perf_counter() - start
        log(f"JSON path: {len(x_test):,} images in {figures.json_seconds:.1f} s, accuracy {figures.json_accuracy:.4f}")
        start = time.perf_counter()
        figures.binary_accuracy = float((client.classes_bytes(x_test) == y_test).mean())
        figures.binary_images_per_s = len(x_test) / (time.perf_counter() - start)
        log(
            f"binary path: {figures.binary_images_per_s:,.0f} images/s (64 per request, one client), "
            f"accuracy {figures.binary_accuracy:.4f}"
        )
        figures.latency_p50_ms, figures.latency_p99_ms = single_image_latency(client, x_test)
        log(f"one image per request: p50 {figures.latency_p50_ms:.2f} ms, p99 {figures.latency_p99_ms:.2f} ms")
        figures.drift_before = client.drift() or {}
        client.reset_drift()
        client.classes_bytes(shifted(np.resize(x_test, (2000, 28, 28))))  # enough for drift's sample
        figures.drift_after = client.drift() or {}
        log(
            f"drift on the real test images: {figures.drift_before.get('drift_detected')}; "
            f"after 2,000 inverted images: {figures.drift_after.get('drift_detected')} "
            f"({', '.join(figures.drift_after.get('drifted', [])) or 'nothing'})"
        )
        client.close()
    return figures
