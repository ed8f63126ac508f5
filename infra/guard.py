"""A Terraform variable in each stack whose validation fails `terraform plan`, before any provider call, while
config/<env>.yaml holds placeholder values (the list and messages come from infra/preflight.py)."""

from __future__ import annotations

from cdktf import TerraformStack, TerraformVariable, TerraformVariableValidationConfig

from infra.preflight import placeholder_problems
from settings import Settings

GUARD_VARIABLE = "placeholder_settings"


def deploy_guard(stack: TerraformStack, settings: Settings) -> TerraformVariable | None:
    """A variable whose validation fails `terraform plan` (before any provider call) while placeholders remain."""
    problems = placeholder_problems(settings)
    if not problems:
        return None
    message = (
        f"Environment {settings.env} still has placeholder settings, so it must not be deployed: "
        + "; ".join(problems)
        + "."
    )
    return TerraformVariable(
        stack,
        GUARD_VARIABLE,
        type="list(string)",
        default=problems,
        description="settings of config/<env>.yaml that are still placeholders (infra/preflight.py)",
        validation=[
            TerraformVariableValidationConfig(
                condition=f"${{length(var.{GUARD_VARIABLE}) == 0}}", error_message=message
            )
        ],
    )
