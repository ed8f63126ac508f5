"""`trainer feed-feature-store` as a user runs it (`python -m trainer --env dev feed-feature-store`), in-process:
the features on fake-gcs-server, the real google-cloud-bigquery and aiplatform_v1 clients over the wire to the
twin's BigQuery and Vertex AI, the line it prints and the dry run's document."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import storage
from contracts import feature_schema
from trainer import cli
from trainer.cloud import endpoints
from twin import bigquery, metadata, vertex

VERSION = "v-0123456789ab"
ARROW = {"STRING": pa.string(), "INT64": pa.int64(), "FLOAT64": pa.float64()}


@pytest.fixture
def dev(gcs_settings, monkeypatch):
    """The dev config the CLI loads: its buckets on fake-gcs-server (the prefix through the environment)."""
    monkeypatch.setenv("FMNIST_BUCKET_PREFIX", gcs_settings.bucket_prefix)
    return gcs_settings


def write_features(settings, version: str, rows: int) -> str:
    from trainer.data.dataset import version_uri

    columns = {
        c["name"]: pa.array([f"x{i}" if c["type"] == "STRING" else i for i in range(rows)], ARROW[c["type"]])
        for c in feature_schema.bigquery_schema()
    }
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    uri = storage.join(version_uri(settings, version), "features.parquet")
    storage.write_bytes(uri, buffer.getvalue())
    return uri


@pytest.fixture
def twin(dev, tmp_path, monkeypatch):
    """The twin's BigQuery (the feature table seeded, as infra/ declares it) and Vertex AI (the feature view), and
    credentials from its metadata server."""
    names = dev.names
    with (
        # credentials of another project (a CI's key, a person's default project): the jobs still go to dev's
        metadata.serve("fmnist-ci-elsewhere", "pipelines@x.iam.gserviceaccount.com") as meta,
        bigquery.serve() as bq,
        vertex.serve() as fake,
    ):
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(meta.service_account_file(tmp_path / "sa.json")))
        monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", bq.endpoint)
        monkeypatch.setenv(endpoints.VERTEX_AI, fake.endpoint)
        bq.seed_table(f"{names.project}.{names.bigquery_dataset}.{names.feature_table}")
        fake.seed(names.feature_view_name)
        yield bq, fake


def test_the_command_loads_the_latest_version_and_prints_what_it_did(dev, twin, capsys):
    """Without --version the command loads LATEST's features; the printed line names rows, version, table, sync."""
    from trainer.data.dataset import dataset_root

    bq, fake = twin
    storage.write_text(storage.join(dataset_root(dev), "LATEST"), VERSION + "\n")
    source = write_features(dev, VERSION, rows=1234)
    assert cli.main(["--env", "dev", "feed-feature-store"]) == 0
    names = dev.names
    table = f"{names.project}.{names.bigquery_dataset}.{names.feature_table}"
    sync = fake.only("POST", ":sync")
    assert capsys.readouterr().out == (
        f"loaded 1,234 rows of {VERSION} into {table}; "
        f"feature view sync {names.feature_view_name}/featureViewSyncs/1 started\n"
    )
    assert int(bq.tables[table]["numRows"]) == 1234
    (load,) = bq.loads()
    assert load["sourceUris"] == [source]
    assert load["destinationTable"] == {
        "projectId": names.project,
        "datasetId": names.bigquery_dataset,
        "tableId": names.feature_table,
    }
    assert load["sourceFormat"] == "PARQUET" and load["writeDisposition"] == "WRITE_TRUNCATE"
    assert load["schema"]["fields"] == feature_schema.bigquery_schema()
    assert load["destinationEncryptionConfiguration"] == {"kmsKeyName": names.kms_key_name}
    (job,) = [r for r in bq.requests if r.method == "POST"]
    assert job.path == f"projects/{dev.project_id}/jobs"  # the client's project
    # on the job: cost reports and which version the table holds
    assert job.body["configuration"]["labels"] == {"app": "fmnist-mlops", "env": "dev", "dataset_version": VERSION}
    assert job.body["jobReference"]["location"] == dev.region  # the client's location: where the dataset lives
    assert sync.path == names.feature_view_name and sync.body == {}


def test_the_dry_run_prints_every_request_and_sends_nothing(dev, twin, capsys):
    bq, fake = twin
    assert cli.main(["--env", "dev", "feed-feature-store", "--version", VERSION, "--dry-run"]) == 0
    names = dev.names
    printed = capsys.readouterr().out
    assert printed == json.dumps(json.loads(printed), indent=2) + "\n"  # indented for people to read
    assert json.loads(printed) == {
        "project": dev.project_id,
        "location": dev.region,
        "source_uri": f"gs://{dev.names.bucket('datasets')}/fashion-mnist/versions/{VERSION}/features.parquet",
        "destination": f"{names.project}.{names.bigquery_dataset}.{names.feature_table}",
        "job_config": {
            "source_format": "PARQUET",
            "write_disposition": "WRITE_TRUNCATE",
            "schema": feature_schema.bigquery_schema(),
            "destination_encryption_configuration": {"kmsKeyName": names.kms_key_name},
            "labels": {"app": "fmnist-mlops", "env": "dev", "dataset_version": VERSION},
        },
        "sync_feature_view": {"feature_view": names.feature_view_name},
        "api_endpoint": names.aiplatform_endpoint,
    }
    assert bq.requests == [] and fake.requests == []


def test_without_an_ingested_dataset_the_command_says_to_ingest_first(dev, twin, capsys):
    bq, _ = twin
    assert cli.main(["--env", "dev", "feed-feature-store"]) != 0
    assert "no dataset ingested yet; run `python -m trainer ingest` first" in capsys.readouterr().err
    assert bq.requests == []


def test_a_failed_load_is_an_error_and_the_feature_view_is_not_synced(dev, twin):
    """The sync copies the table to the online store: after a failed load it would serve the old rows as new."""
    from google.api_core import exceptions

    bq, fake = twin
    from trainer.cloud.feed_feature_store import build_requests, send

    # no features.parquet for this version: BigQuery fails the job with 'Not found: URI'
    with pytest.raises(exceptions.GoogleAPICallError, match="Not found: URI"):
        send(build_requests(dev, VERSION))
    assert fake.sent("POST", ":sync") == []


def test_an_empty_feature_table_is_reported_as_zero_rows_loaded(dev, twin):
    """BigQuery reports outputRows 0 for an empty file: the command must say 0, not a row that was never loaded."""
    from trainer.cloud.feed_feature_store import build_requests, send

    write_features(dev, VERSION, rows=0)
    rows, sync = send(build_requests(dev, VERSION))
    assert rows == 0 and sync == f"{dev.names.feature_view_name}/featureViewSyncs/1"


def test_on_google_cloud_the_sync_goes_to_the_regional_endpoint(dev, twin, monkeypatch):
    """Without the emulator the Feature Online Store admin client is built for `<region>-aiplatform.googleapis.com`
    (the global endpoint has no regional feature store). The load still goes over the wire to the twin's BigQuery;
    the admin client is recorded, not reached (Google's endpoint is not reachable here)."""
    from types import SimpleNamespace

    from google.cloud import aiplatform_v1

    from trainer.cloud.feed_feature_store import build_requests, send

    write_features(dev, VERSION, rows=3)
    monkeypatch.delenv(endpoints.VERTEX_AI)
    built: list[dict] = []

    class Admin:
        def __init__(self, **kwargs):
            built.append(kwargs)

        def sync_feature_view(self, request):
            return SimpleNamespace(feature_view_sync=f"{request.feature_view}/featureViewSyncs/9")

    sdk = SimpleNamespace(
        FeatureOnlineStoreAdminServiceClient=Admin, SyncFeatureViewRequest=aiplatform_v1.SyncFeatureViewRequest
    )
    rows, sync = send(build_requests(dev, VERSION), aiplatform_v1=sdk)
    assert rows == 3 and sync == f"{dev.names.feature_view_name}/featureViewSyncs/9"
    assert built == [{"client_options": {"api_endpoint": "europe-west4-aiplatform.googleapis.com"}}]
