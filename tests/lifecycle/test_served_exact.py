"""The launcher exactly (lifecycle/served.py, issue 27's served group), cheaply and for real: a stand-in interpreter
(a shell script in place of `python`, the one thing `start` lets a caller choose) records the command line, folder
and environment it was started with and serves a health route with the standard library's http.server; the health
wait polls a loopback server of the test's own beside a real process; the stop signals real process groups. The
real service under this launcher: tests/service (every live-server test) and `make demo`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from lifecycle import served
from lifecycle.served import (
    READY_MARKER,
    REPO_ROOT,
    WITH_CHALLENGER,
    ServedProcess,
    ServiceStartFailed,
    free_port,
    ready_workers,
    running_service,
    service_environment,
    start,
)

# a stand-in for `python`: records how it was started, writes a line to each stream, then serves $RECORD's files
# (one named "health") on the port it was given, unless NO_HEALTH is set
STAND_IN = """#!/bin/sh
printf '%s\\n' "$@" > "$RECORD/argv"
pwd > "$RECORD/cwd"
env > "$RECORD/env"
echo "to stdout"
echo "to stderr" >&2
[ -n "$NO_HEALTH" ] && exec sleep 30
exec "$REAL_PYTHON" -m http.server --bind 127.0.0.1 --directory "$RECORD" "${PORT:-$AIP_HTTP_PORT}"
"""


@pytest.fixture
def stand_in(tmp_path) -> tuple[str, dict[str, str], Path]:
    """(the stand-in interpreter, the environment it needs, the folder it records into)."""
    record = tmp_path / "record"
    record.mkdir()
    (record / "health").write_text("ok")
    script = tmp_path / "python"
    script.write_text(STAND_IN)
    script.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "RECORD": str(record), "REAL_PYTHON": sys.executable}
    return str(script), env, record


def _recorded(record: Path, name: str) -> str:
    deadline = time.monotonic() + 30
    while not (record / "env").exists() or not (record / "env").read_text().endswith("\n"):
        assert time.monotonic() < deadline, "the stand-in never started"
        time.sleep(0.01)
    return (record / name).read_text()


def _environment(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


class Health:
    """A loopback health route: answers `status` and records each request's path."""

    def __init__(self) -> None:
        self.status = 200
        self.paths: list[str] = []
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                health.paths.append(self.path)
                self.send_response(health.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                health.paths.append(f"{self.path} {self.headers['X-Probe']} {body.decode()}")
                self.send_response(201)
                self.send_header("X-Reply", "yes")
                self.send_header("Content-Length", "4")
                self.end_headers()
                self.wfile.write(b"done")

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]


@pytest.fixture
def health() -> Iterator[Health]:
    health = Health()
    threading.Thread(target=health.server.serve_forever, args=(0.05,), daemon=True).start()
    yield health
    health.server.shutdown()
    health.server.server_close()


def _sleeper(tmp_path: Path, port: int, log: str = "", command: list[str] | None = None) -> ServedProcess:
    (tmp_path / "service.stderr").write_text(log)
    process = subprocess.Popen(command or ["sleep", "30"], start_new_session=True)
    return ServedProcess(
        f"http://127.0.0.1:{port}", port, process, tmp_path / "service.stdout", tmp_path / "service.stderr"
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens there once the socket is closed


def _starting(python: str, launched: list[ServedProcess]):
    """`start` as running_service calls it, on the stand-in interpreter; each launch kept in `launched`."""

    def start_stand_in(log_dir: Path, env: dict[str, str]) -> ServedProcess:
        launched.append(start(log_dir, env, python=python))
        return launched[-1]

    return start_stand_in


def _ready(pid: int, role: str = "champion") -> str:
    return f'{{"message": "model v1 ready in worker {pid}", "pid": {pid}, "role": "{role}"}}\n'


def test_the_environment_drops_what_a_platform_or_another_service_set(monkeypatch):
    for name in list(os.environ):
        monkeypatch.delenv(name)
    kept = {"HOME": "/h", "AIPX": "1", "SERVICE": "2", "PROMETHEUS": "3", "MY_PORT": "4", "K_SERVICES": "5"}
    dropped = {"AIP_HTTP_PORT": "8", "PROMETHEUS_URL": "9", "SERVICE_PORT": "10", "MODEL_URI": "gs://x", "PORT": "1"}
    for name, value in {**kept, **dropped, "K_SERVICE": "svc"}.items():
        monkeypatch.setenv(name, value)
    assert service_environment() == {**kept, "PYTHONPATH": str(REPO_ROOT), "SERVICE_HOST": "127.0.0.1"}
    assert service_environment(SERVICE_HOST="0.0.0.0", PYTHONPATH="p", WORKERS="3") == {
        **kept,
        "PYTHONPATH": "p",
        "SERVICE_HOST": "0.0.0.0",
        "WORKERS": "3",
    }
    assert Path(served.__file__).resolve().parent.parent == REPO_ROOT


def test_a_free_port_is_a_loopback_port_nothing_holds():
    port = free_port()
    assert isinstance(port, int) and 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_start_runs_the_interpreter_on_the_service_package_in_its_own_session(tmp_path, stand_in, monkeypatch):
    python, env, record = stand_in
    monkeypatch.chdir(tmp_path)  # a caller elsewhere (a notebook's folder): the service still starts in the repository
    server = start(tmp_path, env, python=python)
    try:
        assert _recorded(record, "argv") == "-m\nservice\n"
        assert _recorded(record, "cwd") == f"{REPO_ROOT}\n"
        started_with = _environment(_recorded(record, "env"))
        assert started_with["PORT"] == str(server.port) and started_with["RECORD"] == str(record)
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert os.getsid(server.process.pid) == server.process.pid  # a session, so its workers stop with it
        assert (server.stdout, server.stderr) == (tmp_path / "service.stdout", tmp_path / "service.stderr")
        server.wait_healthy(timeout=30)
        assert server.stdout.read_text() == "to stdout\n"
        assert server.stderr.read_text().startswith("to stderr\n")
    finally:
        assert server.stop() == -signal.SIGTERM


def test_start_names_the_port_variable_and_defaults_to_this_interpreter(tmp_path, stand_in, monkeypatch):
    python, env, record = stand_in
    monkeypatch.setattr(sys, "executable", python)
    server = start(tmp_path, {**env, "NO_HEALTH": "1"}, port_variable="AIP_HTTP_PORT")
    try:
        started_with = _environment(_recorded(record, "env"))
        assert started_with["AIP_HTTP_PORT"] == str(server.port) and "PORT" not in started_with
    finally:
        server.stop()


def test_running_service_starts_with_the_models_environment_and_cleans_up(tmp_path, stand_in, monkeypatch):
    python, env, record = stand_in
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AIP_MODEL_DIR", "gs://platform")
    launched: list[ServedProcess] = []
    monkeypatch.setattr("lifecycle.served.start", _starting(python, launched))
    before = time.perf_counter()
    with running_service("gs://models@champion", extra_env={"INDEX_PUBLIC_KEY": "PEM"}) as (url, cold_start):
        inside = time.perf_counter()
        [server] = launched
        assert url == server.url and server.answers("/health")
        assert 0 < cold_start <= inside - before
    started_with = _environment(_recorded(record, "env"))
    expected = {"MODEL_URI": "gs://models@champion", "WORKERS": "2", "LOG_LEVEL": "WARNING", "INDEX_PUBLIC_KEY": "PEM"}
    assert {name: started_with.get(name) for name in expected} == expected
    assert started_with["SERVICE_HOST"] == "127.0.0.1" and "AIP_MODEL_DIR" not in started_with
    assert server.process.returncode == -signal.SIGTERM  # stopped on leaving
    assert not server.stdout.parent.exists()  # its log folder removed
    assert server.stdout.parent.name.startswith("fmnist-served-")


def test_running_service_that_never_answers_fails_within_its_timeout_and_is_stopped(tmp_path, stand_in, monkeypatch):
    python, env, record = stand_in
    for name, value in {**env, "NO_HEALTH": "1"}.items():
        monkeypatch.setenv(name, value)
    launched: list[ServedProcess] = []
    monkeypatch.setattr("lifecycle.served.start", _starting(python, launched))
    started = time.monotonic()
    failed = pytest.raises(ServiceStartFailed, match=r"^the service was not healthy within 1 s: to stderr\n$")
    with failed, running_service("gs://m@champion", workers=3, timeout=1):
        pass
    assert 1 <= time.monotonic() - started < 20
    assert _environment(_recorded(record, "env"))["WORKERS"] == "3"
    assert launched[0].process.returncode == -signal.SIGTERM
    assert not launched[0].stdout.parent.exists()


def test_the_wait_asks_the_health_route_or_the_one_named(tmp_path, health):
    server = _sleeper(tmp_path, health.port)
    try:
        server.wait_healthy()
        server.wait_healthy(route="/ready", timeout=5)
        assert health.paths == ["/health", "/ready"]
    finally:
        server.stop()


def test_the_wait_asks_only_once_every_worker_has_warmed_up_every_role(tmp_path, health):
    server = _sleeper(tmp_path, health.port, log=_ready(11) + _ready(12) + _ready(11, "challenger"))
    try:
        with pytest.raises(ServiceStartFailed, match="not healthy within 0 s"):  # worker 12 has no challenger
            server.wait_healthy(workers=2, roles=WITH_CHALLENGER, timeout=0.3)
        assert health.paths == []
    finally:
        server.stop()
    server = _sleeper(tmp_path, health.port)
    written: list[float] = []

    def warm_up() -> None:
        time.sleep(0.3)
        written.append(time.monotonic())
        with open(server.stderr, "a", encoding="utf-8") as fh:
            fh.write(_ready(21) + _ready(22))

    threading.Thread(target=warm_up).start()
    try:
        server.wait_healthy(workers=2, timeout=30)
        assert written and health.paths == ["/health"]  # asked once, after both workers were ready
    finally:
        server.stop()


def test_a_service_that_exits_is_reported_with_its_status_and_log(tmp_path):
    server = _sleeper(tmp_path, _closed_port(), log="a" * 500 + "b" * 2000, command=["sh", "-c", "exit 3"])
    server.process.wait()
    with pytest.raises(ServiceStartFailed) as caught:
        server.wait_healthy(timeout=30)
    assert str(caught.value) == "the service exited with 3 before it was healthy: " + "b" * 2000
    assert server.log_tail(3) == "bbb"


def test_the_wait_polls_every_20_ms_for_60_s_by_default_then_stops_the_service(tmp_path, monkeypatch):
    clock, naps = [0.0], []

    def nap(seconds: float) -> None:
        naps.append(seconds)
        clock[0] += 1.0  # a second per poll: the 60 s deadline in 60 polls

    monkeypatch.setattr("lifecycle.served.time", SimpleNamespace(monotonic=lambda: clock[0], sleep=nap))
    server = _sleeper(tmp_path, _closed_port(), log="still loading\n")
    with pytest.raises(ServiceStartFailed) as caught:
        server.wait_healthy()
    assert str(caught.value) == "the service was not healthy within 60 s: still loading\n"
    assert naps == [0.02] * 60
    assert server.process.returncode == -signal.SIGTERM


def test_answers_only_a_200(tmp_path, health):
    server = _sleeper(tmp_path, health.port)
    try:
        assert server.answers("/x")
        health.status = 503
        assert not server.answers("/x")
        status, headers, body = server.request("POST", "/p", b"body", {"X-Probe": "1"})
        assert (status, headers["X-Reply"], body) == (201, "yes", b"done")
        assert health.paths[-1] == "/p 1 body"
    finally:
        server.stop()
    assert not ServedProcess("", _closed_port(), server.process, server.stdout, server.stderr).answers("/x")


def test_stop_terminates_the_whole_group(tmp_path):
    process = subprocess.Popen(
        ["sh", "-c", "sleep 30 & echo $!; sleep 30 & echo $!; wait"], stdout=subprocess.PIPE, start_new_session=True
    )
    assert process.stdout is not None
    children = sorted(int(process.stdout.readline()) for _ in range(2))
    server = ServedProcess("", 1, process, tmp_path / "o", tmp_path / "e")
    deadline = time.monotonic() + 10
    while sorted(server.worker_pids()) != children:
        assert time.monotonic() < deadline, (server.worker_pids(), children)
        time.sleep(0.01)
    assert server.stop() == -signal.SIGTERM
    for pid in children:  # the workers got the signal too (the group's, not only the master's)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]:
            assert time.monotonic() < deadline, f"worker {pid} still runs"
            time.sleep(0.01)
    process.stdout.close()


class Impatient(subprocess.Popen):
    """Records each timed wait and gives it 0.3 s, not its 20 s."""

    waits: list[float] = []

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None:
            return super().wait()
        self.waits.append(timeout)
        try:
            return super().wait(0.3)
        except subprocess.TimeoutExpired:
            raise subprocess.TimeoutExpired(self.args, timeout) from None


def test_stop_kills_a_service_that_ignores_sigterm_after_20_s(tmp_path):
    Impatient.waits = []
    process = Impatient(["sh", "-c", "trap '' TERM; exec sleep 30"], start_new_session=True)
    deadline = time.monotonic() + 10
    while not Path(f"/proc/{process.pid}/cmdline").read_bytes().startswith(b"sleep"):  # exec'd with TERM ignored
        assert time.monotonic() < deadline
        time.sleep(0.01)
    server = ServedProcess("", 1, process, tmp_path / "o", tmp_path / "e")
    assert server.stop() == -signal.SIGKILL
    assert Impatient.waits == [20]


def test_stop_of_an_exited_service_returns_its_status_and_signals_nothing(tmp_path):
    process = subprocess.Popen(["sh", "-c", "exit 4"], start_new_session=True)
    process.wait()
    assert ServedProcess("", 1, process, tmp_path / "o", tmp_path / "e").stop() == 4


def test_running_service_waits_60_s_by_default(tmp_path, stand_in, monkeypatch):
    python, env, _ = stand_in
    for name, value in {**env, "NO_HEALTH": "1"}.items():
        monkeypatch.setenv(name, value)
    launched: list[ServedProcess] = []
    monkeypatch.setattr("lifecycle.served.start", _starting(python, launched))
    clock = [0.0]
    monkeypatch.setattr(
        "lifecycle.served.time",
        SimpleNamespace(
            monotonic=lambda: clock[0],
            perf_counter=time.perf_counter,
            sleep=lambda s: clock.__setitem__(0, clock[0] + 1),
        ),
    )
    with pytest.raises(ServiceStartFailed, match=r"^the service was not healthy within 60 s: "), running_service("m"):
        pass
    assert clock == [60.0] and launched[0].process.returncode == -signal.SIGTERM


def test_a_log_that_is_not_utf8_is_still_read(tmp_path):
    server = _sleeper(tmp_path, _closed_port(), command=["true"])
    server.stderr.write_bytes(b"\xff\n" + _ready(31).encode() + _ready(32).encode())
    assert server.workers_ready(2)
    assert server.log_tail(4)[-1] == "\n" and server.log_tail().startswith("\ufffd")
    server.process.wait()


def test_lines_with_the_marker_that_are_not_a_workers_json_entry_are_skipped():
    log = "\n".join(
        [
            "Traceback: model ready in worker 7 (plain text)",
            '"model ready in worker 8"',
            '{"message": "model ready in worker 9", "pid": "9", "role": "champion"}',
            '{"message": "model ready in worker 10", "role": "champion"}',
            _ready(11).strip(),
        ]
    )
    assert ready_workers(log, READY_MARKER) == {"champion": {11}}


def test_a_request_gives_up_after_30_s_so_a_hung_service_cannot_hang_the_wait(tmp_path, health, monkeypatch):
    import http.client

    made: list[dict] = []
    real = http.client.HTTPConnection

    def connection(*args: object, **kwargs: object) -> http.client.HTTPConnection:
        made.append({"args": args, **kwargs})
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(http.client, "HTTPConnection", connection)
    server = _sleeper(tmp_path, health.port, command=["true"])
    assert server.request("GET", "/health")[0] == 200
    assert made == [{"args": ("127.0.0.1", health.port), "timeout": 30}]
    server.process.wait()
