"""The BigQuery feature table (schema from contracts/feature_schema.py) and a Vertex AI Feature Online Store with a
Feature View over it.

Not the legacy Featurestore: it shuts down on 2027-02-17. The table's columns are imported from the trainer's
schema module, never copied, so the Parquet feature table and BigQuery cannot drift apart.

Shape: a feature view serves one row per entity id, so the table holds the served dataset version only, one row per
`image_id` (declared as its primary key); the loader replaces the whole table (WRITE_TRUNCATE) when the served
version changes, and `dataset_version` says which one it holds. The online store has no CMEK in provider 6.50.
"""

from __future__ import annotations

import json

from cdktf_cdktf_provider_google.bigquery_dataset_iam_member import BigqueryDatasetIamMember
from cdktf_cdktf_provider_google.bigquery_table import BigqueryTable
from cdktf_cdktf_provider_google.vertex_ai_feature_online_store import VertexAiFeatureOnlineStore
from cdktf_cdktf_provider_google.vertex_ai_feature_online_store_featureview import VertexAiFeatureOnlineStoreFeatureview
from constructs import Construct

from contracts import feature_schema
from infra.components.apis import Apis
from infra.components.identity import Identity
from infra.components.kms import KeyGrants
from infra.naming import Names
from infra.suppressions import suppress
from infra.teardown import TeardownPolicy

SYNC_CRON = "0 3 * * *"  # the feature view copies the table to the online store nightly


class Features(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        names: Names,
        teardown: TeardownPolicy,
        apis: Apis,
        kms: KeyGrants,
        identity: Identity,
    ):
        super().__init__(scope, id)
        self.dataset = kms.dataset(
            self,
            "dataset",
            dataset_id=names.bigquery_dataset,
            description="per-image Fashion-MNIST features (contracts/feature_schema.py)",
            names=names,
            teardown=teardown,
        )
        self.table = BigqueryTable(
            self,
            "table",
            dataset_id=self.dataset.dataset_id,
            table_id=names.feature_table,
            description=(
                f"feature function {feature_schema.FEATURE_FUNCTION_ID}; one row per image of the served dataset "
                "version (replaced whole on load, WRITE_TRUNCATE)"
            ),
            schema=json.dumps(feature_schema.bigquery_schema()),
            clustering=["split"],
            table_constraints={"primary_key": {"columns": [feature_schema.ENTITY_ID_COLUMN]}},
            encryption_configuration={"kms_key_name": kms.key_id},
            deletion_protection=teardown.bigquery_table_deletion_protection,
            labels=names.labels,
            lifecycle=teardown.lifecycle(),
        )
        if not teardown.bigquery_table_deletion_protection:
            suppress(
                self.table,
                "CKV_GCP_121",
                f"infra.deletion_protection is false for {names.env}: `cdktf destroy` must drop this table "
                "(it is rebuilt from the datasets bucket by `python -m trainer features`).",
            )
        BigqueryDatasetIamMember(
            self,
            "trainer-editor",
            dataset_id=self.dataset.dataset_id,
            role="roles/bigquery.dataEditor",
            member=identity.member("trainer"),
        )
        # The Feature View's sync runs as the Vertex AI service agent and reads the table.
        vertex_reader = BigqueryDatasetIamMember(
            self,
            "vertex-agent-viewer",
            dataset_id=self.dataset.dataset_id,
            role="roles/bigquery.dataViewer",
            member=kms.agent_members["aiplatform"],
            depends_on=[kms.ready["aiplatform"]],
        )
        self.online_store = VertexAiFeatureOnlineStore(
            self,
            "online-store",
            name=names.online_store,
            region=names.region,
            labels=names.labels,
            optimized={},
            force_destroy=teardown.feature_store_force_destroy,
            depends_on=[apis["aiplatform.googleapis.com"]],
        )
        self.feature_view = VertexAiFeatureOnlineStoreFeatureview(
            self,
            "feature-view",
            name=names.feature_view,
            region=names.region,
            feature_online_store=self.online_store.name,
            labels=names.labels,
            big_query_source={
                "uri": names.feature_table_uri,
                "entity_id_columns": [feature_schema.ENTITY_ID_COLUMN],
            },
            sync_config={"cron": SYNC_CRON},
            depends_on=[self.table, vertex_reader],
        )
