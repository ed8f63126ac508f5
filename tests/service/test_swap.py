"""A real 2-worker gunicorn service following the registry while a client keeps sending requests: promotions
and rollbacks reach both workers within two poll intervals, no request fails meanwhile, and a damaged version is
refused (counted in /metrics) while the version before it keeps answering. Once on a local registry, once on
the GCS emulator."""

import json
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.service.conftest import start_service, stop_service
from tests.service.model_factory import local_registry, make_version, register

POLL_S = 0.2
MARGIN_S = 2.0  # session + warm-up of the test model on a shared 2-core machine, and the requests in flight
OCTET = {"Content-Type": "application/octet-stream"}


class Traffic:
    """Client threads that POST one image at a time until stopped: (sent at, status, model version) each."""

    def __init__(self, server, threads: int = 2):
        self.server, self.replies, self.failures = server, [], []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        self._body = np.zeros((1, 784), np.uint8).tobytes()

    def _run(self):
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                status, _, body = self.server.request("POST", "/predict", self._body, OCTET)
            except OSError as exc:  # a reset or refused connection is a failed request too
                self.failures.append(repr(exc))
                continue
            version = json.loads(body).get("metadata", {}).get("model_version") if status == 200 else None
            self.replies.append((sent, status, version))
            if status != 200:
                self.failures.append(f"{status}: {body[:200]!r}")

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def wait_for(self, version: str, since: float, timeout: float = 20.0) -> float:
        """Seconds from `since` until every request sent from then on is answered by `version`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            after = [r for r in self.replies if r[0] >= since]
            last_other = max((sent for sent, _, v in after if v != version), default=since)
            settled = [r for r in after if r[0] > last_other]
            if len(settled) >= 40 and time.monotonic() - last_other > 4 * POLL_S:
                return last_other - since
            time.sleep(0.05)
        raise AssertionError(f"not all answers came from {version} within {timeout} s: {self.replies[-5:]}")

    def versions_since(self, since: float) -> set:
        return {v for sent, _, v in self.replies if sent >= since}


def refused(metrics_text: str, reason: str) -> float:
    pattern = rf'^fmnist_model_refused_total\{{reason="{reason}",role="champion"\}} ([0-9.e+]+)$'
    return sum(float(v) for v in re.findall(pattern, metrics_text, re.M))


def damage(registry, version: str) -> None:
    import storage

    uri = storage.join(registry.version_uri(version), "model.onnx")
    storage.write_bytes(uri, storage.read_bytes(uri)[:-64])  # truncated: its digest no longer matches


def follow_promotions(tmp_path: Path, model_dir: Path, root: str, **env) -> None:
    registry = local_registry(root)
    built = {v: make_version(model_dir, tmp_path / "build" / v, v) for v in ("v1", "v2", "v3")}
    register(registry, built["v1"][0], "v1", built["v1"][1])
    server = start_service(tmp_path, MODEL_URI=f"{root}@champion", WORKERS="2", MODEL_POLL_S=str(POLL_S), **env)
    try:
        with Traffic(server) as traffic:
            time.sleep(0.5)
            assert traffic.versions_since(0) == {"v1"}

            promoted = time.monotonic()
            register(registry, built["v2"][0], "v2", built["v2"][1])
            assert traffic.wait_for("v2", promoted) <= 2 * POLL_S + MARGIN_S

            register(registry, built["v3"][0], "v3", built["v3"][1], promote=False)
            damage(registry, "v3")
            registry.promote("v3")
            corrupted = time.monotonic()
            time.sleep(10 * POLL_S)
            assert traffic.versions_since(corrupted) == {"v2"}  # v3 refused: v2 keeps answering

            registry.rollback()  # champion back to v2, which serves already
            registry.rollback()  # and to v1
            rolled_back = time.monotonic()
            assert traffic.wait_for("v1", rolled_back) <= 2 * POLL_S + MARGIN_S
        assert traffic.failures == [] and len(traffic.replies) > 100
        metrics_text = server.request("GET", "/metrics")[2].decode()
        assert refused(metrics_text, "digest_mismatch") == 2  # once per worker, never retried
        versions_served = set(re.findall(r'fmnist_http_requests_total\{[^}]*model_version="(v\d)"', metrics_text))
        assert versions_served == {"v1", "v2"}
    finally:
        assert stop_service(server) == 0
    lines = [json.loads(line) for line in server.stderr.read_text().splitlines() if line.startswith("{")]
    refusals = [line for line in lines if line.get("event") == "model_refused"]
    assert len(refusals) == 2 and {line["model_version"] for line in refusals} == {"v3"}
    assert all(line["reason"] == "digest_mismatch" and "model.onnx" in line["detail"] for line in refusals)
    request_lines = [json.loads(line) for line in server.stdout.read_text().splitlines() if line.startswith("{")]
    assert {line["model_version"] for line in request_lines if line["httpRequest"]["requestUrl"] == "/predict"} == {
        "v1",
        "v2",
    }


def test_a_local_registry_is_followed_without_a_failed_request(tmp_path, model_dir):
    follow_promotions(tmp_path, model_dir, str(tmp_path / "models"))


@pytest.mark.slow
def test_a_gcs_registry_is_followed_without_a_failed_request(tmp_path, model_dir, gcs_bucket):
    follow_promotions(tmp_path, model_dir, f"{gcs_bucket}/models")
