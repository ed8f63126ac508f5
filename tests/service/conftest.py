"""Fixtures for the service: one generated model directory and registry per session, in-process apps, and a
real `python -m service` process (gunicorn, 2 workers) on a free loopback port."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from lifecycle.served import CHAMPION_ONLY, WITH_CHALLENGER, ServedProcess, service_environment, start
from tests.service.model_factory import build_registry, cached_model_dir

REPO = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "test-admin-token-0123456789abcdef"  # a test's own secret, never a deployed one
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ADMIN_ENV = {"ADMIN_ENABLED": "true", "ADMIN_TOKEN": ADMIN_TOKEN}


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """The generated test model. With TEST_MODEL_CACHE (set by `make mutate`, which runs the suite once per mutant)
    it is trained once into that directory and copied from there, instead of trained for every run; under
    pytest-xdist the workers of one run share it the same way (the run's temporary root), the first one training."""
    shared = None
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = tmp_path_factory.getbasetemp().parent / "test-model-cache"  # every worker's basetemp's parent
    return cached_model_dir(tmp_path_factory.mktemp("model") / "test-v1", shared)


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


class LiveServer(ServedProcess):
    """The launcher's process plus what the service tests read of it."""

    def json(self, method: str, path: str, document=None, headers: dict | None = None):
        body = None if document is None else json.dumps(document).encode()
        status, _, data = self.request(method, path, body, {"Content-Type": "application/json", **(headers or {})})
        return status, json.loads(data)

    def state_dir(self) -> Path:
        """The metrics and drift directory the server announced on start-up (gunicorn_conf.when_ready)."""
        found = re.search(r"metrics and drift state in ([^\"\s]+)", self.stderr.read_text())
        assert found, f"the server did not log its state directory; see {self.stderr}"
        return Path(found.group(1))


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
    return service_environment(**overrides)


def start_service(
    tmp_path: Path,
    wait: bool = True,
    port_variable: str = "PORT",
    health_route: str = "/health",
    with_model: bool = True,
    **env_overrides,
) -> LiveServer:
    """lifecycle.served's launcher; healthy = every worker has warmed up each role's model (or booted, without a
    model), as lifecycle.served.ServedProcess.workers_ready counts them."""
    started = start(tmp_path, service_env(**env_overrides), port_variable=port_variable)
    server = LiveServer(started.url, started.port, started.process, started.stdout, started.stderr)
    if wait:
        workers = int(env_overrides.get("WORKERS", "2"))
        roles = (WITH_CHALLENGER if env_overrides.get("CHALLENGER") else CHAMPION_ONLY) if with_model else ()
        server.wait_healthy(route=health_route, workers=workers, roles=roles, timeout=60)
    return server


def stop_service(server: LiveServer) -> int:
    return server.stop()


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
