"""Fixtures for the service: one generated model directory and registry per session, in-process apps, and a
real `python -m service` process (gunicorn, 2 workers) on a free loopback port."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.service.model_factory import build_model_dir, build_registry

REPO = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "test-admin-token-0123456789abcdef"  # a test's own secret, never a deployed one
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ADMIN_ENV = {"ADMIN_ENABLED": "true", "ADMIN_TOKEN": ADMIN_TOKEN}


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """The generated test model. With TEST_MODEL_CACHE (set by `make mutate`, which runs the suite once per mutant)
    it is trained once into that directory and copied from there, instead of trained for every run."""
    target = tmp_path_factory.mktemp("model") / "test-v1"
    cache = os.environ.get("TEST_MODEL_CACHE")
    if not cache:
        return build_model_dir(target)
    cached = Path(cache) / "test-v1"
    if not cached.is_dir():
        built = build_model_dir(Path(cache) / f"building-{os.getpid()}" / "test-v1")
        try:
            built.rename(cached)  # whole or not at all: a run killed mid-build leaves no half model behind
        except OSError:
            if not cached.is_dir():  # another run won the race only if its copy is there
                raise
        shutil.rmtree(built.parent, ignore_errors=True)
    shutil.copytree(cached, target)
    return target


@pytest.fixture(scope="session")
def models_root(tmp_path_factory, model_dir) -> Path:
    return build_registry(tmp_path_factory.mktemp("bucket") / "models", model_dir)


@pytest.fixture(scope="session")
def make_app(model_dir):
    """create_app with a model directory and extra environment variables (in-process, no gunicorn)."""
    from service.app import create_app

    def factory(**env):
        return create_app({"MODEL_URI": str(model_dir), "PAGE_ENABLED": "true", **env})

    return factory


@pytest.fixture(scope="session")
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    port: int
    process: subprocess.Popen
    stdout: Path
    stderr: Path

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """(status, headers, body bytes); one connection per request, like the sync workers expect."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body, headers or {})
            reply = conn.getresponse()
            return reply.status, dict(reply.getheaders()), reply.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, document=None, headers: dict | None = None):
        body = None if document is None else json.dumps(document).encode()
        status, _, data = self.request(method, path, body, {"Content-Type": "application/json", **(headers or {})})
        return status, json.loads(data)

    def state_dir(self) -> Path:
        """The metrics and drift directory the server announced on start-up (gunicorn_conf.when_ready)."""
        found = re.search(r"metrics and drift state in ([^\"\s]+)", self.stderr.read_text())
        assert found, f"the server did not log its state directory; see {self.stderr}"
        return Path(found.group(1))

    def worker_pids(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()]


def counts_per_worker(state_dir: Path, sample: str, **labels: str) -> dict[int, float]:
    """One counter's value in each process's own multiprocess file (counter_<pid>.db), summed over the series
    whose labels include `labels`: which worker counted what, which the aggregated /metrics cannot say."""
    from prometheus_client.mmap_dict import MmapedDict

    counted = {}
    for path in state_dir.glob("prometheus/counter_*.db"):
        pid = int(re.fullmatch(r"counter_(\d+)\.db", path.name).group(1))
        counted[pid] = 0.0
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            _, name, series, _ = json.loads(key)
            if name == sample and all(series.get(k) == v for k, v in labels.items()):
                counted[pid] += value
    return counted


def service_env(**overrides) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIP_", "PROMETHEUS_", "SERVICE_")) and k not in ("MODEL_URI", "PORT", "K_SERVICE")
    }
    env.update(PYTHONPATH=str(REPO), SERVICE_HOST="127.0.0.1", **overrides)
    return env


def models_ready(log: str) -> dict[int, set[str]]:
    """The roles (champion, challenger) each worker has built and warmed up, from its model_ready log lines.

    Why per worker and role, not a count of lines: a worker with a challenger logs two, so two lines can be one
    worker, and a test that starts sending then would find the other still booting and every request on the first.
    """
    ready: dict[int, set[str]] = {}
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == "model_ready":
            ready.setdefault(entry["pid"], set()).add(entry["role"])
    return ready


def start_service(
    tmp_path: Path,
    wait: bool = True,
    port_variable: str = "PORT",
    health_route: str = "/health",
    with_model: bool = True,
    **env_overrides,
) -> LiveServer:
    port = free_port()
    stdout, stderr = tmp_path / "service.stdout", tmp_path / "service.stderr"
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=REPO,
            stdout=out,
            stderr=err,
            env=service_env(**{port_variable: str(port)}, **env_overrides),
            start_new_session=True,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", port, process, stdout, stderr)
    workers = int(env_overrides.get("WORKERS", "2"))  # healthy = every worker has warmed up, not just the first
    roles = {"champion", "challenger"} if env_overrides.get("CHALLENGER") else {"champion"}
    if not wait:
        return server
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"service exited with {process.returncode}: {stderr.read_text()[-2000:]}")
        try:
            healthy = server.request("GET", health_route)[0] == 200
        except OSError:
            healthy = False
        if with_model:
            booted = sum(ready >= roles for ready in models_ready(stderr.read_text()).values())
        else:
            booted = stderr.read_text().count("Booting worker with pid")
        if healthy and booted >= workers:
            return server
        time.sleep(0.05)
    stop_service(server)
    raise RuntimeError(f"service not healthy within 60 s: {stderr.read_text()[-2000:]}")


def stop_service(server: LiveServer) -> int:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()
    return server.process.returncode


@pytest.fixture(scope="session")
def live_server(tmp_path_factory, models_root):
    """The service on the registry's champion, 2 workers, drift sampling every image (tests send few)."""
    server = start_service(
        tmp_path_factory.mktemp("live"),
        MODEL_URI=f"{models_root}@champion",
        WORKERS="2",
        DRIFT_SAMPLE_EVERY="1",
        DRIFT_MIN_IMAGES="100",
        PAGE_ENABLED="true",
        MAX_INSTANCES="64",
        **ADMIN_ENV,
    )
    yield server
    stop_service(server)


@pytest.fixture(scope="session")
def linear_model_dir(tmp_path_factory, model_dir) -> Path:
    """A second, different real model (a random linear softmax): a challenger that disagrees with model_dir."""
    from tests.service.model_factory import build_linear_model_dir

    return build_linear_model_dir(model_dir, tmp_path_factory.mktemp("linear") / "test-v2", "test-v2")
