"""The providers both stacks declare, configured in one place.

The default google provider names no quota project: with `user_project_override` every request would bill the
fresh project's quota, whose APIs are off until the stack enables them, and plan would fail. Only the `billing`
alias sets it, for the budget alone (the Billing Budget API needs a quota project with user credentials).
"""

from __future__ import annotations

from cdktf import TerraformProvider, TerraformProviderGeneratorMetadata, TerraformStack
from cdktf_cdktf_provider_docker.provider import DockerProvider, DockerProviderRegistryAuth
from cdktf_cdktf_provider_google.provider import GoogleProvider
from constructs import Construct

from infra.naming import Names

GOOGLE_PROVIDER_VERSION = "6.50.0"
GOOGLE_BETA = "google-beta"
BILLING_PROVIDER_ALIAS = "billing"
# The docker provider reads the registry password from DOCKER_REGISTRY_PASS at deploy time (an access token from
# `gcloud auth print-access-token` or the metadata server): never a data source, so no token lands in state.
REGISTRY_USER = "oauth2accesstoken"


def google_provider(stack: TerraformStack, names: Names) -> GoogleProvider:
    provider = GoogleProvider(stack, "google", project=names.project, region=names.region, default_labels=names.labels)
    # cdktf writes the bare source "google"; OpenTofu and Terraform lock files need the full address.
    stack.add_override("terraform.required_providers.google.source", "hashicorp/google")
    stack.add_override("terraform.required_providers.google.version", GOOGLE_PROVIDER_VERSION)
    return provider


def billing_provider(stack: TerraformStack, names: Names) -> GoogleProvider:
    """The alias for billing resources only (a policy in infra/graph_policies.py keeps it that way)."""
    return GoogleProvider(
        stack,
        "google-billing",
        alias=BILLING_PROVIDER_ALIAS,
        project=names.project,
        region=names.region,
        user_project_override=True,
        billing_project=names.project,
    )


def google_beta_provider(scope: Construct, names: Names) -> TerraformProvider:
    """The google-beta provider, for `google_project_service_identity` only (see service_agents.py for why it is
    declared without the cdktf-cdktf-provider-google-beta bindings)."""
    provider = TerraformProvider(
        scope,
        GOOGLE_BETA,
        terraform_resource_type=GOOGLE_BETA,
        terraform_generator_metadata=TerraformProviderGeneratorMetadata(
            provider_name=GOOGLE_BETA, provider_version=GOOGLE_PROVIDER_VERSION
        ),
        terraform_provider_source=f"hashicorp/{GOOGLE_BETA}",
    )
    provider.add_override("project", names.project)
    provider.add_override("region", names.region)
    return provider


def docker_provider(stack: TerraformStack, names: Names) -> DockerProvider:
    return DockerProvider(
        stack,
        "docker",
        registry_auth=[DockerProviderRegistryAuth(address=names.registry_host, username=REGISTRY_USER)],
    )
