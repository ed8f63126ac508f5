"""The local drift chain, every link real: two service instances, Prometheus evaluating the drift alert's PromQL
(contracts.monitoring_queries) as an alerting rule, Alertmanager (Debian prometheus-alertmanager) posting to the
local starter (lifecycle/alert_starter.py), which starts one run. The run is a stand-in command that records that
it started and keeps running (the real default is `python -m lifecycle`, minutes long): repeated notifications
while it runs must not start a second one. Skipped without the Debian binaries."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time

import pytest
import requests

from contracts.monitoring_queries import DRIFT_DETECTED_PROMQL
from lifecycle.alert_starter import DRIFT_ALERT, Starter, rule_file, serve
from lifecycle.served import free_port
from tests.service.conftest import start_service, stop_service
from tests.service.model_factory import generated_images

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("prometheus-alertmanager") is None,
    reason="Debian packages prometheus and prometheus-alertmanager not installed",
)


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


def test_drift_on_one_instance_starts_exactly_one_run(tmp_path, models_root):
    marker = tmp_path / "runs.txt"
    command = [sys.executable, "-c", f"import time; open({str(marker)!r}, 'a').write('run\\n'); time.sleep(60)"]
    starter = Starter(command)
    webhook = serve(starter, free_port())
    threading.Thread(target=webhook.serve_forever, daemon=True).start()
    processes, servers = [], []
    try:
        env = {"MODEL_URI": f"{models_root}@champion", "WORKERS": "1", "DRIFT_SAMPLE_EVERY": "1"}
        for index in range(2):
            (tmp_path / f"i{index}").mkdir()
            servers.append(start_service(tmp_path / f"i{index}", DRIFT_MIN_IMAGES="50", **env))
        am_port, prom_port = free_port(), free_port()
        (tmp_path / "alertmanager.yml").write_text(
            "route: {receiver: starter, group_wait: 1s, group_interval: 1s, repeat_interval: 2s}\n"
            "receivers:\n- name: starter\n  webhook_configs:\n"
            f"  - url: http://127.0.0.1:{webhook.server_port}/\n"
        )
        (tmp_path / "rules.yml").write_text(rule_file(DRIFT_DETECTED_PROMQL))
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
        images, _ = generated_images(100, seed=31)  # like the training data: no drift, no alert, no run
        servers[1].request("POST", "/predict", images.tobytes(), {"Content-Type": "application/octet-stream"})
        _wait(lambda: _series(prom, "up == 1") == 2, 30, "both instances scraped")
        time.sleep(3)
        assert starter.runs == [] and _series(prom, f'ALERTS{{alertname="{DRIFT_ALERT}"}}') == 0
        inverted = 255 - images  # drift on one instance only
        status, _, _ = servers[0].request(
            "POST", "/predict", inverted.tobytes(), {"Content-Type": "application/octet-stream"}
        )
        assert status == 200 and servers[0].json("GET", "/monitoring/drift")[1]["drift_detected"] is True
        started = time.monotonic()
        _wait(lambda: len(starter.runs) == 1, 60, "the starter to start a run")
        latency = time.monotonic() - started
        _wait(lambda: starter.notifications >= 3, 30, "repeated notifications")
        assert len(starter.runs) == 1 and starter.runs[0].poll() is None  # still running: no second run
        _wait(lambda: marker.exists() and marker.read_text() == "run\n", 10, "the run's own record")
        print(f"\nalert chain: drift to run start {latency:.1f} s; {starter.notifications} notifications, 1 run")
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


def _series(prom: str, expr: str) -> int:
    reply = requests.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=5).json()
    return len(reply["data"]["result"])
