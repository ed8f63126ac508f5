"""The local starter exactly (lifecycle/alert_starter.py, issue 27's lifecycle-small group): the alerting rule it
writes for Prometheus, and its webhook over the wire as Alertmanager calls it: which alerts count, which incident
names the run, the reply, the command started; a body that is not JSON is a 400."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from lifecycle.alert_starter import DRIFT_ALERT, Starter, rule_file, serve

QUICK = [sys.executable, "-c", "pass"]  # a run that ends at once


def _alert(starts_at: str, status: str = "firing", name: str = DRIFT_ALERT) -> dict:
    return {"status": status, "labels": {"alertname": name, "instance": "i0"}, "startsAt": starts_at}


@pytest.fixture
def webhook(tmp_path) -> Iterator[tuple[Starter, str]]:
    starter = Starter(QUICK, tmp_path / "deferred.json")
    server = serve(starter, 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield starter, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    for run in starter.runs:
        run.wait(timeout=30)


def _post(url: str, body: bytes) -> tuple[int, str, dict]:
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.headers["Content-Type"], json.loads(reply.read())
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers["Content-Type"], {}


def test_the_rule_fires_on_the_query_as_given_after_its_for_duration():
    text = rule_file('max(fmnist_drift{x="a"}) > 0', 120)
    assert text == (
        "groups:\n- name: fmnist\n  rules:\n"
        '  - alert: FmnistDriftDetected\n    expr: "max(fmnist_drift{x=\\"a\\"}) > 0"\n    for: 120s\n'
        "    labels: {severity: page}\n"
        "    annotations: {summary: 'input or prediction drift on the prediction service'}\n"
    )
    [rule] = yaml.safe_load(text)["groups"][0]["rules"]
    assert rule["expr"] == 'max(fmnist_drift{x="a"}) > 0' and rule["for"] == "120s"
    assert yaml.safe_load(rule_file("up"))["groups"][0]["rules"][0]["for"] == "0s"  # fires at once by default


def test_a_firing_drift_alert_starts_the_command_for_the_earliest_incident(webhook):
    starter, url = webhook
    payload = {
        "alerts": [
            _alert("2026-12-06T10:05:00Z"),
            _alert("2026-12-06T10:00:00Z"),  # the earliest firing one names the incident
            _alert("2026-12-06T09:00:00Z", status="resolved"),
            _alert("2026-12-06T08:00:00Z", name="OtherAlert"),
        ]
    }
    status, content_type, body = _post(url, json.dumps(payload).encode())
    assert (status, content_type) == (200, "application/json")
    assert body == {"result": "started lifecycle-drift-2026-12-06t10-00-00z: drift drift alert firing"}
    assert [run.args for run in starter.runs] == [QUICK]
    assert starter.notifications == 1


def test_resolved_or_other_alerts_and_an_empty_body_start_nothing(webhook):
    starter, url = webhook
    for payload in (
        {"alerts": [_alert("2026-12-06T10:00:00Z", status="resolved")]},
        {"alerts": [_alert("2026-12-06T10:00:00Z", name="InstanceDown")]},
        {"alerts": [{"status": "firing", "startsAt": "2026-12-06T10:00:00Z"}]},
        {},
    ):
        assert _post(url, json.dumps(payload).encode())[2] == {"result": "nothing firing"}, payload
    assert _post(url, b"")[2] == {"result": "nothing firing"}
    assert starter.runs == [] and starter.notifications == 5


def test_a_body_that_is_not_json_is_refused_and_counts_as_no_notification(webhook):
    starter, url = webhook
    status, _, _ = _post(url, b"{not json")
    assert status == 400 and starter.notifications == 0 and starter.runs == []


def test_a_run_is_started_once_per_incident_and_known_after_it_ends(tmp_path):
    starter = Starter(QUICK, tmp_path / "deferred.json")
    payload = {"alerts": [_alert("2026-12-06T10:00:00Z")]}
    assert starter.notify(payload).startswith("started lifecycle-drift-2026-12-06t10-00-00z")
    starter.runs[0].wait(timeout=30)
    assert starter.local.active() == [] and starter.local.exists("lifecycle-drift-2026-12-06t10-00-00z")
    assert starter.local.start("lifecycle-drift-2026-12-06t10-00-00z", {}) is False  # never twice
    assert starter.notify(payload) == (
        "exists lifecycle-drift-2026-12-06t10-00-00z: this event's run was started before (a redelivered event)"
    )
    assert len(starter.runs) == 1


def test_without_a_deferrals_file_one_is_made_in_a_folder_of_its_own():
    one, two = Starter(QUICK), Starter(QUICK)
    assert one.deferrals.path.name == "deferred.json" and one.deferrals.path.parent.name.startswith("alert-starter-")
    assert one.deferrals.path.parent != two.deferrals.path.parent
    for starter in (one, two):
        Path(starter.deferrals.path.parent).rmdir()


def test_a_body_over_one_mebibyte_is_not_read_past_it(webhook):
    starter, url = webhook
    payload = {"alerts": [_alert("2026-12-06T10:00:00Z")], "padding": "x" * (1 << 20)}
    try:
        status = _post(url, json.dumps(payload).encode())[0]  # cut at 1 MiB: no longer JSON
    except (urllib.error.URLError, ConnectionError):
        status = 400  # the refusal can reach the client as a reset: the rest of the body was never read
    assert status == 400 and starter.notifications == 0 and starter.runs == []


def test_the_command_serves_its_command_and_deferrals_file_on_its_port(tmp_path, monkeypatch, capsys):
    from lifecycle import alert_starter

    made: list[tuple[Starter, int, ThreadingHTTPServer]] = []
    real_serve = alert_starter.serve

    def serve_on_a_free_port(starter: Starter, port: int) -> ThreadingHTTPServer:
        made.append((starter, port, real_serve(starter, 0)))  # the port asked for is recorded, a free one bound
        return made[-1][2]

    monkeypatch.setattr(alert_starter, "serve", serve_on_a_free_port)
    codes: list[int] = []
    for argv in (["--port", "9123", "--deferrals", str(tmp_path / "d.json"), "--", *QUICK], []):
        thread = threading.Thread(target=lambda argv=argv: codes.append(alert_starter.main(argv)), daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while len(made) < (1 if argv else 2) and time.monotonic() < deadline:
            time.sleep(0.01)
        made[-1][2].shutdown()
        thread.join(timeout=30)
        made[-1][2].server_close()
    (given, given_port, _), (default, default_port, _) = made
    assert codes == [0, 0]  # a server shut down is a clean exit
    assert (given.local.command, given.deferrals.path, given_port) == (QUICK, tmp_path / "d.json", 9123)
    assert (default.local.command, default_port) == ([sys.executable, "-m", "lifecycle"], 9095)
    assert capsys.readouterr().out == (
        "alert starter on http://127.0.0.1:9123/ (Alertmanager webhook_configs url)\n"
        "alert starter on http://127.0.0.1:9095/ (Alertmanager webhook_configs url)\n"
    )
    Path(default.deferrals.path.parent).rmdir()


def test_the_command_s_usage_names_it_as_run_and_says_what_it_is(capsys):
    from lifecycle.alert_starter import main

    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    assert stopped.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal's width
    assert text.startswith("usage: python -m lifecycle.alert_starter [-h] [--port PORT]")
    assert (
        "The local counterpart of the pipeline starter: an Alertmanager webhook that starts one lifecycle run on drift."
        in text
    )


def test_a_post_without_a_content_length_is_an_empty_notification(webhook):
    starter, url = webhook
    port = int(url.rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"POST / HTTP/1.0\r\n\r\n")  # the client waits for the reply: nothing more is read
        reply = b""
        while chunk := connection.recv(65536):  # HTTP/1.0: the server closes after its reply
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 ") and body == b'{"result": "nothing firing"}'
    # Alertmanager's Go client refuses a reply whose Content-Length is not the body's length
    assert b"\r\nContent-Length: 28" in head + b"\r\n" and head.endswith(b"\r\nContent-Length: 28")
    assert starter.notifications == 1
