"""The Google Cloud APIs the stack uses, enabled and never disabled on destroy (see infra/teardown.py)."""

from __future__ import annotations

from cdktf_cdktf_provider_google.project_service import ProjectService
from constructs import Construct

from infra.naming import Names
from infra.teardown import TeardownPolicy

REQUIRED_APIS = (
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "billingbudgets.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudkms.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
)


class Apis(Construct):
    def __init__(self, scope: Construct, id: str, *, names: Names, teardown: TeardownPolicy):
        super().__init__(scope, id)
        self.services = {
            api: ProjectService(
                self,
                api.split(".")[0],
                project=names.project,
                service=api,
                disable_on_destroy=teardown.disable_apis_on_destroy,
                disable_dependent_services=False,
            )
            for api in REQUIRED_APIS
        }

    def __getitem__(self, api: str) -> ProjectService:
        return self.services[api]

    @property
    def all(self) -> list[ProjectService]:
        return list(self.services.values())
