"""Ground truth's resources (infra/components/ground_truth.py) on the synthesized environment stacks, pinned exactly
where test_ground_truth.py checks only part: every Terraform address, what each waits for (the sink must not start
before its table exists, nor the view), the dataset's and tables' destroy guards, labels, descriptions and key, the
policy scan's accepted checks with their reasons, and the sink's whole body."""

from __future__ import annotations

import json

import pytest

from contracts import feedback
from infra.naming import Names
from tests.infra.conftest import ENVIRONMENTS

ADDRESSES = {
    "ground_truth/dataset": "google_bigquery_dataset",
    "ground_truth/sink-table": "google_bigquery_table",
    "ground_truth/view": "google_bigquery_table",
    "ground_truth/sink": "google_logging_project_sink",
    "ground_truth/sink-writer": "google_bigquery_dataset_iam_member",
}
VIEW_NO_KEY = (
    "A view stores no data (its rows are the sink table's, which is encrypted with the project's key); "
    "BigQuery rejects an encryption configuration on a view."
)


def _destroyable(env: str) -> str:
    return (
        f"infra.deletion_protection is false for {env}: `cdktf destroy` must drop this table "
        "(ground-truth rows are re-collected from the service)."
    )


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_ground_truth_s_resources_keep_their_addresses_waits_and_bodies(synth, env, settings_by_env):
    settings = settings_by_env[env]
    names, protect = Names.of(settings), settings.infra.deletion_protection
    found = {p: kind for p, (kind, _, _) in synth.by_path(env).items() if p.startswith("ground_truth/")}
    assert found == ADDRESSES
    assert synth.waits(env, "ground_truth/") == {
        "ground_truth/dataset": ["apis/bigquery", "kms/grants-propagated"],
        "ground_truth/view": ["ground_truth/sink-table"],
        "ground_truth/sink": ["apis/logging", "ground_truth/sink-table"],
    }
    key = f"projects/{names.project}/locations/{names.region}/keyRings/fmnist/cryptoKeys/fmnist-cmek"
    dataset = synth.ref(env, "ground_truth/dataset", "dataset_id")
    body = {p: {k: v for k, v in synth.body(env, p).items() if k not in ("//", "depends_on")} for p in ADDRESSES}
    assert body["ground_truth/dataset"]["dataset_id"] == "fmnist_ground_truth"
    assert body["ground_truth/dataset"]["description"] == (
        "ground truth: sampled predictions and posted labels (contracts/feedback.py)"
    )
    assert body["ground_truth/dataset"]["default_encryption_configuration"] == {"kms_key_name": key}
    table = body["ground_truth/sink-table"]
    assert json.loads(table.pop("schema")) == feedback.sink_table_schema()
    assert table == {
        "dataset_id": dataset,
        "table_id": "run_googleapis_com_stdout",
        "description": "Cloud Run stdout lines the ground-truth sink routes here (Cloud Logging adds the LogEntry "
        "columns it writes); read through the view",
        "time_partitioning": {"type": "DAY", "field": "timestamp"},
        "encryption_configuration": {"kms_key_name": key},
        "deletion_protection": protect,
        "labels": names.labels,
        "lifecycle": {"prevent_destroy": protect},
    }
    view = body["ground_truth/view"]
    assert view == {
        "dataset_id": dataset,
        "table_id": "feedback_rows",
        "description": "one typed row per ground-truth log line: what Vertex AI Model Monitoring v2 reads",
        "view": {
            "query": feedback.view_select(f"{names.project}.fmnist_ground_truth.run_googleapis_com_stdout"),
            "use_legacy_sql": False,
        },
        "deletion_protection": protect,
        "labels": names.labels,
        "lifecycle": {"prevent_destroy": protect},
    }
    assert body["ground_truth/sink"] == {
        "name": "fmnist-ground-truth",
        "project": names.project,
        "destination": f"bigquery.googleapis.com/projects/{names.project}/datasets/fmnist_ground_truth",
        "filter": feedback.sink_filter(names.project, names.cloud_run_service),
        "unique_writer_identity": True,
        "bigquery_options": {"use_partitioned_tables": True},
    }
    assert body["ground_truth/sink-writer"] == {
        "dataset_id": dataset,
        "role": "roles/bigquery.dataEditor",
        "member": synth.ref(env, "ground_truth/sink", "writer_identity"),
    }
    skips = {p: synth.body(env, p)["//"].get("checkov_skip") for p in ADDRESSES}
    destroyable = {} if protect else {"CKV_GCP_121": _destroyable(env)}
    assert skips == {
        "ground_truth/dataset": None,
        "ground_truth/sink-table": destroyable or None,
        "ground_truth/view": {**destroyable, "CKV_GCP_80": VIEW_NO_KEY},
        "ground_truth/sink": None,
        "ground_truth/sink-writer": None,
    }
    assert protect is (env == "prod")
