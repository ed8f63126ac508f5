"""The local counterpart of the pipeline starter: an Alertmanager webhook that starts one lifecycle run on drift.

On Google Cloud the drift alert policy (PromQL, contracts.monitoring_queries) notifies Pub/Sub and the starter
workflow creates one pipeline run (infra/components/pipelines.py). Locally the chain is Prometheus evaluating the
same query as an alerting rule, Alertmanager grouping the firing alerts and POSTing them here, and this server
starting `python -m lifecycle` (or the command it is given) once: while a run it started is still going, more
notifications for the same alert (Alertmanager repeats them, and every instance that flags drift is one alert)
start nothing. Run: `python -m lifecycle.alert_starter --port 9095 [-- command ...]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DRIFT_ALERT = "FmnistDriftDetected"  # the alerting rule's name (rule_file)
DEFAULT_COMMAND = [sys.executable, "-m", "lifecycle"]


def rule_file(expr: str, for_s: int = 0) -> str:
    """A Prometheus alerting rule that fires while `expr` (contracts.monitoring_queries.drift_fleet_promql) has a
    result."""
    return (
        "groups:\n- name: fmnist\n  rules:\n"
        f"  - alert: {DRIFT_ALERT}\n    expr: {json.dumps(expr)}\n    for: {for_s}s\n"
        "    labels: {severity: page}\n"
        "    annotations: {summary: 'input or prediction drift on the prediction service'}\n"
    )


class Starter:
    """Starts `command` for a firing drift alert unless a run it started is still running; remembers what it did."""

    def __init__(self, command: list[str]):
        self.command = command
        self.runs: list[subprocess.Popen[bytes]] = []
        self.notifications = 0
        self._lock = threading.Lock()

    def notify(self, payload: dict[str, Any]) -> str:
        with self._lock:
            self.notifications += 1
            firing = [
                a
                for a in payload.get("alerts", [])
                if a.get("status") == "firing" and a.get("labels", {}).get("alertname") == DRIFT_ALERT
            ]
            if not firing:
                return "nothing firing"
            if self.runs and self.runs[-1].poll() is None:
                return "a run is still going"
            self.runs.append(subprocess.Popen(self.command))
            return f"started run {len(self.runs)}"


def serve(starter: Starter, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """The webhook server (not yet serving: call serve_forever, in a thread for tests)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                payload = json.loads(self.rfile.read(min(length, 1 << 20)) or b"{}")
            except ValueError:
                self.send_response(400)
                self.end_headers()
                return
            body = json.dumps({"result": starter.notify(payload)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lifecycle.alert_starter", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9095)
    parser.add_argument("command", nargs="*", help="what to start (default: python -m lifecycle)")
    args = parser.parse_args(argv)
    server = serve(Starter(args.command or DEFAULT_COMMAND), args.port)
    print(f"alert starter on http://127.0.0.1:{args.port}/ (Alertmanager webhook_configs url)")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
