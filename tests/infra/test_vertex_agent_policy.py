"""The Vertex AI Custom Code Service Agent reaches no bucket or table (issue 25): the synthesized bootstrap stacks
deny it, and a stack without that deny policy (or with a weaker one) fails the policy."""

from __future__ import annotations

import copy
import json

import pytest

from infra.components.vertex_agent import DENIED_PERMISSIONS
from infra.vertex_agent_policy import problems
from tests.infra.conftest import BOOTSTRAP, ENVIRONMENTS


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_bootstrap_stacks_deny_the_custom_code_agent(synth, env, settings_by_env):
    stack = json.loads(synth.texts[BOOTSTRAP[env]])
    project = settings_by_env[env].project_id
    assert list(problems(stack, project)) == []
    (policy,) = stack["resource"]["google_iam_deny_policy"].values()
    (rule,) = policy["rules"]
    assert rule["deny_rule"]["denied_principals"] == [
        "principal://iam.googleapis.com/projects/-/serviceAccounts/service-"
        "${data.google_project.vertex_agent_project_7A63C0E2.number}@gcp-sa-aiplatform-cc.iam.gserviceaccount.com"
    ]
    assert rule["deny_rule"]["denied_permissions"] == list(DENIED_PERMISSIONS)


def _weakened(synth, change) -> dict:
    stack = copy.deepcopy(json.loads(synth.texts[BOOTSTRAP["dev"]]))
    change(stack)
    return stack


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s["resource"].pop("google_iam_deny_policy"),
        lambda s: next(iter(s["resource"]["google_iam_deny_policy"].values()))["rules"][0]["deny_rule"].update(
            denied_principals=["principal://iam.googleapis.com/projects/-/serviceAccounts/x@p.iam.gserviceaccount.com"]
        ),
        lambda s: next(iter(s["resource"]["google_iam_deny_policy"].values()))["rules"][0]["deny_rule"].update(
            denied_permissions=["storage.googleapis.com/objects.delete"]
        ),
        lambda s: next(iter(s["resource"]["google_iam_deny_policy"].values()))["rules"][0]["deny_rule"].update(
            denial_condition={"expression": "resource.matchTag('p/env', 'none')"}
        ),
        lambda s: next(iter(s["resource"]["google_iam_deny_policy"].values())).update(parent="organizations/1"),
    ],
    ids=["no-deny-policy", "another-principal", "reads-allowed", "conditional", "other-parent"],
)
def test_a_missing_or_weaker_deny_fails_the_policy(synth, settings_by_env, change):
    (problem,) = problems(_weakened(synth, change), settings_by_env["dev"].project_id)
    assert "denies the Vertex AI Custom Code Service Agent" in problem
