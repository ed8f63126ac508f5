"""The deny policy on the Vertex AI Custom Code Service Agent (infra/components/vertex_agent.py) and its check
(infra/vertex_agent_policy.py), pinned exactly where test_vertex_agent_policy.py checks only part: the policy's id,
parent, rule and the seven permissions it denies spelled out, what it waits for, both Terraform addresses; and the
check's verdict on each way a deny policy can fall short, with its whole message."""

from __future__ import annotations

import copy

import pytest

from infra.vertex_agent_policy import problems
from tests.infra.conftest import BOOTSTRAP, ENVIRONMENTS

AGENT = (
    "principal://iam.googleapis.com/projects/-/serviceAccounts/service-{n}@gcp-sa-aiplatform-cc.iam.gserviceaccount.com"
)
DENIED = [
    "storage.googleapis.com/objects.create",
    "storage.googleapis.com/objects.delete",
    "storage.googleapis.com/objects.get",
    "storage.googleapis.com/objects.list",
    "storage.googleapis.com/objects.update",
    "bigquery.googleapis.com/tables.getData",
    "bigquery.googleapis.com/tables.updateData",
]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_deny_policy_names_the_custom_code_agent_and_every_object_and_table_permission(synth, env, settings_by_env):
    project = settings_by_env[env].project_id
    stack = BOOTSTRAP[env]
    found = {p: kind for p, (kind, _, _) in synth.by_path(stack).items() if p.startswith("vertex_agent/")}
    assert found == {"vertex_agent/project": "google_project", "vertex_agent/deny": "google_iam_deny_policy"}
    assert synth.waits(stack, "vertex_agent/") == {
        "vertex_agent/project": ["apis/cloudresourcemanager"],
        "vertex_agent/deny": ["apis/iam"],
    }
    assert synth.body(stack, "vertex_agent/project")["project_id"] == project
    policy = synth.body(stack, "vertex_agent/deny")
    number = synth.ref(stack, "vertex_agent/project", "number")
    assert {k: v for k, v in policy.items() if k not in ("//", "depends_on")} == {
        "name": "fmnist-deny-vertex-custom-code-agent",
        "parent": f"cloudresourcemanager.googleapis.com%2Fprojects%2F{project}",
        "display_name": "Vertex AI custom code agent: no objects or tables",
        "rules": [
            {
                "description": "custom jobs run without a service account must not reach the buckets or tables",
                "deny_rule": {"denied_principals": [AGENT.format(n=number)], "denied_permissions": DENIED},
            }
        ],
    }


def _stack(*policies: dict) -> dict:
    return {"resource": {"google_iam_deny_policy": {f"p{i}": p for i, p in enumerate(policies)}}}


def _policy(project: str = "p-1", **deny) -> dict:
    rule = {"denied_principals": [AGENT.format(n="123")], "denied_permissions": list(DENIED), **deny}
    return {"parent": f"cloudresourcemanager.googleapis.com%2Fprojects%2F{project}", "rules": [{"deny_rule": rule}]}


MESSAGE = (
    "no deny policy on project p-1 denies the Vertex AI Custom Code Service Agent "
    "(service-PROJECT_NUMBER@gcp-sa-aiplatform-cc.iam.gserviceaccount.com) storage.googleapis.com/objects.get, "
    "storage.googleapis.com/objects.create: a custom job created without a service account would run as it and "
    "reach the buckets (infra/components/vertex_agent.py)"
)


def test_a_deny_of_reads_and_writes_to_the_agent_passes_and_nothing_else_does():
    assert list(problems(_stack(_policy()), "p-1")) == []
    assert list(problems(_stack(_policy(denied_permissions=[DENIED[2], DENIED[0]])), "p-1")) == []  # get, create
    assert list(problems({}, "p-1")) == [MESSAGE]
    assert list(problems({"resource": {}}, "p-1")) == [MESSAGE]


@pytest.mark.parametrize(
    "policies",
    [
        [_policy(project="p-2")],  # another project's policy
        [{"parent": _policy()["parent"]}],  # no rules
        [{"parent": _policy()["parent"], "rules": [{}]}],  # a rule with no deny
        [_policy(denied_principals=[])],
        [_policy(denied_principals=[AGENT.format(n="123").removeprefix("principal://")])],  # not a v2 principal
        [
            _policy(
                denied_principals=[
                    "principal://iam.googleapis.com/projects/-/serviceAccounts/a@p.iam.gserviceaccount.com"
                ]
            )
        ],
        [_policy(denied_permissions=["storage.googleapis.com/objects.get"])],  # reads denied, writes allowed
        [_policy(denied_permissions=["storage.googleapis.com/objects.create"])],  # writes denied, reads allowed
        [_policy(denial_condition={"expression": "false"})],  # denied only under a condition
    ],
    ids=[
        "other-project",
        "no-rules",
        "empty-rule",
        "no-principal",
        "plain-email",
        "other-account",
        "reads-only",
        "writes-only",
        "conditional",
    ],
)
def test_a_deny_that_falls_short_is_named_with_what_is_missing(policies):
    assert list(problems(_stack(*policies), "p-1")) == [MESSAGE]


def test_one_sufficient_policy_or_rule_among_weaker_ones_passes_whatever_its_place():
    weak, other, strong = _policy(denied_permissions=DENIED[3:]), _policy(project="p-2"), _policy()
    assert list(problems(_stack(other, weak, strong), "p-1")) == []
    assert list(problems(_stack(strong, other, weak), "p-1")) == []
    two_rules = copy.deepcopy(strong)
    two_rules["rules"].insert(0, weak["rules"][0])
    assert list(problems(_stack(two_rules), "p-1")) == []
    mixed = _policy(denied_principals=["principal://x/a@p.iam.gserviceaccount.com", AGENT.format(n="9")])
    assert list(problems(_stack(mixed), "p-1")) == []
