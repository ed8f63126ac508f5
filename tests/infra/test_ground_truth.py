"""Ground truth on Google Cloud, on the synthesized stacks: the log sink's filter, the BigQuery table and view with
the columns of contracts/feedback.py, CMEK, and the sink's writer limited to its own dataset."""

from __future__ import annotations

import json

import pytest

from contracts import feedback
from infra.naming import Names

ENVS = ("dev", "prod")


def _by_id(synth, env: str, resource_type: str, key: str) -> dict[str, dict]:
    return {r[key]: r for r in synth.resources(env, resource_type).values()}


@pytest.mark.parametrize("env", ENVS)
def test_the_sink_routes_only_the_services_ground_truth_lines_into_its_dataset(synth, env, settings_by_env):
    names = Names.of(settings_by_env[env])
    sink = synth.one(env, "google_logging_project_sink")
    assert sink["filter"] == (
        f'resource.type="cloud_run_revision" AND resource.labels.service_name="{names.cloud_run_service}" AND '
        f'logName="projects/{names.project}/logs/run.googleapis.com%2Fstdout" AND jsonPayload.feedback_event:*'
    )
    assert sink["destination"] == f"bigquery.googleapis.com/projects/{names.project}/datasets/fmnist_ground_truth"
    assert sink["unique_writer_identity"] is True
    assert sink["bigquery_options"] == {"use_partitioned_tables": True}  # one table, no date suffix


@pytest.mark.parametrize("env", ENVS)
def test_the_dataset_is_encrypted_and_only_the_sink_writes_it(synth, env):
    datasets = synth.resources(env, "google_bigquery_dataset")
    (dataset_key,) = [k for k, d in datasets.items() if d["dataset_id"] == feedback.BIGQUERY_DATASET]
    keys = {d["default_encryption_configuration"]["kms_key_name"] for d in datasets.values()}
    assert len(keys) == 1 and keys.pop().endswith("/cryptoKeys/fmnist-cmek")  # the project's key, like the others
    (sink_key,) = synth.resources(env, "google_logging_project_sink")
    grants = [
        (g["role"], g["member"])
        for g in synth.resources(env, "google_bigquery_dataset_iam_member").values()
        if g["dataset_id"] == f"${{google_bigquery_dataset.{dataset_key}.dataset_id}}" or sink_key in g["member"]
    ]
    # the sink's identity, on this dataset only; nobody else is granted on it
    assert grants == [("roles/bigquery.dataEditor", f"${{google_logging_project_sink.{sink_key}.writer_identity}}")]


@pytest.mark.parametrize("env", ENVS)
def test_the_table_and_view_carry_the_contracts_columns(synth, env, settings_by_env):
    names = Names.of(settings_by_env[env])
    tables = _by_id(synth, env, "google_bigquery_table", "table_id")
    table, view = tables[feedback.SINK_TABLE], tables[feedback.TABLE]
    assert json.loads(table["schema"]) == feedback.sink_table_schema()
    payload = json.loads(table["schema"])[1]["fields"]
    assert [(f["name"], f["type"]) for f in payload] == [
        ("feedback_event", "STRING"),
        ("request_id", "STRING"),
        ("image_index", "FLOAT"),  # a structured log line's numbers are doubles
        ("model_version", "STRING"),
        ("predicted_class", "FLOAT"),
        ("confidence", "FLOAT"),
        ("label", "FLOAT"),
        ("poster", "STRING"),
        ("logged_at", "STRING"),
    ]
    assert table["time_partitioning"] == {"type": "DAY", "field": "timestamp"}
    assert table["encryption_configuration"]["kms_key_name"]
    source = f"{names.project}.{feedback.BIGQUERY_DATASET}.{feedback.SINK_TABLE}"
    assert view["view"] == {"query": feedback.view_select(source), "use_legacy_sql": False}
    assert "CAST(jsonPayload.label AS INT64) AS label" in view["view"]["query"]
