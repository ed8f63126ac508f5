"""Start `python -m service` on a free loopback port, wait until it is healthy, stop it: the one launcher the
lifecycle's checks, the notebooks' local service, the service tests and the benches share.

Why one: start-up has details that matter (a clean environment without the caller's AIP_* or PORT, a process group
so gunicorn's workers stop with it, "healthy" meaning every worker has warmed up, the log kept for the message
when it dies); three copies of it had drifted apart.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_MARKER = " ready in worker "  # what each worker logs once per role once its model is loaded and warmed up
BOOT_MARKER = "Booting worker with pid"  # gunicorn's line, for a service with no model yet
CHAMPION_ONLY = ("champion",)
WITH_CHALLENGER = ("champion", "challenger")


class ServiceStartFailed(RuntimeError):
    """The service exited, or was not healthy in time; the message ends with its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ready_workers(log: str, marker: str) -> dict[str, set[int]]:
    """Per role, the pids of the workers whose JSON log lines include `marker` (a gunicorn line has no role: '').

    Why pids and roles, not lines: a worker logs the ready line once per model it serves (champion, challenger)
    and again after each swap, so counting lines took one worker's two lines for two workers, and a test sending
    then found the other one still booting."""
    seen: dict[str, set[int]] = {}
    for line in log.splitlines():
        if marker not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("pid"), int):
            seen.setdefault(str(entry.get("role", "")), set()).add(entry["pid"])
    return seen


def service_environment(**overrides: str) -> dict[str, str]:
    """The caller's environment without the variables a platform or another service set, plus `overrides`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIP_", "PROMETHEUS_", "SERVICE_")) and k not in ("MODEL_URI", "PORT", "K_SERVICE")
    }
    return {**env, "PYTHONPATH": str(REPO_ROOT), "SERVICE_HOST": "127.0.0.1", **overrides}


@dataclass
class ServedProcess:
    """A running `python -m service` and where its output goes."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body bytes); one connection per request, like the sync workers expect."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body, headers or {})
            reply = conn.getresponse()
            return reply.status, dict(reply.getheaders()), reply.read()
        finally:
            conn.close()

    def worker_pids(self) -> list[int]:
        """gunicorn's workers: the children of the master process (Linux /proc)."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()]

    def log_tail(self, chars: int = 2000) -> str:
        return self.stderr.read_text(errors="replace")[-chars:]

    def answers(self, route: str) -> bool:
        try:
            return self.request("GET", route)[0] == 200
        except OSError:
            return False

    def workers_ready(self, workers: int, roles: Sequence[str] = CHAMPION_ONLY) -> bool:
        """True once `workers` distinct workers have warmed up the model of every role in `roles`; with no roles,
        once they have booted (a service waiting for its first model). Needs LOG_LEVEL INFO or DEBUG."""
        marker = READY_MARKER if roles else BOOT_MARKER
        seen = ready_workers(self.stderr.read_text(errors="replace"), marker)
        return all(len(seen.get(role, ())) >= workers for role in (roles or ("",)))

    def wait_healthy(
        self,
        *,
        route: str = "/health",
        workers: int = 0,
        roles: Sequence[str] = CHAMPION_ONLY,
        timeout: float = 60,
    ) -> None:
        """Until `route` answers 200 and, with `workers`, that many workers are ready (workers_ready: every role
        in `roles` warmed up, or booted with no roles); ServiceStartFailed otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceStartFailed(
                    f"the service exited with {self.process.returncode} before it was healthy: {self.log_tail()}"
                )
            ready = not workers or self.workers_ready(workers, roles)
            if ready and self.answers(route):
                return
            time.sleep(0.02)
        self.stop()
        raise ServiceStartFailed(f"the service was not healthy within {timeout:.0f} s: {self.log_tail()}")

    def stop(self) -> int:
        """SIGTERM to the process group (gunicorn and its workers), SIGKILL after 20 s; the exit status."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return int(self.process.returncode)


def start(
    log_dir: Path, env: dict[str, str], *, port_variable: str = "PORT", python: str | None = None
) -> ServedProcess:
    """`python -m service` with `env` (see service_environment) on a free port, its output in `log_dir`; `python`:
    another interpreter (the benches run the serving-only venv, which starts like the image), default this one."""
    port = free_port()
    stdout, stderr = log_dir / "service.stdout", log_dir / "service.stderr"
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        process = subprocess.Popen(
            [python or sys.executable, "-m", "service"],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=err,
            env={**env, port_variable: str(port)},
            start_new_session=True,
        )
    return ServedProcess(f"http://127.0.0.1:{port}", port, process, stdout, stderr)


@contextmanager
def running_service(
    model_uri: str, *, workers: int = 2, extra_env: dict[str, str] | None = None, timeout: float = 60
) -> Iterator[tuple[str, float]]:
    """The service on `model_uri` until its health route answers; yields (base URL, seconds from launch to healthy:
    the cold start the report quotes)."""
    log_dir = Path(tempfile.mkdtemp(prefix="fmnist-served-"))
    env = service_environment(MODEL_URI=model_uri, WORKERS=str(workers), LOG_LEVEL="WARNING", **(extra_env or {}))
    started = time.perf_counter()
    server = start(log_dir, env)
    try:
        server.wait_healthy(timeout=timeout)
        yield server.url, time.perf_counter() - started
    finally:
        server.stop()
        shutil.rmtree(log_dir, ignore_errors=True)
