"""The twin's fakes, reached by the real client libraries over the wire, through the adapters' own code paths:
the adapter builds its request and calls the SDK exactly as on Google Cloud; only the environment names the twin.

Each test checks what the fake received (the SDK's own encoding) and what the adapter reads back."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import storage
from contracts import feature_schema
from settings import load_config
from trainer.cloud import endpoints
from twin import bigquery, metadata, monitoring, vertex

ARROW = {"STRING": pa.string(), "INT64": pa.int64(), "FLOAT64": pa.float64()}
VERSION = "v-0123456789ab"


@pytest.fixture
def credentials(tmp_path, monkeypatch):
    """The twin's credentials for this process: a service-account key whose token grant is the metadata fake."""
    with metadata.serve("fmnist-mlops-dev", "pipelines@fmnist-mlops-dev.iam.gserviceaccount.com") as meta:
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(meta.service_account_file(tmp_path / "sa.json")))
        yield meta


@pytest.fixture
def dev(gcs_bucket, monkeypatch):
    """dev settings whose buckets are fresh ones on fake-gcs-server (a unique bucket prefix)."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    settings = load_config("dev", environ={"FMNIST_BUCKET_PREFIX": prefix})
    for kind in ("datasets", "models", "dev"):
        storage.gcs_client().create_bucket(settings.names.bucket(kind))
    return settings


def write_features(settings, rows: int, drop: str = "") -> str:
    from trainer.data.dataset import version_uri

    columns = {
        c["name"]: pa.array([f"x{i}" if c["type"] == "STRING" else i for i in range(rows)], ARROW[c["type"]])
        for c in feature_schema.bigquery_schema()
        if c["name"] != drop
    }
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    uri = storage.join(version_uri(settings, VERSION), "features.parquet")
    storage.write_bytes(uri, buffer.getvalue())
    return uri


def test_feed_feature_store_loads_bigquery_and_syncs_the_feature_view_over_the_wire(dev, credentials, monkeypatch):
    from trainer.cloud.feed_feature_store import build_requests, send

    source = write_features(dev, rows=37)
    names = dev.names
    table_id = f"{names.project}.{names.bigquery_dataset}.{names.feature_table}"
    with bigquery.serve() as bq, vertex.serve() as fake:
        bq.seed_table(table_id)
        fake.seed(names.feature_view_name)
        monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", bq.endpoint)  # google-cloud-bigquery reads it itself
        monkeypatch.setenv(endpoints.VERTEX_AI, fake.endpoint)
        rows, sync = send(build_requests(dev, VERSION))
        assert rows == 37 and int(bq.tables[table_id]["numRows"]) == 37
        (load,) = bq.loads()
        assert load["sourceUris"] == [source] and load["writeDisposition"] == "WRITE_TRUNCATE"
        assert load["destinationEncryptionConfiguration"] == {"kmsKeyName": names.kms_key_name}
        assert load["schema"]["fields"] == feature_schema.bigquery_schema()  # as the SDK encoded it
        assert sync.startswith(f"{names.feature_view_name}/featureViewSyncs/")
        assert fake.only("POST", ":sync").path == names.feature_view_name
        # every request carried credentials (the SDKs' own: an access token or a self-signed JWT of the key)
        assert all(r.authorization.startswith("Bearer ") for r in [*bq.requests, *fake.requests])

        # a second run (a retried task) replaces the rows: still one row per image, not two
        send(build_requests(dev, VERSION))
        assert int(bq.tables[table_id]["numRows"]) == 37 and len(bq.loads()) == 2


def test_a_load_whose_parquet_lacks_a_schema_column_fails_as_bigquery_fails_it(dev, credentials, monkeypatch):
    from google.api_core import exceptions

    from trainer.cloud.feed_feature_store import build_requests, send

    write_features(dev, rows=5, drop="image_id")
    names = dev.names
    with bigquery.serve() as bq:
        bq.seed_table(f"{names.project}.{names.bigquery_dataset}.{names.feature_table}")
        monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", bq.endpoint)
        with pytest.raises(exceptions.GoogleAPICallError, match="Field image_id is missing"):
            send(build_requests(dev, VERSION))


MONITORING_PROBE = """
import json, sys
from google.cloud import monitoring_v3
from settings import load_config
from trainer.cloud import endpoints
from trainer.cloud.rollout import Deployed, read_stats

client = monitoring_v3.MetricServiceClient(**endpoints.monitoring_client_kwargs())
stats = read_stats(client, load_config("dev").names, Deployed("7", "v-7", 10), 600, 1_767_225_600)
print(json.dumps(stats.__dict__))
"""


def test_the_rollout_reads_cloud_monitoring_through_the_real_client_over_grpc_with_tls(tmp_path):
    """A fresh process (gRPC reads its trust roots once): the real MetricServiceClient, its default gRPC transport,
    TLS to the twin's certificate, the twin's credentials, rollout's own read_stats."""
    from trainer.cloud.rollout import METRIC_PREFIX, SERIES

    names = load_config("dev", environ={}).names
    account = "pipelines@fmnist-mlops-dev.iam.gserviceaccount.com"
    with monitoring.serve(tmp_path) as fake, metadata.serve(names.project, account) as meta:
        resource = {"type": "aiplatform.googleapis.com/Endpoint", "labels": {"endpoint_id": names.endpoint_id}}
        for figure, values in {"requests": [60.0, 40.0], "errors": [1.0], "latency_p99_ms": [12.0, 30.0]}.items():
            metric = {"type": f"{METRIC_PREFIX}{SERIES[figure][0]}", "labels": {"deployed_model_id": "7"}}
            fake.seed_series(names.project, metric, resource, values)
        fake.seed_series(names.project, {"type": f"{METRIC_PREFIX}prediction_count"}, resource, [999.0])  # another
        env = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_APPLICATION_CREDENTIALS", "FMNIST_ENV")}
        env.update(fake.environment(), **meta.environment(), CLOUDSDK_CONFIG=str(tmp_path / "gcloud"))
        out = subprocess.run(
            [sys.executable, "-c", MONITORING_PROBE], env=env, capture_output=True, text=True, timeout=120
        )
    assert out.returncode == 0, out.stderr[-3000:]
    stats = json.loads(out.stdout)
    assert (stats["requests"], stats["errors"], stats["latency_p99_ms"]) == (100, 1, 30.0)
    assert [r.verb for r in fake.requests] == ["ListTimeSeries"] * len(SERIES)
    first = fake.requests[0]
    assert first.path == f"projects/{names.project}" and 'deployed_model_id = "7"' in first.query["filter"]
    assert first.body["interval"]["end_time"]  # the SDK's encoding of the window, as received
    assert first.authorization == "Bearer twin-token-0"  # the metadata server's token, on the TLS channel


def test_a_process_started_against_the_twin_gets_compute_engine_credentials_from_its_metadata_server():
    """GCE_METADATA_HOST / GCE_METADATA_IP: google.auth.default() in a fresh process finds the twin's identity."""
    probe = (
        "import google.auth, google.auth.transport.requests as r\n"
        "c, project = google.auth.default()\n"
        "c.refresh(r.Request())\n"
        "print(type(c).__module__, project, c.service_account_email, c.token)\n"
    )
    with metadata.serve("fmnist-mlops-dev", "pipelines@fmnist-mlops-dev.iam.gserviceaccount.com") as meta:
        env = {k: v for k, v in os.environ.items() if k != "GOOGLE_APPLICATION_CREDENTIALS"}
        env.update(meta.environment(), CLOUDSDK_CONFIG=os.devnull)
        out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    module, project, email, token = out.stdout.split()
    assert module == "google.auth.compute_engine.credentials" and project == "fmnist-mlops-dev"
    assert email == "pipelines@fmnist-mlops-dev.iam.gserviceaccount.com" and token.startswith(metadata.TOKEN_PREFIX)


def test_experiment_tracking_without_a_tensorboard_runs_through_the_real_sdk():
    """dev has no vertex.tensorboard: the real SDK refuses time series then (RuntimeError, not a Google API error),
    which ended the twin's first custom job. Start, an epoch and the final metrics must go through."""
    from trainer.cloud.experiments import VertexExperiment

    dev = load_config("dev", environ={})
    parent = f"projects/{dev.project_id}/locations/{dev.region}"
    with vertex.vertex_over_the_wire(dev.project_id, dev.region) as fake:
        fake.seed_experiment(parent, dev.vertex.experiment)
        tracker = VertexExperiment(dev, "fmnist-train-twin", environ={})
        tracker.start({"epochs": 2}, resume=False)
        tracker.log_epoch(1, {"loss": 0.5})
        tracker.finish({"test_accuracy": 0.9})
    assert tracker.active  # nothing failed on the way
    assert fake.sent("POST", "/metadataStores/default/contexts")  # the experiment run, created over the wire
