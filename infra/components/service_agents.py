"""The Google-managed service agents that use the CMEK key, created in code before anything grants them a role.

Why: Google creates the Artifact Registry, Pub/Sub and Vertex AI agents lazily, so a KMS grant naming
`service-<number>@gcp-sa-*.iam.gserviceaccount.com` on a fresh project fails with "service account does not
exist". `google_project_service_identity` (google-beta provider) creates each one and returns its email; the
Storage and BigQuery agents are created by the data sources that read them.

Why a plain TerraformResource and not cdktf-cdktf-provider-google-beta: importing any submodule of that package
loads its whole jsii assembly (33 MB, 3.6 s CPU here), which would nearly double the synth for one resource type.
bench/bench_infra.py checks that both ways synthesize the same resources and provider configuration (the plain
declaration also writes the full source address, `hashicorp/google-beta`).
"""

from __future__ import annotations

from cdktf import TerraformProvider, TerraformProviderGeneratorMetadata, TerraformResource
from cdktf_cdktf_provider_google.data_google_bigquery_default_service_account import (
    DataGoogleBigqueryDefaultServiceAccount,
)
from cdktf_cdktf_provider_google.data_google_storage_project_service_account import (
    DataGoogleStorageProjectServiceAccount,
)
from constructs import Construct

from infra.components.apis import Apis
from infra.components.providers import GOOGLE_BETA
from infra.naming import Names

# agent -> the API whose service agent it is
IDENTITY_AGENTS = {
    "artifactregistry": "artifactregistry.googleapis.com",
    "pubsub": "pubsub.googleapis.com",
    "aiplatform": "aiplatform.googleapis.com",
    # the pipeline starter function's CMEK (infra/components/starter_function.py)
    "cloudfunctions": "cloudfunctions.googleapis.com",
    "run": "run.googleapis.com",
}
DATA_SOURCE_AGENTS = {"storage": "storage.googleapis.com", "bigquery": "bigquery.googleapis.com"}
AGENT_APIS = {**IDENTITY_AGENTS, **DATA_SOURCE_AGENTS}


def service_identity(
    scope: Construct, id: str, *, names: Names, apis: Apis, api: str, beta: TerraformProvider
) -> TerraformResource:
    """A `google_project_service_identity`: creates the service agent of `api` once that API is enabled."""
    identity = TerraformResource(
        scope,
        id,
        terraform_resource_type="google_project_service_identity",
        terraform_generator_metadata=TerraformProviderGeneratorMetadata(provider_name=GOOGLE_BETA),
        provider=beta,
        depends_on=[apis[api]],
    )
    identity.add_override("project", names.project)
    identity.add_override("service", api)
    return identity


def identity_member(identity: TerraformResource) -> str:
    return f"serviceAccount:{identity.get_string_attribute('email')}"


class ServiceAgents(Construct):
    def __init__(self, scope: Construct, id: str, *, names: Names, apis: Apis, beta: TerraformProvider):
        super().__init__(scope, id)
        self.sources: dict[str, TerraformResource] = {}
        self.members: dict[str, str] = {}
        for agent, api in IDENTITY_AGENTS.items():
            self.sources[agent] = service_identity(self, agent, names=names, apis=apis, api=api, beta=beta)
            self.members[agent] = identity_member(self.sources[agent])
        storage = DataGoogleStorageProjectServiceAccount(
            self, "storage", depends_on=[apis[DATA_SOURCE_AGENTS["storage"]]]
        )
        bigquery = DataGoogleBigqueryDefaultServiceAccount(
            self, "bigquery", depends_on=[apis[DATA_SOURCE_AGENTS["bigquery"]]]
        )
        self.sources.update(storage=storage, bigquery=bigquery)
        self.members.update(
            storage=f"serviceAccount:{storage.email_address}", bigquery=f"serviceAccount:{bigquery.email}"
        )
