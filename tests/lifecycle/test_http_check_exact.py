"""The demo's check of the served model (lifecycle/checks/http_check.py's `check_service`, issue 27's lifecycle-small
group) in-process: a loopback stand-in for the service, started by the launcher `check_service` takes, answers each
route like the service (a class per image, drift counted since the last reset, the reset only with the operator
token) and moves a clock only it advances, so every figure and every line the demo reports is exact. The demo itself
(`make demo`) runs the same function on the real `python -m service`."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import numpy as np
import pytest

from lifecycle.checks.http_check import check_service
from lifecycle.client import ServiceUnreachable

JSON, BYTES = "application/json", "application/octet-stream"


class StandIn:
    """The service's routes on a loopback port: class = the image's first pixel mod 10; a JSON image costs
    1 ms + 0.1 ms per unit of that pixel on the clock, a binary one 0.1 ms; drift = the mean pixel since the
    last reset above 100."""

    def __init__(self) -> None:
        self.clock = [100.0]  # not 0: a duration read as a sum of two clock readings would pass
        self.sent: list[tuple[str, str, str | None, int]] = []  # method, path, content type, images
        self.token: str | None = None  # the ADMIN_TOKEN the launcher was given
        self.resets: list[str | None] = []  # the Authorization header of each reset
        self.drift_on, self.predict_status = True, 200
        self.images, self.pixels = 0, 0.0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # one kept-alive connection, like the client's session with gunicorn
            disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK wait per reply

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                kind = self.headers.get("Content-Type")
                reply, status = stand_in.route(self.command, self.path, kind, body, self.headers.get("Authorization"))
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", JSON)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def route(self, method: str, path: str, kind: str | None, body: bytes, auth: str | None) -> tuple[object, int]:
        if path == "/predict":
            if kind == BYTES:
                images = np.frombuffer(body, dtype=np.uint8).reshape(-1, 28, 28)
                self.clock[0] += 0.0001 * len(images)
            else:
                images = np.asarray(json.loads(body)["instances"], dtype=np.uint8)
                self.clock[0] += sum(0.001 + 0.0001 * int(image[0, 0]) for image in images)
            self.sent.append((method, path, kind, len(images)))
            if self.predict_status != 200:
                return {"error": "unavailable"}, self.predict_status
            self.images += len(images)
            self.pixels += float(images.astype(np.float64).sum())
            return {"predictions": [{"class_id": int(image[0, 0]) % 10} for image in images]}, 200
        self.sent.append((method, path, kind, 0))
        if path == "/monitoring/drift/reset":
            self.resets.append(auth)
            if auth != f"Bearer {self.token}":
                return {"error": "forbidden"}, 403
            self.images, self.pixels = 0, 0.0
            return {"reset": True}, 200
        if not self.drift_on:
            return None, 200
        drifted = self.images > 0 and self.pixels / (self.images * 784) > 100
        features = ["mean_intensity", "dark_background"] if drifted else []
        return {"drift_detected": drifted, "drifted": features, "images": self.images}, 200

    def starter(self, launches: list[tuple[str, dict]], stopped: list[bool]):
        @contextmanager
        def serve(model_uri: str, *, extra_env: dict | None = None) -> Iterator[tuple[str, float]]:
            launches.append((model_uri, dict(extra_env or {})))
            self.token = (extra_env or {}).get("ADMIN_TOKEN")
            try:
                yield self.base, 1.25
            finally:
                stopped.append(True)

        return serve


@pytest.fixture
def stand_in(monkeypatch) -> Iterator[StandIn]:
    stand_in = StandIn()
    monkeypatch.setattr("lifecycle.checks.http_check.time", SimpleNamespace(perf_counter=lambda: stand_in.clock[0]))
    thread = threading.Thread(target=stand_in.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield stand_in
    stand_in.server.shutdown()
    stand_in.server.server_close()


def _test_set(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Image k has k mod 50 as its first pixel (so the stand-in answers class k mod 10), zeros elsewhere; the
    labels agree except for the first 90."""
    x = np.zeros((count, 28, 28), dtype=np.uint8)
    x[:, 0, 0] = np.arange(count) % 50
    y = np.arange(count) % 10
    y[:90] = (y[:90] + 1) % 10
    return x, y


@pytest.mark.slow  # ~8 s at load 10: 2,400 images over JSON
def test_every_figure_and_line_of_the_demo_check_is_exact(stand_in):
    x, y = _test_set(1200)
    lines: list[str] = []
    launches: list[tuple[str, dict]] = []
    stopped: list[bool] = []
    figures = check_service("gs://models@champion", x, y, log=lines.append, serve=stand_in.starter(launches, stopped))

    # the launch: the model, the operator route on for this run only, with a fresh URL-safe token of 32 bytes
    [(model_uri, env)] = launches
    assert model_uri == "gs://models@champion"
    token = env["ADMIN_TOKEN"]
    assert env == {"ADMIN_ENABLED": "true", "ADMIN_TOKEN": token}
    assert len(token) == 43 and set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert stand_in.resets == [f"Bearer {token}"]
    assert stopped == [True]

    assert figures.cold_start_s == 1.25
    assert figures.json_accuracy == 0.925 and figures.binary_accuracy == 0.925  # 1,110 of 1,200
    assert figures.json_seconds == pytest.approx(4.14)  # 1,200 ms + 0.1 ms x 24 x 1,225
    assert figures.binary_images_per_s == pytest.approx(10_000)  # 1,200 images in 0.12 s
    # the 300 timed one-image requests: images 20..319, 1 + 0.1 x (k mod 50) ms each
    assert figures.latency_p50_ms == pytest.approx(3.45) and figures.latency_p99_ms == pytest.approx(5.9)
    assert figures.drift_before == {"drift_detected": False, "drifted": [], "images": 1200 + 1200 + 320}
    assert figures.drift_after == {
        "drift_detected": True,
        "drifted": ["mean_intensity", "dark_background"],
        "images": 2000,
    }

    assert stand_in.sent == [
        *[("POST", "/predict", JSON, 100)] * 12,
        *[("POST", "/predict", BYTES, 64)] * 18,
        ("POST", "/predict", BYTES, 48),
        *[("POST", "/predict", JSON, 1)] * 320,
        ("GET", "/monitoring/drift", None, 0),
        ("POST", "/monitoring/drift/reset", None, 0),
        *[("POST", "/predict", BYTES, 64)] * 31,
        ("POST", "/predict", BYTES, 16),
        ("GET", "/monitoring/drift", None, 0),
    ]
    assert lines == [
        f"service healthy 1.25 s after launch at {stand_in.base}",
        "JSON path: 1,200 images in 4.1 s, accuracy 0.9250",
        "binary path: 10,000 images/s (64 per request, one client), accuracy 0.9250",
        "one image per request: p50 3.45 ms, p99 5.90 ms",
        "drift on the real test images: False; after 2,000 inverted images: True (mean_intensity, dark_background)",
    ]


def test_a_service_without_drift_reports_none_and_extra_variables_reach_the_launch(stand_in):
    stand_in.drift_on = False
    x, y = _test_set(100)
    lines: list[str] = []
    launches: list[tuple[str, dict]] = []
    figures = check_service(
        "gs://m@champion",
        x,
        y,
        log=lines.append,
        extra_env={"INDEX_PUBLIC_KEY": "PEM"},
        serve=stand_in.starter(launches, []),
    )
    [(_, env)] = launches
    assert env == {"ADMIN_ENABLED": "true", "ADMIN_TOKEN": stand_in.token, "INDEX_PUBLIC_KEY": "PEM"}
    assert figures.drift_before == {} and figures.drift_after == {}
    assert figures.json_accuracy == 0.1 and figures.binary_accuracy == 0.1  # 10 of 100: the first 90 disagree
    assert lines[-1] == "drift on the real test images: None; after 2,000 inverted images: None (nothing)"


def test_a_failing_service_stops_the_check_and_is_stopped(stand_in):
    stand_in.predict_status = 503
    x, y = _test_set(10)
    lines: list[str] = []
    stopped: list[bool] = []
    with pytest.raises(ServiceUnreachable) as caught:
        check_service("gs://m@champion", x, y, log=lines.append, serve=stand_in.starter([], stopped))
    assert str(caught.value).startswith(f"POST {stand_in.base}/predict -> 503: ")
    assert stopped == [True]
    assert lines == [f"service healthy 1.25 s after launch at {stand_in.base}"]
    assert stand_in.sent == [("POST", "/predict", JSON, 10)]
