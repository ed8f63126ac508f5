"""Feeding the Feature Online Store: the BigQuery load job and the feature view sync, built offline and bound to the
installed SDKs (google-cloud-bigquery, google-cloud-aiplatform). The load and the sync over the wire, to the twin's
BigQuery and Vertex AI, are in tests/twin/test_over_the_wire.py (`local-bigquery` on PyPI needs Python >= 3.13)."""

import inspect
import io
import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from google.cloud import aiplatform_v1, bigquery

import storage
from contracts import feature_schema
from settings import load_config
from trainer.cloud.feed_feature_store import build_requests, load_job_config, send, sync_request
from trainer.errors import CommandError

VERSION = "v-0123456789ab"


@pytest.fixture
def dev():
    return load_config("dev", environ={})


def test_the_load_replaces_the_table_from_the_versions_parquet_with_the_one_schema(dev):
    request = build_requests(dev, VERSION)
    assert request.source_uri == f"gs://fmnist-mlops-dev-datasets/fashion-mnist/versions/{VERSION}/features.parquet"
    assert request.destination == "fmnist-mlops-dev.fmnist_features.image_features"
    assert request.destination == dev.names.feature_table_uri.removeprefix("bq://")  # the table the feature view reads
    config = load_job_config(request, bigquery).to_api_repr()["load"]
    assert config["sourceFormat"] == "PARQUET"
    assert config["writeDisposition"] == "WRITE_TRUNCATE"  # one row per image id of the current version
    assert [f["name"] for f in config["schema"]["fields"]] == [c.name for c in feature_schema.COLUMNS]
    assert {f["type"] for f in config["schema"]["fields"]} == {"STRING", "INT64", "FLOAT64"}
    # every field as the contract declares it, mode included: a dropped mode loads as NULLABLE, and the feature
    # view's one row per entity id then rests on nothing
    assert config["schema"]["fields"] == feature_schema.bigquery_schema()
    assert {f["mode"] for f in config["schema"]["fields"]} == {"REQUIRED"}
    assert config["destinationEncryptionConfiguration"] == {"kmsKeyName": dev.names.kms_key_name}
    assert request.job_config["labels"]["dataset_version"] == VERSION
    labels = {"app": "fmnist-mlops", "env": "dev", "dataset_version": VERSION}
    assert load_job_config(request, bigquery).labels == labels  # as sent: cost reports and the version loaded
    assert (request.project, request.location) == ("fmnist-mlops-dev", "europe-west4")  # the client's project


def test_the_requests_bind_to_the_installed_sdks(dev):
    request = build_requests(dev, VERSION)
    inspect.signature(bigquery.Client.load_table_from_uri).bind(
        None, request.source_uri, request.destination, job_config=load_job_config(request, bigquery)
    )
    sync = sync_request(request, aiplatform_v1)
    assert sync.feature_view == (
        "projects/fmnist-mlops-dev/locations/europe-west4/featureOnlineStores/fmnist_features"
        "/featureViews/image_features"
    )
    inspect.signature(aiplatform_v1.FeatureOnlineStoreAdminServiceClient.sync_feature_view).bind(None, request=sync)
    assert request.api_endpoint == "europe-west4-aiplatform.googleapis.com"


def test_the_parquet_the_features_step_writes_matches_the_load_schema(world, dev):
    from trainer.data.features import run as features

    class Args:
        version = None

    features(Args, world.settings)
    from trainer.data.dataset import version_uri

    data = storage.read_bytes(storage.join(version_uri(world.settings, world.dataset_version), "features.parquet"))
    table = pq.read_table(io.BytesIO(data))
    schema = build_requests(dev, world.dataset_version).job_config["schema"]
    arrow_to_bigquery = {"string": "STRING", "int64": "INT64", "double": "FLOAT64"}
    assert [(f.name, arrow_to_bigquery[str(f.type)]) for f in table.schema] == [(f["name"], f["type"]) for f in schema]
    ids = table.column("image_id").to_pylist()
    assert len(ids) == len(set(ids))  # one row per entity id: what the feature view requires
    assert set(table.column("dataset_version").to_pylist()) == {world.dataset_version}


def test_a_local_dataset_cannot_be_loaded_and_the_message_says_why(settings):
    with pytest.raises(CommandError, match="BigQuery loads from gs:// only"):
        build_requests(settings, VERSION)


def test_dry_run_prints_the_requests_offline():
    result = subprocess.run(
        [sys.executable, "-m", "trainer", "--env", "dev", "feed-feature-store", "--version", VERSION, "--dry-run"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["job_config"]["write_disposition"] == "WRITE_TRUNCATE"


@pytest.mark.gcp
def test_the_load_and_sync_run_against_the_dev_project(dev):
    from trainer.data.dataset import latest_version

    rows, sync = send(build_requests(dev, latest_version(dev)))
    assert rows > 0 and sync
