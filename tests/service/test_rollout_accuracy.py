"""A canary rolled back on posted labels alone: the real two-worker service, a challenger that agrees often enough
for a permissive agreement threshold but is far less accurate, labels from three posters, exact credited counts."""

from __future__ import annotations

import json
import time
from collections import defaultdict

import pytest

from tests.service.conftest import ADMIN, ADMIN_ENV, start_service, stop_service
from tests.service.model_factory import build_registry, generated_images
from tests.service.test_rollout_server import _with_candidate

OCTET = {"Content-Type": "application/octet-stream"}
CAP = 30  # ROLLOUT_MAX_POSTER_LABELS below


@pytest.fixture(scope="module")
def canary_server(tmp_path_factory, model_dir, linear_model_dir):
    root = _with_candidate(build_registry(tmp_path_factory.mktemp("acc") / "models", model_dir), linear_model_dir)
    server = start_service(
        tmp_path_factory.mktemp("acc-live"),
        MODEL_URI=f"{root}@champion",
        CHALLENGER="candidate",
        ROLLOUT_MODE="canary",
        CANARY_PERCENT="50",
        SHADOW_SAMPLE_EVERY="1",
        ROUTING_SECRET="test-routing-secret-0123456789",
        TRUSTED_PROXY_HOPS="1",
        ROLLOUT_MIN_REQUESTS="1",
        ROLLOUT_MIN_CLIENTS="1",
        ROLLOUT_MIN_AGREEMENT="0.01",  # agreement cannot decide here: only accuracy can
        ROLLOUT_MIN_LABELS="40",
        ROLLOUT_MIN_LABEL_POSTERS="2",
        ROLLOUT_MAX_POSTER_LABELS=str(CAP),
        WORKERS="2",
        **ADMIN_ENV,
    )
    yield server
    stop_service(server)


def _verdict(server) -> dict:
    status, report = server.json("GET", "/monitoring/rollout", headers=ADMIN)
    assert status == 200
    return report


def test_labels_roll_back_a_less_accurate_challenger(canary_server):
    images, labels = generated_images(160, seed=77)
    sent = []
    for i in range(160):  # 40 clients, by the address the trusted proxy saw
        headers = {**OCTET, "X-Forwarded-For": f"10.9.9.9, 10.1.0.{i % 40}"}
        status, _, body = canary_server.request("POST", "/predict", images[i : i + 1].tobytes(), headers)
        assert status == 200
        reply = json.loads(body)
        sent.append((reply["metadata"]["request_id"], reply["metadata"]["model_version"], reply["predictions"][0]))
    before = _verdict(canary_server)
    assert "accuracy_low" not in before["verdict"]["codes"]
    assert before["accuracy"]["champion"]["labelled"] == 0

    started = time.perf_counter()
    tally: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])  # (version, poster) -> labelled, correct
    for i, (request_id, version, prediction) in enumerate(sent):
        poster = i % 3
        headers = {"X-Forwarded-For": f"10.9.9.9, 10.2.0.{poster}"}
        status, body = canary_server.json(
            "POST", "/feedback", {"request_id": request_id, "labels": [int(labels[i])]}, headers
        )
        assert status == 200, body
        tally[(version, poster)][0] += 1
        tally[(version, poster)][1] += int(prediction["class_id"] == labels[i])
    after = _verdict(canary_server)
    seconds = time.perf_counter() - started

    for role, version in (("champion", "test-v1"), ("challenger", "test-v2")):
        rows = [(n, c) for (v, _), (n, c) in tally.items() if v == version]
        credited = sum(min(n, CAP) for n, _ in rows)
        correct = sum(c * min(1.0, CAP / n) for n, c in rows)
        figures = after["accuracy"][role]
        assert figures["labelled"] == pytest.approx(credited, abs=1e-3) and credited >= 40
        assert figures["correct"] == pytest.approx(correct, abs=1e-3)
        assert figures["posters"] == 3
    assert after["verdict"]["decision"] == "rollback"
    assert "accuracy_low" in after["verdict"]["codes"]
    print(f"160 labels posted and the verdict read in {seconds:.2f} s: {after['accuracy']}, {after['verdict']}")
