"""The local drift chain, every link real: two service instances, Prometheus evaluating the drift alert's PromQL
(contracts.monitoring_queries.drift_fleet_promql: enough DISTINCT client buckets drifted, over every instance) as an
alerting rule, Alertmanager (Debian prometheus-alertmanager) posting to the local starter (lifecycle/alert_starter.py),
which starts one run. The run is a stand-in command that records that it started and keeps running (the real
default is `python -m lifecycle`, minutes long): repeated notifications while it runs must not start a second one.
One client flooding drifted images into both instances starts nothing; five clients doing so start exactly one run.
Skipped without the Debian binaries."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest
import requests

from contracts.monitoring_queries import DRIFT_DETECTED_PROMQL, drift_fleet_promql
from lifecycle.alert_starter import DRIFT_ALERT, Starter, rule_file, serve
from lifecycle.served import free_port
from service.caller import client_bucket
from tests.service.conftest import start_service, stop_service
from tests.service.model_factory import generated_images

MIN_CLIENTS = 5  # DRIFT_MIN_CLIENTS of the instances and of the query
OCTET = {"Content-Type": "application/octet-stream"}

pytestmark = [
    pytest.mark.fleet,
    pytest.mark.skipif(
        shutil.which("prometheus") is None or shutil.which("prometheus-alertmanager") is None,
        reason="Debian packages prometheus and prometheus-alertmanager not installed",
    ),
]


def _wait(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def _ready(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _clients(n: int) -> list[str]:
    """Addresses whose client buckets (service.caller.client_bucket) all differ: n distinct clients."""
    chosen, buckets = [], set()
    for i in range(1, 255):
        bucket = client_bucket(f"ip:203.0.113.{i}")
        if bucket not in buckets:
            chosen.append(f"203.0.113.{i}")
            buckets.add(bucket)
        if len(chosen) == n:
            return chosen
    raise AssertionError("not enough distinct buckets")


@contextmanager
def _chain(tmp_path, model_uri: str):
    """Two instances, Prometheus with the fleet drift rule, Alertmanager, the starter (a stand-in run)."""
    marker = tmp_path / "runs.txt"
    command = [sys.executable, "-c", f"import time; open({str(marker)!r}, 'a').write('run\\n'); time.sleep(60)"]
    starter = Starter(command)
    webhook = serve(starter, free_port())
    threading.Thread(target=webhook.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    processes, servers = [], []
    try:
        env = {
            "WORKERS": "1",
            "DRIFT_SAMPLE_EVERY": "1",
            "DRIFT_MIN_IMAGES": "50",  # 10 sampled images per client bucket before it is judged
            "DRIFT_MIN_CLIENTS": str(MIN_CLIENTS),
            "TRUSTED_PROXY_HOPS": "1",
        }
        for index in range(2):
            (tmp_path / f"i{index}").mkdir()
            servers.append(start_service(tmp_path / f"i{index}", MODEL_URI=model_uri, **env))
        am_port, prom_port = free_port(), free_port()
        (tmp_path / "alertmanager.yml").write_text(
            "route: {receiver: starter, group_wait: 1s, group_interval: 1s, repeat_interval: 2s}\n"
            "receivers:\n- name: starter\n  webhook_configs:\n"
            f"  - url: http://127.0.0.1:{webhook.server_port}/\n"
        )
        (tmp_path / "rules.yml").write_text(rule_file(drift_fleet_promql(MIN_CLIENTS, "5m")))
        targets = ", ".join(f"'127.0.0.1:{s.port}'" for s in servers)
        (tmp_path / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: ['{tmp_path / 'rules.yml'}']\n"
            f"alerting: {{alertmanagers: [{{static_configs: [{{targets: ['127.0.0.1:{am_port}']}}]}}]}}\n"
            f"scrape_configs:\n- job_name: fmnist\n  static_configs:\n  - targets: [{targets}]\n"
        )
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        processes.append(
            subprocess.Popen(
                [
                    "prometheus-alertmanager",
                    f"--config.file={tmp_path / 'alertmanager.yml'}",
                    f"--storage.path={tmp_path / 'am'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",
                ],
                **quiet,
            )
        )
        processes.append(
            subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                **quiet,
            )
        )
        prom = f"http://127.0.0.1:{prom_port}"
        _wait(lambda: _ready(f"{prom}/-/ready") and _ready(f"http://127.0.0.1:{am_port}/-/ready"), 30, "both up")
        _wait(lambda: _series(prom, "up == 1") == 2, 30, "both instances scraped")
        yield servers, starter, prom, marker
    finally:
        for run in starter.runs:
            run.kill()
            run.wait()
        for process in processes:
            process.terminate()
            process.wait(20)
        for server in servers:
            stop_service(server)
        webhook.shutdown()


def _flood(servers, address: str, images) -> None:
    """One client's drifted images, half to each instance (a client reaches every instance)."""
    for index, server in enumerate(servers):
        part = images[index::2]
        status, _, reply = server.request("POST", "/predict", part.tobytes(), {**OCTET, "X-Forwarded-For": address})
        assert status == 200, reply


def test_one_client_flooding_drifted_images_starts_no_run(tmp_path, models_root):
    images, _ = generated_images(200, seed=31)
    with _chain(tmp_path, f"{models_root}@champion") as (servers, starter, prom, _):
        flooder, *honest = _clients(MIN_CLIENTS + 1)
        for index, address in enumerate(honest):  # five ordinary clients, 40 images each: none drifted
            _flood(servers, address, generated_images(40, seed=40 + index)[0])
        _flood(servers, flooder, 255 - images)  # 200 inverted images, 100 into each instance, from one client
        _wait(
            lambda: _series(prom, f"max by (client) ({DRIFT_CLIENT}) > 0") == 1,
            30,
            "the flooding client's bucket flagged",
        )
        time.sleep(4)  # several rule evaluations after the flag reached Prometheus
        assert _series(prom, drift_fleet_promql(MIN_CLIENTS, "5m")) == 0
        assert _series(prom, f'ALERTS{{alertname="{DRIFT_ALERT}"}}') == 0 and starter.runs == []
        assert _series(prom, f"max by (client) ({DRIFT_CLIENT})") == MIN_CLIENTS + 1  # all six were judged
        # the per-instance flag (uncapped locally) is raised by the flood: the former alert query would have fired
        assert _series(prom, DRIFT_DETECTED_PROMQL) == 1
        print(
            f"\nalert chain: one client, {len(images)} drifted images over 2 instances beside {len(honest)} ordinary "
            "clients: 1 bucket flagged, 0 runs (the former per-instance query fired)"
        )


def test_enough_clients_with_drifted_images_start_exactly_one_run(tmp_path, models_root):
    images, _ = generated_images(40, seed=31)
    with _chain(tmp_path, f"{models_root}@champion") as (servers, starter, prom, marker):
        clients = _clients(MIN_CLIENTS)
        for address in clients[:-1]:
            _flood(servers, address, 255 - images)  # 20 per instance: each bucket is judged on both
        _wait(lambda: _series(prom, f"max by (client) ({DRIFT_CLIENT}) > 0") == MIN_CLIENTS - 1, 30, "4 buckets")
        time.sleep(3)
        assert starter.runs == []  # one client short
        started = time.monotonic()
        _flood(servers, clients[-1], 255 - images)
        _wait(lambda: len(starter.runs) == 1, 60, "the starter to start a run")
        latency = time.monotonic() - started
        _wait(lambda: starter.notifications >= 3, 30, "repeated notifications")
        assert len(starter.runs) == 1 and starter.runs[0].poll() is None  # still running: no second run
        _wait(lambda: marker.exists() and marker.read_text() == "run\n", 10, "the run's own record")
        print(
            f"\nalert chain: {MIN_CLIENTS} clients' drift to run start {latency:.1f} s; "
            f"{starter.notifications} notifications, 1 run"
        )


DRIFT_CLIENT = "fmnist_drift_client_detected"


def _series(prom: str, expr: str) -> int:
    reply = requests.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=5).json()
    return len(reply["data"]["result"])
