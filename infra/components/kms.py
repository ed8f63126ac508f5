"""The CMEK key and who may use it.

One rotating key encrypts the buckets, the Artifact Registry repository, the BigQuery dataset and table, the budget's
Pub/Sub topic, the Vertex AI endpoint and the TensorBoard. Not the Feature Online Store: provider 6.50's
`google_vertex_ai_feature_online_store` has no `encryption_spec`, so Google-managed keys encrypt it.

Why two constructs: Google Cloud never deletes a key ring or a key, so re-creating them after `cdktf destroy` gets
409. `CmekKey` lives in the long-lived bootstrap stack (infra/bootstrap.py), which the environment's destroy leaves
alone; `KeyGrants` lives in the environment's stack, grants each service agent encrypt/decrypt on the key only
(resource-level) once the agent exists, and every CMEK resource depends on a wait after its agent's grant.
"""

from __future__ import annotations

from collections.abc import Sequence

from cdktf import ITerraformDependable
from cdktf_cdktf_provider_google.bigquery_dataset import BigqueryDataset
from cdktf_cdktf_provider_google.kms_crypto_key import KmsCryptoKey
from cdktf_cdktf_provider_google.kms_crypto_key_iam_member import KmsCryptoKeyIamMember
from cdktf_cdktf_provider_google.kms_key_ring import KmsKeyRing
from cdktf_cdktf_provider_google.pubsub_topic import PubsubTopic
from cdktf_cdktf_provider_google.pubsub_topic_iam_member import PubsubTopicIamMember
from constructs import Construct

from infra.components.apis import Apis
from infra.components.service_agents import ServiceAgents
from infra.components.waits import propagation_wait
from infra.naming import Names
from infra.suppressions import suppress
from infra.teardown import TeardownPolicy

ROTATION_PERIOD = "7776000s"  # 90 days
# 30 days to undo a destroy by mistake, in every environment: the field cannot change without replacing the key
# (and losing what it encrypted), so it must not follow infra.deletion_protection.
DESTROY_SCHEDULED_DURATION = "2592000s"
ENCRYPTER_DECRYPTER = "roles/cloudkms.cryptoKeyEncrypterDecrypter"


def allow_destroy(key: KmsCryptoKey, names: Names, teardown: TeardownPolicy) -> None:
    """An unprotected environment's keys may be destroyed (CKV_GCP_82 says keep them): noted once, for every key of
    the bootstrap stack."""
    if not teardown.protect:
        suppress(
            key,
            "CKV_GCP_82",
            f"infra.deletion_protection is false for {names.env}: `cdktf destroy {names.bootstrap_stack}` "
            "must schedule this key's versions for destruction (protected environments keep prevent_destroy).",
        )


class CmekKey(Construct):
    """The key ring and key (bootstrap stack)."""

    def __init__(self, scope: Construct, id: str, *, names: Names, teardown: TeardownPolicy, apis: Apis, admin: str):
        super().__init__(scope, id)
        self.key_ring = KmsKeyRing(
            self,
            "key_ring",
            name=names.kms_key_ring,
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
        allow_destroy(self.key, names, teardown)
        # The environment stack grants the service agents on this key: its deployer administers this key only.
        KmsCryptoKeyIamMember(self, "admin", crypto_key_id=self.key.id, role="roles/cloudkms.admin", member=admin)


class KeyGrants(Construct):
    """Encrypt/decrypt on the bootstrap stack's key for each service agent (environment stack)."""

    def __init__(self, scope: Construct, id: str, *, names: Names, apis: Apis, agents: ServiceAgents):
        super().__init__(scope, id)
        self.key_id = names.kms_key_name
        self.agent_members = dict(agents.members)
        self.grants = {
            agent: KmsCryptoKeyIamMember(
                self,
                f"{agent}_agent_encrypter",
                crypto_key_id=self.key_id,
                role=ENCRYPTER_DECRYPTER,
                member=member,
                depends_on=[apis["cloudkms.googleapis.com"], agents.sources[agent]],
            )
            for agent, member in agents.members.items()
        }
        # One wait after every agent's grant: a CMEK resource depends on `ready[agent]`, never on the grant alone,
        # because the provider does not retry the "useToEncrypt denied" of a grant that has not propagated yet.
        wait = propagation_wait(self, "grants-propagated", after=list(self.grants.values()))
        self.ready = dict.fromkeys(self.grants, wait)
        self._apis = apis

    def topic(self, scope: Construct, id: str, *, name: str, names: Names) -> EncryptedTopic:
        """A Pub/Sub topic encrypted with this key, kept in the region, its messages for a week (budget, drift)."""
        return EncryptedTopic(
            scope,
            PubsubTopic(
                scope,
                id,
                name=name,
                kms_key_name=self.key_id,
                labels=names.labels,
                message_storage_policy={"allowed_persistence_regions": [names.region]},
                message_retention_duration="604800s",
                depends_on=[self._apis["pubsub.googleapis.com"], self.ready["pubsub"]],
            ),
        )

    def dataset(
        self, scope: Construct, id: str, *, dataset_id: str, description: str, names: Names, teardown: TeardownPolicy
    ) -> BigqueryDataset:
        """A BigQuery dataset whose tables default to this key, created once BigQuery's agent may use it, dropped
        with its contents where the environment's teardown says so (features, ground truth)."""
        return BigqueryDataset(
            scope,
            id,
            dataset_id=dataset_id,
            location=names.region,
            description=description,
            labels=names.labels,
            default_encryption_configuration={"kms_key_name": self.key_id},
            delete_contents_on_destroy=teardown.bigquery_delete_contents_on_destroy,
            lifecycle=teardown.lifecycle(),
            depends_on=[self._apis["bigquery.googleapis.com"], self.ready["bigquery"]],
        )


class EncryptedTopic:
    """A CMEK topic and who may publish to it: the topic's IAM is declared only through it, beside the topic, in
    the construct that owns the topic (so the resources keep their addresses there)."""

    def __init__(self, scope: Construct, topic: PubsubTopic):
        self._scope, self.topic = scope, topic

    @property
    def id(self) -> str:
        return self.topic.id

    @property
    def name(self) -> str:
        return self.topic.name

    def allow_publisher(
        self, id: str, member: str, *, after: Sequence[ITerraformDependable] = ()
    ) -> PubsubTopicIamMember:
        """`member` may publish to the topic; `after`: what must exist first (the publisher's agent, say)."""
        return PubsubTopicIamMember(
            self._scope,
            id,
            topic=self.topic.name,
            role="roles/pubsub.publisher",
            member=member,
            **({"depends_on": list(after)} if after else {}),
        )
