"""Every destroy blocker of the google provider, decided in one place per environment.

Why: `cdktf destroy` of dev must remove everything with no manual step, while prod must refuse. Each field is
one blocker; `infra.deletion_protection` in config/<env>.yaml picks the side, and tests assert both sides.
Not covered here (documented in infra/README.md): models deployed on the Vertex AI endpoint by the SDK
(`python -m trainer undeploy-all` first) and KMS key rings, which Google Cloud never deletes.
"""

from __future__ import annotations

from dataclasses import dataclass

from settings import Settings


@dataclass(frozen=True)
class TeardownPolicy:
    protect: bool

    @classmethod
    def for_settings(cls, settings: Settings) -> TeardownPolicy:
        return cls(protect=settings.infra.deletion_protection)

    @property
    def bucket_force_destroy(self) -> bool:
        """Delete buckets with their objects (and versions) on destroy."""
        return not self.protect

    @property
    def cloud_run_deletion_protection(self) -> bool:
        return self.protect

    @property
    def bigquery_delete_contents_on_destroy(self) -> bool:
        return not self.protect

    @property
    def bigquery_table_deletion_protection(self) -> bool:
        return self.protect

    @property
    def feature_store_force_destroy(self) -> bool:
        """Delete the online store together with its feature views."""
        return not self.protect

    @property
    def deletion_protection(self) -> bool:
        """Every provider `deletion_protection` argument (Cloud Run, the table, the starter workflow, ...)."""
        return self.protect

    @property
    def prevent_destroy(self) -> bool:
        """Terraform lifecycle guard on stateful resources (buckets, dataset, table, key): a destroy plan fails."""
        return self.protect

    # Never disable APIs on destroy, in any environment: other tools in the project use them, and disabling
    # (with dependants) can break what this stack does not own.
    disable_apis_on_destroy: bool = False

    def argument(self, name: str) -> bool:
        """This environment's value of a provider deletion argument (infra/provider_facts.DELETION_ARGUMENTS): the
        generated policy CKV2_FMNIST_G6 finds every resource type that has one, a test checks the values."""
        values = {
            "deletion_protection": self.deletion_protection,
            "force_destroy": not self.protect,
            "delete_contents_on_destroy": not self.protect,
            "disable_on_destroy": self.disable_apis_on_destroy,
        }
        if name not in values:
            raise KeyError(f"no teardown decision for deletion argument {name!r}: add it to TeardownPolicy.argument")
        return values[name]

    def lifecycle(self) -> dict:
        return {"prevent_destroy": self.prevent_destroy}
