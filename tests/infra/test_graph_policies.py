"""The graph policies (infra/graph_policies.py): the real stacks pass every one, and each fails on a fixture that
repeats the defect it guards against."""

from __future__ import annotations

import pytest

from infra.graph_policies import POLICIES, evaluate_outdir, evaluate_stack
from infra.scan import ScanResult, add_graph_results

KEY = "projects/p/locations/europe-west4/keyRings/fmnist/cryptoKeys/fmnist-cmek"
STORAGE_API = {"storage": {"service": "storage.googleapis.com"}}
CRM_API = {"crm": {"service": "cloudresourcemanager.googleapis.com"}}


def _problems(document: dict, check_id: str) -> dict[str, str | None]:
    return {r.resource: r.problem for r in evaluate_stack("fixture", document) if r.check_id == check_id}


def test_the_synthesized_stacks_pass_every_graph_policy(synth):
    results = evaluate_outdir(synth.outdir)
    assert [r for r in results if r.problem] == []
    for env in ("dev", "prod"):
        exercised = {r.check_id for r in results if r.stack in (env, f"bootstrap-{env}")}
        assert exercised == {p.id for p in POLICIES}, env


def test_a_resource_must_depend_on_the_api_the_stack_enables():
    document = {
        "resource": {
            "google_project_service": STORAGE_API,
            "google_storage_bucket": {
                "early": {"name": "a"},
                "ordered": {"name": "b", "depends_on": ["google_project_service.storage"]},
            },
            "google_made_up_thing": {"x": {}},
        }
    }
    problems = _problems(document, "CKV2_FMNIST_G1")
    assert "does not depend on it" in problems["google_storage_bucket.early"]
    assert problems["google_storage_bucket.ordered"] is None
    assert "RESOURCE_APIS" in problems["google_made_up_thing.x"]


def test_a_reference_counts_as_a_dependency():
    document = {
        "resource": {
            "google_project_service": STORAGE_API,
            "google_storage_bucket": {"b": {"name": "${google_project_service.storage.project}-b"}},
        }
    }
    assert _problems(document, "CKV2_FMNIST_G1")["google_storage_bucket.b"] is None


def test_a_plan_time_read_needing_an_api_a_fresh_project_lacks_fails():
    document = {
        "resource": {"google_project_service": CRM_API},
        "data": {
            "google_project": {
                "early": {"project_id": "p"},
                "after_api": {"depends_on": ["google_project_service.crm"]},
            },
            "google_client_config": {"client": {}},
        },
    }
    problems = _problems(document, "CKV2_FMNIST_G2")
    assert "read at plan time" in problems["data.google_project.early"]
    assert problems["data.google_project.after_api"] is None
    assert problems["data.google_client_config.client"] is None


def _cmek_stack(grant_member: str, bucket_depends_on: list[str]) -> dict:
    return {
        "resource": {
            "google_project_service": STORAGE_API,
            "google_kms_crypto_key_iam_member": {
                "storage": {
                    "crypto_key_id": KEY,
                    "role": "roles/cloudkms.cryptoKeyEncrypterDecrypter",
                    "member": grant_member,
                    "depends_on": ["google_project_service.storage"],
                }
            },
            "google_storage_bucket": {
                "b": {
                    "name": "b",
                    "encryption": {"default_kms_key_name": KEY},
                    "depends_on": ["google_project_service.storage", *bucket_depends_on],
                }
            },
        },
        "data": {
            "google_storage_project_service_account": {"agent": {"depends_on": ["google_project_service.storage"]}}
        },
    }


AGENT_MEMBER = "serviceAccount:${data.google_storage_project_service_account.agent.email_address}"


def test_a_cmek_user_must_depend_on_its_agents_key_grant():
    problems = _problems(_cmek_stack(AGENT_MEMBER, []), "CKV2_FMNIST_G3")
    assert "does not depend on the storage service agent's key grant" in problems["google_storage_bucket.b"]
    good = _problems(_cmek_stack(AGENT_MEMBER, ["google_kms_crypto_key_iam_member.storage"]), "CKV2_FMNIST_G3")
    assert set(good.values()) == {None}


def test_a_hand_written_service_agent_fails():
    member = "serviceAccount:service-123@gcp-sa-pubsub.iam.gserviceaccount.com"
    problems = _problems(_cmek_stack(member, ["google_kms_crypto_key_iam_member.storage"]), "CKV2_FMNIST_G3")
    assert "names a service agent by hand" in problems["google_kms_crypto_key_iam_member.storage"]
    assert "does not depend on the storage service agent" in problems["google_storage_bucket.b"]


def test_a_cmek_user_whose_agent_nothing_creates_fails():
    document = {"resource": {"google_pubsub_topic": {"t": {"name": "t", "kms_key_name": KEY}}}}
    assert "nothing in the stack creates the pubsub" in _problems(document, "CKV2_FMNIST_G3")["google_pubsub_topic.t"]


def test_only_a_billing_only_alias_may_override_the_quota_project():
    document = {
        "provider": {
            "google": [
                {"project": "p", "user_project_override": True, "billing_project": "p"},
                {"alias": "billing", "user_project_override": True, "billing_project": "p"},
            ]
        },
        "resource": {
            "google_billing_budget": {"budget": {"provider": "google.billing"}},
            "google_pubsub_topic": {"topic": {"provider": "google.billing"}},
        },
    }
    problems = _problems(document, "CKV2_FMNIST_G4")
    assert "default provider sets user_project_override" in problems["provider.google"]
    assert problems["provider.google.billing"] is None
    assert problems["google_billing_budget.budget"] is None
    assert "quota-override provider" in problems["google_pubsub_topic.topic"]


def test_a_role_that_can_grant_roles_needs_a_condition():
    condition = {
        "title": "t",
        "expression": "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly([])",
    }
    document = {
        "resource": {
            "google_project_iam_member": {
                "open": {"role": "roles/resourcemanager.projectIamAdmin", "member": "serviceAccount:d@p"},
                "limited": {
                    "role": "roles/resourcemanager.projectIamAdmin",
                    "member": "serviceAccount:d@p",
                    "condition": condition,
                },
                "other": {"role": "roles/run.admin", "member": "serviceAccount:d@p"},
            }
        }
    }
    problems = _problems(document, "CKV2_FMNIST_G5")
    assert "can grant any role" in problems["google_project_iam_member.open"]
    assert problems["google_project_iam_member.limited"] is None
    assert "google_project_iam_member.other" not in problems


LIMIT = "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', [])"


@pytest.mark.parametrize(
    "expression, problem",
    [
        (f'{LIMIT}.hasOnly(["roles/run.admin", "roles/storage.admin"])', None),  # what accounts.py writes
        (f"{LIMIT}.hasOnly(['roles/run.admin'])", None),  # CEL's single quotes
        ("request.time < timestamp('2030-01-01T00:00:00Z')", "is not limited to"),  # a condition, but not a limit
        (f"!{LIMIT}.hasOnly([])", "is not limited to"),  # names the attribute, limits nothing
        (f"{LIMIT}.hasOnly([]) || true", "is not limited to"),
        (f"{LIMIT}.hasAny(['roles/run.admin'])", "is not limited to"),
        (f'{LIMIT}.hasOnly(["roles/run.admin", "roles/owner"])', "may grant ['roles/owner']"),
        (f"{LIMIT}.hasOnly(['roles/iam.securityAdmin'])", "may grant ['roles/iam.securityAdmin']"),
    ],
)
def test_only_the_documented_grant_limit_without_escalating_roles_passes(expression, problem):
    binding = {"role": "roles/resourcemanager.projectIamAdmin", "member": "serviceAccount:d@p"}
    binding["condition"] = {"title": "t", "expression": expression}
    document = {"resource": {"google_project_iam_member": {"b": binding}}}
    found = _problems(document, "CKV2_FMNIST_G5")["google_project_iam_member.b"]
    if problem is None:
        assert found is None
    else:
        assert found.startswith("roles/resourcemanager.projectIamAdmin: its condition ") and problem in found


def test_graph_findings_are_judged_against_the_suppression_notes():
    from infra.checkov_baseline import Suppression

    results = evaluate_stack("s", {"resource": {"google_made_up_thing": {"x": {}}}})
    failed = add_graph_results(ScanResult(), results, [])
    assert [(f.check_id, f.resource) for f in failed.failed] == [("CKV2_FMNIST_G1", "google_made_up_thing.x")]
    note = Suppression("s", "google_made_up_thing", "x", "CKV2_FMNIST_G1", "a reason of at least one sentence")
    assert add_graph_results(ScanResult(), results, [note]).status == 0


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.id)
def test_every_policy_has_a_name_and_an_id(policy):
    assert policy.id.startswith("CKV2_FMNIST_G") and len(policy.name) > 20


def test_a_deletion_argument_of_the_binding_left_unset_fails():
    document = {
        "resource": {
            "google_workflows_workflow": {
                "unset": {"name": "w"},
                "decided": {"name": "w", "deletion_protection": False},
            }
        }
    }
    problems = _problems(document, "CKV2_FMNIST_G6")
    assert "deletion_protection (provider default true)" in problems["google_workflows_workflow.unset"]
    assert problems["google_workflows_workflow.decided"] is None
