"""The service's one HTTP client (lifecycle/client.py), over the wire to a loopback server that records each request:
the route, method, headers and body each call sends, how a batch is split into requests, and what a failure says
(issue 27's lifecycle-small group). The check against the real service is tests/lifecycle/test_batch_predict.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import numpy as np
import pytest

from lifecycle.checks.http_check import shifted, single_image_latency
from lifecycle.client import HttpService, ServiceUnreachable


class Recorder:
    """A loopback server that answers each route like the service and records (method, path, headers, body)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.status = 200
        self.delay = 0.0
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.requestline.split()[1]  # as sent: http.server collapses a leading "//" in self.path
                recorder.requests.append((self.command, path, dict(self.headers), body))
                time.sleep(recorder.delay)
                reply: object = {"path": path}
                if path == "/predict":
                    count = len(json.loads(body)["instances"]) if body.startswith(b"{") else len(body) // 784
                    n = len(recorder.requests)  # the request's number: its classes tell requests apart
                    reply = {"predictions": [{"class_id": (n + i) % 10} for i in range(count)]}
                data = json.dumps(reply).encode() if recorder.status == 200 else b"E" * 600
                self.send_response(recorder.status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def without_bodies(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path, _, _ in self.requests]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recorder = Recorder()
    thread = threading.Thread(target=recorder.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield recorder
    recorder.server.shutdown()
    recorder.server.server_close()


def test_each_route_is_called_with_its_method_and_a_trailing_slash_is_dropped(recorder):
    client = HttpService(recorder.base + "/")
    assert client.model() == {"path": "/v1/model"}
    assert client.drift() == {"path": "/monitoring/drift"}
    assert client.rollout() == {"path": "/monitoring/rollout"}
    assert recorder.without_bodies() == [
        ("GET", "/v1/model"),
        ("GET", "/monitoring/drift"),
        ("GET", "/monitoring/rollout"),
    ]
    assert all("Authorization" not in headers for _, _, headers, _ in recorder.requests)  # no token: none sent
    client.close()


def test_the_token_goes_on_every_request_and_the_operator_token_only_on_operator_routes(recorder):
    client = HttpService(recorder.base, token="id-token", admin_token="admin-1")
    client.model()
    assert recorder.requests[-1][2]["Authorization"] == "Bearer id-token"
    client.rollout()
    assert recorder.requests[-1][2]["Authorization"] == "Bearer admin-1"  # the full reasons, not only the codes
    assert client.reset_drift() is True
    assert recorder.requests[-1][:2] == ("POST", "/monitoring/drift/reset")
    assert recorder.requests[-1][2]["Authorization"] == "Bearer admin-1"
    client.close()


def test_without_the_operator_token_the_drift_reset_is_not_sent_and_says_why(recorder, capsys):
    client = HttpService(recorder.base)
    assert client.reset_drift() is False
    assert recorder.requests == []
    assert capsys.readouterr().out == (
        "drift not reset: the reset is an operator route and this client has no ADMIN_TOKEN for it\n"
    )


def test_predictions_go_as_vertex_json_and_as_raw_bytes(recorder):
    client = HttpService(recorder.base)
    images = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    assert client.predict_json(images) == [{"class_id": 1}, {"class_id": 2}]
    method, path, headers, body = recorder.requests[-1]
    assert (method, path, headers["Content-Type"]) == ("POST", "/predict", "application/json")
    assert json.loads(body) == {"instances": images.tolist()}
    strided = np.asfortranarray(images.astype(np.int64))  # any dtype and layout: sent as C-order uint8
    assert client.predict_bytes(strided) == [{"class_id": 2}, {"class_id": 3}]
    method, path, headers, body = recorder.requests[-1]
    assert (method, path, headers["Content-Type"]) == ("POST", "/predict", "application/octet-stream")
    assert body == images.astype(np.uint8).tobytes()


def test_classes_are_asked_in_requests_of_the_batch_size_and_kept_in_order(recorder):
    client = HttpService(recorder.base)
    images = np.zeros((130, 28, 28), dtype=np.uint8)
    classes = client.classes_bytes(images)
    assert [len(body) // 784 for _, _, _, body in recorder.requests] == [64, 64, 2]
    assert classes.dtype == np.int64
    assert classes.tolist() == [(1 + i) % 10 for i in range(64)] + [(2 + i) % 10 for i in range(64)] + [3, 4]
    recorder.requests.clear()
    classes = client.classes_json(np.zeros((250, 28, 28), dtype=np.uint8), batch=100)
    assert [len(json.loads(body)["instances"]) for _, _, _, body in recorder.requests] == [100, 100, 50]
    assert classes.dtype == np.int64 and len(classes) == 250
    assert classes[:3].tolist() == [1, 2, 3] and classes[100:102].tolist() == [2, 3] and classes[200] == 3
    recorder.requests.clear()
    client.classes_json(np.zeros((101, 28, 28), dtype=np.uint8))  # the default batch: 100
    assert [len(json.loads(body)["instances"]) for _, _, _, body in recorder.requests] == [100, 1]


def test_an_error_reply_names_the_call_the_status_and_500_characters_of_the_body(recorder):
    recorder.status = 503
    client = HttpService(recorder.base)
    with pytest.raises(ServiceUnreachable) as caught:
        client.model()
    assert str(caught.value) == f"GET {recorder.base}/v1/model -> 503: {'E' * 500}"


def test_each_call_s_failure_names_its_method_and_route(recorder):
    recorder.status = 500
    client = HttpService(recorder.base, admin_token="admin-1")
    calls = {
        "POST /predict": lambda: client.predict_json(np.zeros((1, 28, 28), dtype=np.uint8)),
        "POST /predict ": lambda: client.predict_bytes(np.zeros((1, 28, 28), dtype=np.uint8)),
        "POST /monitoring/drift/reset": client.reset_drift,
        "GET /monitoring/rollout": client.rollout,
        "GET /monitoring/drift": client.drift,
    }
    for call, run in calls.items():
        method, route = call.split()
        with pytest.raises(ServiceUnreachable) as caught:
            run()
        assert str(caught.value).startswith(f"{method} {recorder.base}{route} -> 500: "), call


def test_no_images_are_no_classes_and_no_request(recorder):
    client = HttpService(recorder.base)
    for classes in (client.classes_bytes(np.zeros((0, 28, 28))), client.classes_json(np.zeros((0, 28, 28)))):
        assert classes.dtype == np.int64 and classes.shape == (0,)
    assert recorder.requests == []


def test_a_silent_or_absent_service_is_unreachable_after_the_timeout(recorder):
    recorder.delay = 2.0
    client = HttpService(recorder.base, timeout=0.3)
    started = time.perf_counter()
    with pytest.raises(ServiceUnreachable) as caught:
        client.drift()
    assert time.perf_counter() - started < 1.5
    assert str(caught.value).startswith(f"GET {recorder.base}/monitoring/drift: ")
    assert "timed out" in str(caught.value)
    assert HttpService(recorder.base).timeout == 30


def test_close_releases_the_connections(recorder):
    client = HttpService(recorder.base)
    client.model()
    pools = client.session.get_adapter(recorder.base).poolmanager.pools
    assert len(pools) == 1
    client.close()
    assert len(pools) == 0


def test_latency_is_timed_on_one_image_requests_after_twenty_warm_up_calls(monkeypatch):
    clock = [0.0]
    sent: list[tuple[int, ...]] = []

    class Timed:
        def predict_json(self, images: np.ndarray) -> None:
            sent.append(images.shape)
            # warm-up calls cost 1 s each (left out); the timed call k costs k ms
            clock[0] += 1.0 if len(sent) <= 20 else (len(sent) - 20) / 1000

    monkeypatch.setattr("lifecycle.checks.http_check.time", SimpleNamespace(perf_counter=lambda: clock[0]))
    images = np.stack([np.full((28, 28), i, dtype=np.uint8) for i in range(7)])
    p50, p99 = single_image_latency(Timed(), images, count=100)  # type: ignore[arg-type]
    assert sent == [(1, 28, 28)] * 120
    assert p50 == pytest.approx(50.5) and p99 == pytest.approx(99.01)
    sent.clear()
    single_image_latency(Timed(), images)  # type: ignore[arg-type]
    assert len(sent) == 320  # 300 timed by default


def test_shifted_images_are_inverted_uint8():
    images = np.array([[0, 1, 128, 255]], dtype=np.int64)
    out = shifted(images)
    assert out.dtype == np.uint8 and out.tolist() == [[255, 254, 127, 0]]
