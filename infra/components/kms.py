"""One key ring and one rotating key that encrypts the buckets, Artifact Registry, BigQuery, Pub/Sub and Vertex AI.

Each Google-managed service agent gets encrypt/decrypt on this key only (resource-level), before the resource
that uses it is created (constructs depend on `grants[agent]`).
"""

from __future__ import annotations

from cdktf_cdktf_provider_google.data_google_bigquery_default_service_account import (
    DataGoogleBigqueryDefaultServiceAccount,
)
from cdktf_cdktf_provider_google.data_google_project import DataGoogleProject
from cdktf_cdktf_provider_google.data_google_storage_project_service_account import (
    DataGoogleStorageProjectServiceAccount,
)
from cdktf_cdktf_provider_google.kms_crypto_key import KmsCryptoKey
from cdktf_cdktf_provider_google.kms_crypto_key_iam_member import KmsCryptoKeyIamMember
from cdktf_cdktf_provider_google.kms_key_ring import KmsKeyRing
from constructs import Construct

from infra.components.apis import Apis
from infra.naming import Names
from infra.suppressions import suppress
from infra.teardown import TeardownPolicy

ROTATION_PERIOD = "7776000s"  # 90 days
# 30 days to undo a destroy by mistake, in every environment: the field cannot change without replacing the key
# (and losing what it encrypted), so it must not follow infra.deletion_protection.
DESTROY_SCHEDULED_DURATION = "2592000s"
ENCRYPTER_DECRYPTER = "roles/cloudkms.cryptoKeyEncrypterDecrypter"


class Kms(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        names: Names,
        teardown: TeardownPolicy,
        apis: Apis,
        project: DataGoogleProject,
    ):
        super().__init__(scope, id)
        self.key_ring = KmsKeyRing(
            self,
            "key_ring",
            name=names.settings.infra.kms_key_ring,
            location=names.region,
            depends_on=[apis["cloudkms.googleapis.com"]],
        )
        self.key = KmsCryptoKey(
            self,
            "key",
            name=names.kms_key_id,
            key_ring=self.key_ring.id,
            purpose="ENCRYPT_DECRYPT",
            rotation_period=ROTATION_PERIOD,
            labels=names.labels,
            lifecycle=teardown.lifecycle(),
            destroy_scheduled_duration=DESTROY_SCHEDULED_DURATION,
        )
        if not teardown.protect:
            suppress(
                self.key,
                "CKV_GCP_82",
                f"infra.deletion_protection is false for {names.env}: `cdktf destroy` must remove this key's "
                "versions with the rest (protected environments keep prevent_destroy).",
            )
        storage_agent = DataGoogleStorageProjectServiceAccount(
            self, "storage_agent", depends_on=[apis["storage.googleapis.com"]]
        )
        bigquery_agent = DataGoogleBigqueryDefaultServiceAccount(
            self, "bigquery_agent", depends_on=[apis["bigquery.googleapis.com"]]
        )
        number = project.number
        agents = {
            "storage": (f"serviceAccount:{storage_agent.email_address}", "storage.googleapis.com"),
            "bigquery": (f"serviceAccount:{bigquery_agent.email}", "bigquery.googleapis.com"),
            "artifactregistry": (
                f"serviceAccount:service-{number}@gcp-sa-artifactregistry.iam.gserviceaccount.com",
                "artifactregistry.googleapis.com",
            ),
            "pubsub": (
                f"serviceAccount:service-{number}@gcp-sa-pubsub.iam.gserviceaccount.com",
                "pubsub.googleapis.com",
            ),
            "aiplatform": (
                f"serviceAccount:service-{number}@gcp-sa-aiplatform.iam.gserviceaccount.com",
                "aiplatform.googleapis.com",
            ),
        }
        self.agent_members = {agent: member for agent, (member, _) in agents.items()}
        self.grants = {
            agent: KmsCryptoKeyIamMember(
                self,
                f"{agent}_agent_encrypter",
                crypto_key_id=self.key.id,
                role=ENCRYPTER_DECRYPTER,
                member=member,
                depends_on=[apis[api]],
            )
            for agent, (member, api) in agents.items()
        }
