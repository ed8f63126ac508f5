"""The shadow step's exact parts in-process: the service's rollout variables, the figures read from the verdict,
and what `shadow_candidate` sends, to whom and prints, over the wire to a recording loopback service (the real
service behind it: tests/lifecycle/test_shadow.py)."""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from contracts.rollout import Thresholds
from lifecycle.checks import shadow
from lifecycle.checks.shadow import BATCH, ShadowFigures, figures_from, shadow_candidate, shadow_env

REPORT = {
    "champion": {"version": "v3", "inference_p50_ms": 1.23456, "inference_p99_ms": 2.5},
    "challenger": {"version": "v4", "inference_p50_ms": 0.5, "inference_p99_ms": 3.0004},
    "agreement": {"compared": 40, "rate": 0.975, "interval_95": [0.8711, 0.9956]},
    "verdict": {"decision": "hold", "reasons": ["too few requests", "too few clients"]},
}


def test_shadow_env_puts_the_candidate_in_shadow_on_every_request_for_one_trusted_client():
    thresholds = Thresholds(min_requests=7, min_agreement=0.9, min_clients=3, max_client_requests=9)
    assert shadow_env(thresholds) == {
        "CHALLENGER": "candidate",
        "ROLLOUT_MODE": "shadow",
        "SHADOW_SAMPLE_EVERY": "1",
        "ROLLOUT_MIN_REQUESTS": "7",
        "ROLLOUT_MIN_AGREEMENT": "0.9",
        "ROLLOUT_MAX_LATENCY_RATIO": "1.5",
        "ROLLOUT_MAX_ERROR_RATE": "0.01",
        "ROLLOUT_MIN_CLIENTS": "1",
        "ROLLOUT_MAX_CLIENT_REQUESTS": "1000000000000",
        "ROLLOUT_MIN_LABELS": "200",
        "ROLLOUT_MIN_LABEL_POSTERS": "2",
        "ROLLOUT_MAX_POSTER_LABELS": "100",
        "ROLLOUT_MAX_ACCURACY_DROP": "0.02",
    }


def test_figures_from_a_full_report():
    assert figures_from(REPORT) == ShadowFigures(
        champion="v3",
        challenger="v4",
        images=40,
        agreement=0.975,
        interval=(0.8711, 0.9956),
        champion_p50_ms=1.23456,
        champion_p99_ms=2.5,
        challenger_p50_ms=0.5,
        challenger_p99_ms=3.0004,
        decision="hold",
        reasons=["too few requests", "too few clients"],
        report=REPORT,
    )
    assert isinstance(figures_from(REPORT).interval, tuple) and isinstance(figures_from(REPORT).images, int)


@pytest.mark.parametrize("report", [{}, {"champion": None, "challenger": None, "agreement": None, "verdict": None}])
def test_figures_from_a_report_with_nothing_measured(report):
    figures = figures_from(report)
    assert figures == ShadowFigures(report=report)
    assert (figures.champion, figures.challenger, figures.images, figures.agreement) == ("", "", 0, None)
    assert (figures.interval, figures.decision, figures.reasons) == ((0.0, 1.0), "", [])
    assert figures.champion_p50_ms is figures.challenger_p99_ms is None
    assert ShadowFigures().reasons is not ShadowFigures().reasons and ShadowFigures().report == {}


class _FakeService(BaseHTTPRequestHandler):
    """POST /predict: one prediction per 784 bytes; GET /monitoring/rollout: the report; records each request."""

    seen: list[tuple[str, str, str | None, int]] = []
    report: dict = {}

    def _reply(self, document: dict) -> None:
        raw = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self) -> None:
        size = len(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(("POST", self.path, self.headers.get("Authorization"), size))
        self._reply({"predictions": [{"class_id": 1}] * (size // 784)})

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, self.headers.get("Authorization"), 0))
        self._reply(self.report)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_service(monkeypatch):
    _FakeService.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeService)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    started: list[tuple[str, dict]] = []

    @contextlib.contextmanager
    def running_service(model_uri, *, extra_env=None):
        started.append((model_uri, extra_env))
        yield f"http://127.0.0.1:{server.server_address[1]}", 1.0

    monkeypatch.setattr(shadow, "running_service", running_service)
    yield _FakeService, started
    server.shutdown()
    server.server_close()


def test_shadow_candidate_sends_the_test_set_in_batches_and_prints_the_verdict(fake_service):
    service, started = fake_service
    service.report = REPORT
    printed: list[str] = []
    images = np.zeros((2 * BATCH + 3, 28, 28), dtype=np.uint8)
    figures = shadow_candidate("gs://b/models", images, Thresholds(min_requests=7), log=printed.append)
    assert figures == figures_from(REPORT)
    ((model_uri, env),) = started
    token = env.pop("ADMIN_TOKEN")
    assert model_uri == "gs://b/models@champion" and len(token) == 43  # secrets.token_urlsafe(32)
    assert env == {**shadow_env(Thresholds(min_requests=7)), "ADMIN_ENABLED": "true"}
    assert BATCH == 16
    assert service.seen == [
        ("POST", "/predict", None, 16 * 784),
        ("POST", "/predict", None, 16 * 784),
        ("POST", "/predict", None, 3 * 784),
        ("GET", "/monitoring/rollout", f"Bearer {token}", 0),
    ]
    assert printed == [
        "shadow: champion v3 vs candidate v4 on 40 images",
        "  agreement (same top class): 97.50% (87.11%-99.56%, 95 %)",
        "  inference p50 / p99: champion 1.235 ms / 2.500 ms, candidate 0.500 ms / 3.000 ms (16 per request)",
        "  rollout verdict: hold (too few requests; too few clients); the quality gate decides promotion",
    ]


def test_shadow_candidate_with_nothing_measured_says_so(fake_service):
    service, started = fake_service
    service.report = {"agreement": {"compared": 12345}}
    printed: list[str] = []
    shadow_candidate("m", np.zeros((1, 28, 28), dtype=np.uint8), Thresholds(), log=printed.append)
    assert started[0][1]["ADMIN_TOKEN"] != ""
    assert printed == [
        "shadow: champion  vs candidate  on 12,345 images",
        "  agreement (same top class): not measured",
        "  inference p50 / p99: champion - / -, candidate - / - (16 per request)",
        "  rollout verdict:  (); the quality gate decides promotion",
    ]


def test_each_run_has_its_own_operator_token(fake_service):
    _, started = fake_service
    for _ in range(2):
        shadow_candidate("m", np.zeros((1, 28, 28), dtype=np.uint8), Thresholds(), log=lambda line: None)
    assert started[0][1]["ADMIN_TOKEN"] != started[1][1]["ADMIN_TOKEN"]
