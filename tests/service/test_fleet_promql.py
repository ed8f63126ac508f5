"""The fleet's verdict through PromQL: three service instances (four gunicorn workers), a real Prometheus server
scraping them, the queries of contracts.monitoring_queries, judged by trainer/cloud/promql.py.

The oracle is the test's own count: which client bucket each simulated client falls in (service.rollout.route with
the fleet's shared ROUTING_SECRET) and how many requests it sent. Skipped without the Debian `prometheus` binary
(scripts/system_deps.sh installs it)."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import requests

from contracts.monitoring_queries import DRIFT_DETECTED_PROMQL, rollout_queries
from contracts.rollout import Thresholds
from lifecycle.served import free_port
from service.rollout import route
from tests.service.conftest import start_service, stop_service
from tests.service.model_factory import build_registry, generated_images, make_version
from tests.service.test_rollout_server import _with_candidate
from trainer.cloud.promql import fleet_verdict, http_asker

pytestmark = [
    pytest.mark.fleet,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian package prometheus not installed"),
]
SECRET = "fleet-routing-secret-0123456789abcdef"
OCTET = {"Content-Type": "application/octet-stream"}
# latency is judged on paired timings, which a machine this loaded can skew: its rule is tested in test_canary_attack
THRESHOLDS = Thresholds(min_requests=100, min_clients=10, max_client_requests=12, max_latency_ratio=10.0)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, model_dir):
    twin, _ = make_version(model_dir, tmp_path_factory.mktemp("twin") / "test-v2", "test-v2", digests=False)
    root = _with_candidate(build_registry(tmp_path_factory.mktemp("fleet") / "models", model_dir), twin)
    env = {
        "MODEL_URI": f"{root}@champion",
        "CHALLENGER": "candidate",
        "ROLLOUT_MODE": "canary",
        "CANARY_PERCENT": "50",
        "SHADOW_SAMPLE_EVERY": "1",
        "ROUTING_SECRET": SECRET,  # every instance routes alike, as on Cloud Run
        "TRUSTED_PROXY_HOPS": "1",
    }
    servers = []
    try:
        for workers in ("2", "1", "1"):
            servers.append(start_service(tmp_path_factory.mktemp("instance"), WORKERS=workers, **env))
        servers[0].registry_root = root  # the models root: where `trainer rollout` finds the aliases
        yield servers
    finally:
        for server in servers:
            stop_service(server)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory, fleet):
    directory = tmp_path_factory.mktemp("prometheus")
    targets = ", ".join(f"'127.0.0.1:{s.port}'" for s in fleet)
    (directory / "prometheus.yml").write_text(
        f"global: {{scrape_interval: 1s}}\nscrape_configs:\n- job_name: fmnist\n  static_configs:\n"
        f"  - targets: [{targets}]\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(directory / "prometheus.log").open("wb"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError((directory / "prometheus.log").read_text()[-2000:])
        yield url
    finally:
        process.terminate()
        process.wait(20)


def _bucket(address: str) -> tuple[str, bool]:
    where = route(SECRET.encode(), "test-v2", f"ip:{address}")
    return where.bucket, where.in_canary(50)


def test_the_fleet_verdict_from_promql_matches_the_tests_own_count(fleet, prometheus, capsys):
    clients = [f"198.51.100.{i}" for i in range(1, 49)]
    sent, per_bucket = 0, {}
    for index, address in enumerate(clients):
        bucket, canary = _bucket(address)
        count = 6 + index % 11  # 6..16 requests: some clients go over the 12-request cap
        for j in range(count):
            server = fleet[(index + j) % len(fleet)]  # one client's requests land on every instance
            body = generated_images(2, 5000 + 20 * index + j)[0].tobytes()
            status, _, reply = server.request("POST", "/predict", body, {**OCTET, "X-Forwarded-For": address})
            assert status == 200, reply
            assert (b'"test-v2"' in reply) is canary  # the same side on every instance
        sent += count
        if canary:
            per_bucket[bucket] = per_bucket.get(bucket, 0) + count
    ask = http_asker(prometheus)
    deadline = time.monotonic() + 60  # until a scrape after the last request has reached Prometheus
    while time.monotonic() < deadline:
        answered = ask("sum(fmnist_rollout_answered_total)")
        if answered and float(answered[0]["value"][1]) == sent:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"Prometheus never saw all {sent} requests: {answered}")
    assert len(ask("up == 1")) == len(fleet)
    requests_by_client = {
        r["metric"]["client"]: float(r["value"][1]) for r in ask(rollout_queries("test-v1", "test-v2")["requests"])
    }
    assert requests_by_client == {b: float(n) for b, n in per_bucket.items()}  # exact, over all instances
    decision, evidence = fleet_verdict(ask, "test-v1", "test-v2", THRESHOLDS)
    assert evidence.clients == len(per_bucket) >= THRESHOLDS.min_clients
    assert evidence.requests == sum(min(THRESHOLDS.max_client_requests, n) for n in per_bucket.values())
    assert evidence.agreement is not None and evidence.agreement.rate == 1.0  # the twin agrees on every image
    assert decision.decision == "promote", (decision, evidence)
    # each instance alone sees only its part of the challenger's requests
    parts = [s.json("GET", "/monitoring/rollout")[1]["challenger"]["requests"] for s in fleet]
    assert sum(parts) == sum(per_bucket.values()) and max(parts) < sum(parts)
    drift = ask(DRIFT_DETECTED_PROMQL)  # the alert's query: no instance flags drift on these images
    assert bool(drift) == any(s.json("GET", "/monitoring/drift")[1]["drift_detected"] for s in fleet)
    # `trainer rollout --prometheus-url` asks the same queries; config's default thresholds want 500 requests
    from trainer import cli

    root = fleet[0].registry_root
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.argv", ["trainer"])
        patch.setenv("FMNIST_STORAGE_ROOT", str(root.parent))
        assert cli.main(["rollout", "--prometheus-url", prometheus, "--dry-run"]) == 0
    print(
        f"\nfleet: {len(fleet)} instances, {sent} requests from {len(clients)} clients; challenger requests per "
        f"instance {parts}; PromQL evidence {evidence}; verdict {decision.to_dict()}"
    )
    printed = capsys.readouterr().out
    assert f'"clients": {evidence.clients}' in printed and "of the 500 requests needed" in printed
