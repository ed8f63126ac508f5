"""Ground truth on Google Cloud: the service's sampled prediction rows and every label row, from Cloud Run's stdout
through a Cloud Logging sink into BigQuery, and the flat view Vertex AI Model Monitoring v2 reads.

Why a log sink rather than the service writing to BigQuery: the service already writes JSON lines (no client
library, no credentials, no I/O on the request path), and Cloud Logging streams them into BigQuery in small batches.
The columns come from contracts/feedback.py, as the local sqlite table's do. The dataset is encrypted with the
project's key like the other datasets; the sink writes as its own writer identity, which may edit this dataset only
(never the project's other data). Model Monitoring v2 reads the view: prediction_fields predicted_class,
ground_truth_fields label, timestamp logged_at.
"""

from __future__ import annotations

import json

from cdktf_cdktf_provider_google.bigquery_dataset_iam_member import BigqueryDatasetIamMember
from cdktf_cdktf_provider_google.bigquery_table import BigqueryTable
from cdktf_cdktf_provider_google.logging_project_sink import LoggingProjectSink
from constructs import Construct

from contracts import feedback
from infra.components.apis import Apis
from infra.components.kms import KeyGrants
from infra.naming import Names
from infra.suppressions import suppress
from infra.teardown import TeardownPolicy

SINK_NAME = "fmnist-ground-truth"


class GroundTruth(Construct):
    def __init__(
        self, scope: Construct, id: str, *, names: Names, teardown: TeardownPolicy, apis: Apis, kms: KeyGrants
    ):
        super().__init__(scope, id)
        self.dataset = kms.dataset(
            self,
            "dataset",
            dataset_id=feedback.BIGQUERY_DATASET,
            description="ground truth: sampled predictions and posted labels (contracts/feedback.py)",
            names=names,
            teardown=teardown,
        )
        self.table = BigqueryTable(
            self,
            "sink-table",
            dataset_id=self.dataset.dataset_id,
            table_id=feedback.SINK_TABLE,
            description="Cloud Run stdout lines the ground-truth sink routes here (Cloud Logging adds the LogEntry "
            "columns it writes); read through the view",
            schema=json.dumps(feedback.sink_table_schema()),
            time_partitioning={"type": "DAY", "field": "timestamp"},  # as the sink's use_partitioned_tables makes it
            encryption_configuration={"kms_key_name": kms.key_id},
            deletion_protection=teardown.bigquery_table_deletion_protection,
            labels=names.labels,
            lifecycle=teardown.lifecycle(),
        )
        source = f"{names.project}.{feedback.BIGQUERY_DATASET}.{feedback.SINK_TABLE}"
        self.view = BigqueryTable(
            self,
            "view",
            dataset_id=self.dataset.dataset_id,
            table_id=feedback.TABLE,
            description="one typed row per ground-truth log line: what Vertex AI Model Monitoring v2 reads",
            view={"query": feedback.view_select(source), "use_legacy_sql": False},
            deletion_protection=teardown.bigquery_table_deletion_protection,
            labels=names.labels,
            lifecycle=teardown.lifecycle(),
            depends_on=[self.table],
        )
        suppress(
            self.view,
            "CKV_GCP_80",
            "A view stores no data (its rows are the sink table's, which is encrypted with the project's key); "
            "BigQuery rejects an encryption configuration on a view.",
        )
        if not teardown.bigquery_table_deletion_protection:
            for table in (self.table, self.view):
                suppress(
                    table,
                    "CKV_GCP_121",
                    f"infra.deletion_protection is false for {names.env}: `cdktf destroy` must drop this table "
                    "(ground-truth rows are re-collected from the service).",
                )
        self.sink = LoggingProjectSink(
            self,
            "sink",
            name=SINK_NAME,
            project=names.project,
            destination=f"bigquery.googleapis.com/projects/{names.project}/datasets/{feedback.BIGQUERY_DATASET}",
            filter=feedback.sink_filter(names.project, names.cloud_run_service),
            unique_writer_identity=True,
            bigquery_options={"use_partitioned_tables": True},
            depends_on=[apis["logging.googleapis.com"], self.table],
        )
        # The sink's own identity may write rows into this dataset and nothing else.
        BigqueryDatasetIamMember(
            self,
            "sink-writer",
            dataset_id=self.dataset.dataset_id,
            role="roles/bigquery.dataEditor",
            member=self.sink.writer_identity,
        )
