"""Propagation waits: a `time_sleep` (hashicorp/time) between a grant or an API enablement and its first use.

Why: IAM grants and API enablements are eventually consistent (typically seconds, up to minutes), and the google
provider retries neither "permission denied" on a CMEK key (provider issues 15415, 5103) nor a quota project's
freshly enabled API. Google's own acceptance tests for these resources put a `time_sleep` in the same place.
The sleep runs once, when the resource is created (`create_duration`); later deploys plan no change.
Declared without a generated binding (one resource type, one argument), like the google-beta identity.
"""

from __future__ import annotations

from cdktf import (
    ITerraformDependable,
    TerraformProvider,
    TerraformProviderGeneratorMetadata,
    TerraformResource,
    TerraformStack,
)
from constructs import Construct

TIME = "time"
TIME_PROVIDER_VERSION = "0.13.1"
IAM_PROPAGATION = "60s"  # IAM: "typically within 60 seconds" (cloud.google.com/iam/docs/access-change-propagation)
API_PROPAGATION = "60s"  # a newly enabled API used as quota project


def time_provider(scope: Construct) -> TerraformProvider:
    """The stack's `hashicorp/time` provider (declared once, on first use)."""
    stack = TerraformStack.of(scope)
    existing = stack.node.try_find_child(TIME)
    if isinstance(existing, TerraformProvider):
        return existing
    return TerraformProvider(
        stack,
        TIME,
        terraform_resource_type=TIME,
        terraform_generator_metadata=TerraformProviderGeneratorMetadata(
            provider_name=TIME, provider_version=TIME_PROVIDER_VERSION
        ),
        terraform_provider_source=f"hashicorp/{TIME}",
    )


def propagation_wait(
    scope: Construct, id: str, *, after: list[ITerraformDependable], duration: str = IAM_PROPAGATION
) -> TerraformResource:
    """A `time_sleep` of `duration` after everything in `after`: depend on it, not on them, to use them."""
    wait = TerraformResource(
        scope,
        id,
        terraform_resource_type="time_sleep",
        terraform_generator_metadata=TerraformProviderGeneratorMetadata(provider_name=TIME),
        provider=time_provider(scope),
        depends_on=after,
    )
    wait.add_override("create_duration", duration)
    return wait
