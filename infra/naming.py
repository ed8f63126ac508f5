"""Every name the stacks declare, derived from one environment's settings in one place.

Why one place: the trainer and the service find these resources by name (buckets, endpoint id, image paths),
so a name must not drift between constructs; tests read the same functions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from trainer import feature_schema
from trainer.config import Settings

# role -> account id suffix; the id is `<bucket_prefix>-<suffix>` (trainer.config's vertex defaults agree)
SERVICE_ACCOUNT_SUFFIXES = {
    "trainer": "trainer",      # Vertex AI custom jobs
    "service": "service",      # the Cloud Run prediction service
    "deployer": "deployer",    # Cloud Build on deploy pushes: builds, pushes, `cdktf deploy`
    "checks": "ci-checks",     # Cloud Build on pull requests: tests, synth, policy scan (untrusted code)
}
SERVICE_ACCOUNT_ID_MAX = 30
BUCKET_KINDS = ("dev", "datasets", "models")
IMAGE_NAMES = ("trainer", "service")


@dataclass(frozen=True)
class Names:
    settings: Settings

    @property
    def env(self) -> str:
        return self.settings.env

    @property
    def project(self) -> str:
        return self.settings.project_id

    @property
    def region(self) -> str:
        return self.settings.region

    @property
    def labels(self) -> dict[str, str]:
        return {"app": "fmnist-mlops", "env": self.env, "managed_by": "cdktf"}

    def bucket(self, kind: str) -> str:
        """`<bucket_prefix>-<kind>`: the same names trainer.config resolves for the gcp target."""
        return f"{self.settings.bucket_prefix}-{kind}"

    @property
    def access_log_bucket(self) -> str:
        return self.bucket("access-logs")

    def service_account_id(self, role: str) -> str:
        account_id = f"{self.settings.bucket_prefix}-{SERVICE_ACCOUNT_SUFFIXES[role]}"
        if len(account_id) > SERVICE_ACCOUNT_ID_MAX:
            raise ValueError(f"service account id '{account_id}' is longer than {SERVICE_ACCOUNT_ID_MAX} characters: "
                             f"shorten bucket_prefix in config/{self.env}.yaml")
        return account_id

    def service_account_email(self, role: str) -> str:
        return f"{self.service_account_id(role)}@{self.project}.iam.gserviceaccount.com"

    @property
    def artifact_repository(self) -> str:
        """`vertex.artifact_repository`, else `<bucket_prefix>-images` (the trainer derives the same default)."""
        return self.settings.vertex.artifact_repository or f"{self.settings.bucket_prefix}-images"

    @property
    def registry_host(self) -> str:
        return f"{self.region}-docker.pkg.dev"

    def image_repository(self, image: str) -> str:
        """`<region>-docker.pkg.dev/<project>/<repository>/<image>` (tag or digest appended by the caller)."""
        return f"{self.registry_host}/{self.project}/{self.artifact_repository}/{image}"

    @property
    def model_uri(self) -> str:
        """The champion in the models bucket, in the model-reference form of docs/CONTRACTS.md."""
        return f"gs://{self.bucket('models')}@champion"

    kms_key: ClassVar[str] = "fmnist-cmek"
    bigquery_dataset: ClassVar[str] = "fmnist_features"
    feature_table: ClassVar[str] = feature_schema.TABLE_NAME
    online_store: ClassVar[str] = "fmnist_features"
    feature_view: ClassVar[str] = "image_features"
    cloud_run_service: ClassVar[str] = "fmnist-predict"
    budget_topic: ClassVar[str] = "fmnist-budget-alerts"

    @property
    def endpoint_id(self) -> str:
        return str(self.settings.infra.endpoint_id)

    @property
    def display_name(self) -> str:
        return f"fmnist-{self.env}"
