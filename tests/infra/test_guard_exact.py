"""The placeholder guard (infra/guard.py) on a one-stack synth, value by value: the variable's name, type, default
(the preflight's list, in order), the validation's exact condition and its message naming every key. A condition of
`!= 0`, a default of no problems or a message without the keys would let `terraform plan` pass, or fail saying
nothing, on a config that still bills no real account and alerts nobody."""

from __future__ import annotations

import json

from cdktf import TerraformStack, Testing

from infra.guard import GUARD_VARIABLE, deploy_guard
from infra.preflight import placeholder_problems
from settings import load_config

REAL = {
    "FMNIST_INFRA__BILLING_ACCOUNT": "01A2B3-C4D5E6-F7A8B9",
    "FMNIST_INFRA__BUDGET_CURRENCY": "EUR",
    "FMNIST_INFRA__GITHUB_OWNER": "fmnist-team",
    "FMNIST_INFRA__ALERT_EMAIL": "oncall@fmnist.dev",
}


def _guarded(environ: dict[str, str]) -> tuple[object, dict]:
    stack = TerraformStack(Testing.app(), "guarded")
    variable = deploy_guard(stack, load_config("dev", environ=environ))
    return variable, json.loads(Testing.synth(stack))


def test_placeholders_give_a_variable_whose_validation_fails_the_plan():
    settings = load_config("dev", environ={})
    problems = placeholder_problems(settings)
    assert len(problems) == 4
    variable, synthesized = _guarded({})
    assert GUARD_VARIABLE == "placeholder_settings"
    assert variable is not None and variable.node.id == GUARD_VARIABLE
    assert synthesized == {
        "variable": {
            "placeholder_settings": {
                "type": "list(string)",
                "default": problems,
                "description": "settings of config/<env>.yaml that are still placeholders (infra/preflight.py)",
                "validation": [
                    {
                        "condition": "${length(var.placeholder_settings) == 0}",
                        "error_message": "Environment dev still has placeholder settings, so it must not be "
                        "deployed: " + "; ".join(problems) + ".",
                    }
                ],
            }
        }
    }


def test_real_values_give_no_variable():
    variable, synthesized = _guarded(REAL)
    assert variable is None
    assert "variable" not in synthesized
