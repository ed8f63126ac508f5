"""The Google Cloud APIs a stack uses, enabled and never disabled on destroy (see infra/teardown.py).

The bootstrap stack enables what planning the main stack needs (Resource Manager for `data.google_project`, IAM,
KMS, Storage for the state bucket, Cloud Billing for the deployer's billing role); the main stack enables everything
its resources call, again, so that each of its resources depends on its API inside its own graph.
"""

from __future__ import annotations

from collections.abc import Iterable

from cdktf_cdktf_provider_google.project_service import ProjectService
from constructs import Construct

from infra.naming import Names
from infra.teardown import TeardownPolicy

BOOTSTRAP_APIS = (
    "cloudbilling.googleapis.com",
    "cloudkms.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "iam.googleapis.com",
    "serviceusage.googleapis.com",
    "storage.googleapis.com",
)
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
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
)
# The lifecycle pipeline's starter and its triggers (infra/components/pipelines.py).
PIPELINE_APIS = (
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
)
REQUIRED_APIS = (*REQUIRED_APIS, *PIPELINE_APIS)


class Apis(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        names: Names,
        teardown: TeardownPolicy,
        services: Iterable[str] = REQUIRED_APIS,
    ):
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
            for api in services
        }

    def __getitem__(self, api: str) -> ProjectService:
        return self.services[api]

    @property
    def all(self) -> list[ProjectService]:
        return list(self.services.values())
