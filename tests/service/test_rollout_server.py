"""/monitoring/rollout on a real two-worker gunicorn server: every worker's counts summed, exactly, and judged.

The oracle is the two models' own predictions, computed in this process with ONNX Runtime."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.runtime import OnnxClassifier
from tests.service.conftest import ADMIN, ADMIN_ENV, counts_per_worker, start_service, stop_service
from tests.service.model_factory import build_registry, generated_images

OCTET = {"Content-Type": "application/octet-stream"}


def _with_candidate(root, directory, version="test-v2"):
    shutil.copytree(directory, root / "registry" / "versions" / version)
    index_path = root / "registry" / "index.json"
    index = json.loads(index_path.read_text())
    index["versions"][version] = {**index["versions"]["test-v1"], "path": f"registry/versions/{version}"}
    index["aliases"]["candidate"] = version
    index_path.write_text(json.dumps(index))
    return root


class _HeldRequest:
    """A /predict request whose headers are sent and whose body is not: the sync worker that accepts it (the
    first in the listen queue) waits for the body, so every request sent meanwhile goes to the other worker.
    Which worker answers what is then decided by the test, not by the kernel's scheduling."""

    def __init__(self, port: int, body: bytes):
        self.body = body
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        head = f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
        self.sock.sendall(f"{head}Content-Type: application/octet-stream\r\n\r\n".encode())

    def finish(self) -> dict:
        try:
            self.sock.sendall(self.body)
            reply = http.client.HTTPResponse(self.sock)
            reply.begin()
            assert reply.status == 200, reply.read()
            return json.loads(reply.read())
        finally:
            self.sock.close()


@pytest.fixture(scope="module")
def shadow_server(tmp_path_factory, model_dir, linear_model_dir):
    root = _with_candidate(build_registry(tmp_path_factory.mktemp("rollout") / "models", model_dir), linear_model_dir)
    server = start_service(
        tmp_path_factory.mktemp("rollout-live"),
        MODEL_URI=f"{root}@champion",
        CHALLENGER="candidate",
        ROLLOUT_MODE="shadow",
        SHADOW_SAMPLE_EVERY="1",
        ROLLOUT_MIN_REQUESTS="20",
        WORKERS="2",
        **ADMIN_ENV,
    )
    yield server
    stop_service(server)


def test_shadow_counts_of_both_workers_are_summed_and_judged(shadow_server, model_dir, linear_model_dir):
    cnn = OnnxClassifier(str(model_dir / "model.onnx"), "pixels")
    linear = OnnxClassifier(str(linear_model_dir / "model.onnx"), "pixels")
    batches = [generated_images(n, seed)[0] for n, seed in zip([1, 8, 16, 64] * 10, range(100, 140), strict=True)]

    def send(images):
        status, _, body = shadow_server.request("POST", "/predict", images.tobytes(), OCTET)
        assert status == 200, body
        return json.loads(body)

    held = _HeldRequest(shadow_server.port, batches[0].tobytes())  # one worker waits for this body...
    with ThreadPoolExecutor(4) as pool:  # ...so the other answers these concurrent clients
        replies = [held, *pool.map(send, batches[1:])]
    replies[0] = held.finish()
    agreed = compared = 0
    for images, reply in zip(batches, replies, strict=True):
        ours = cnn.predict(images.astype(np.float32)).argmax(1)
        theirs = linear.predict(images.astype(np.float32)).argmax(1)
        assert reply["metadata"]["model_version"] == "test-v1"  # the champion answers in shadow mode
        assert [p["class_id"] for p in reply["predictions"]] == ours.tolist()
        agreed += int((ours == theirs).sum())
        compared += len(images)
    status, public = shadow_server.json("GET", "/monitoring/rollout")
    assert status == 200 and "challenger_reference" not in public
    assert public["verdict"] == {"decision": "rollback", "codes": ["agreement_low"]}  # codes only, no reasons
    status, report = shadow_server.json("GET", "/monitoring/rollout", headers=ADMIN)
    assert status == 200
    assert report["mode"] == "shadow" and report["challenger_reference"] == "candidate"
    champion, challenger = report["champion"], report["challenger"]
    assert (champion["version"], challenger["version"]) == ("test-v1", "test-v2")
    assert champion["requests"] == champion["answered"] == challenger["requests"] == len(batches)
    assert challenger["answered"] == 0 and challenger["errors"] == 0
    assert sum(champion["classes"].values()) == sum(challenger["classes"].values()) == compared
    assert (report["agreement"]["agreed"], report["agreement"]["compared"]) == (agreed, compared)
    assert 0 < champion["inference_p50_ms"] <= champion["inference_p99_ms"]
    assert report["verdict"]["decision"] == "rollback"  # the linear challenger disagrees with the CNN
    assert any("agreement with the champion" in r for r in report["verdict"]["reasons"])
    workers = shadow_server.worker_pids()
    assert len(workers) == 2
    scored = counts_per_worker(shadow_server.state_dir(), "fmnist_rollout_requests_total")
    # each request is counted once per role; the held one in one worker, every other in the other
    assert sorted(scored.get(pid, 0) for pid in workers) == [2, 2 * (len(batches) - 1)], scored


def test_the_rollout_route_is_described(shadow_server):
    status, spec = shadow_server.json("GET", "/openapi.json")
    assert status == 200 and "/monitoring/rollout" in spec["paths"]


def test_without_a_challenger_the_route_says_off(live_server):
    status, report = live_server.json("GET", "/monitoring/rollout")
    assert status == 200 and report["mode"] == "off" and "CHALLENGER" in report["detail"]
