"""The graph policies on fixture stacks that each must refuse, found by `make mutate`'s graph-policies group: a
service agent created by a google_project_service_identity (of the right API, not any), the agents of a CMEK user
that needs two, every resource judged even after one the policy skips or cannot judge, and the exact advice."""

from __future__ import annotations

import pytest

from infra.graph_policies import POLICIES, evaluate_stack

KEY = "projects/p/locations/europe-west4/keyRings/fmnist/cryptoKeys/fmnist-cmek"
KEY_USER = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
LIMIT_FORM = "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly([...])"


def _problems(document: dict, check_id: str) -> dict[str, str | None]:
    return {r.resource: r.problem for r in evaluate_stack("fixture", document) if r.check_id == check_id}


def _pubsub_stack(granted_identity: str) -> dict:
    """A CMEK topic that depends on the key grant of `granted_identity`; the stack creates Pub/Sub's and Cloud
    Run's service agents with google_project_service_identity."""
    apis = {"pubsub": "pubsub.googleapis.com", "run": "run.googleapis.com"}
    return {
        "resource": {
            "google_project_service": {name: {"service": api} for name, api in apis.items()},
            "google_project_service_identity": {
                name: {"service": api, "depends_on": [f"google_project_service.{name}"]} for name, api in apis.items()
            },
            "google_kms_crypto_key_iam_member": {
                "grant": {
                    "crypto_key_id": KEY,
                    "role": KEY_USER,
                    "member": f"serviceAccount:${{google_project_service_identity.{granted_identity}.email}}",
                }
            },
            "google_pubsub_topic": {
                "t": {
                    "name": "t",
                    "kms_key_name": KEY,
                    "depends_on": ["google_project_service.pubsub", "google_kms_crypto_key_iam_member.grant"],
                }
            },
        }
    }


def test_a_service_agent_created_by_its_apis_service_identity_is_the_one_to_grant():
    assert _problems(_pubsub_stack("pubsub"), "CKV2_FMNIST_G3") == {
        "google_kms_crypto_key_iam_member.grant": None,
        "google_pubsub_topic.t": None,
    }
    # the grant goes to Cloud Run's agent: Pub/Sub's agent cannot use the key, whatever other agent can
    assert _problems(_pubsub_stack("run"), "CKV2_FMNIST_G3")["google_pubsub_topic.t"] == (
        "uses a CMEK key but does not depend on the pubsub service agent's key grant"
    )


def test_a_cmek_user_of_two_agents_needs_both_and_is_told_each_missing_one():
    document = {"resource": {"google_workbench_instance": {"w": {"name": "w", "kms_key": KEY}}}}
    assert _problems(document, "CKV2_FMNIST_G3") == {
        "google_workbench_instance.w": (
            "uses a CMEK key, but nothing in the stack creates the compute service agent; "
            "uses a CMEK key, but nothing in the stack creates the notebooks service agent"
        )
    }
    document["resource"] |= {
        "google_project_service": {"compute": {"service": "compute.googleapis.com"}},
        "google_project_service_identity": {"notebooks": {"service": "notebooks.googleapis.com"}},
        "google_kms_crypto_key_iam_member": {
            "compute": {"crypto_key_id": KEY, "role": KEY_USER, "member": "${google_project_service.compute.id}"}
        },
    }
    document["resource"]["google_workbench_instance"]["w"]["depends_on"] = ["google_kms_crypto_key_iam_member.compute"]
    assert _problems(document, "CKV2_FMNIST_G3")["google_workbench_instance.w"] == (
        "uses a CMEK key but does not depend on the notebooks service agent's key grant"
    )


def test_a_cmek_user_of_an_unknown_type_does_not_stop_the_check_of_the_next():
    document = {
        "resource": {
            "google_dataflow_job": {"j": {"kms_key_name": KEY}},
            "google_storage_bucket": {"b": {"encryption": {"default_kms_key_name": KEY}}},
        }
    }
    assert _problems(document, "CKV2_FMNIST_G3") == {
        "google_dataflow_job.j": (
            "uses a CMEK key, but no service agent is known for google_dataflow_job: add to CMEK_AGENTS"
        ),
        "google_storage_bucket.b": "uses a CMEK key, but nothing in the stack creates the storage service agent",
    }


def test_an_unknown_data_source_does_not_stop_the_check_of_the_next():
    document = {"data": {"google_made_up": {"m": {}}, "google_project": {"p": {}}}}
    problems = _problems(document, "CKV2_FMNIST_G2")
    assert (
        problems["data.google_made_up.m"] == "no API known for data source google_made_up: add it to DATA_SOURCE_APIS"
    )
    assert problems["data.google_project.p"].startswith("read at plan time (no dependency) but needs cloudresource")


def test_a_provider_config_without_the_override_does_not_stop_the_check_of_the_default_one():
    document = {
        "provider": {"google": [{"alias": "plain", "project": "p"}, {"project": "p", "user_project_override": True}]}
    }
    assert _problems(document, "CKV2_FMNIST_G4") == {
        "provider.google": (
            "the default provider sets user_project_override: every request would name the project as quota "
            "project; move it to an alias used by billing resources only"
        )
    }


def test_a_role_that_cannot_grant_does_not_stop_the_check_of_one_that_can():
    member = "serviceAccount:d@p"
    document = {
        "resource": {
            "google_project_iam_member": {
                "viewer": {"role": "roles/viewer", "member": member},
                "admin": {"role": "roles/resourcemanager.projectIamAdmin", "member": member},
            }
        }
    }
    assert _problems(document, "CKV2_FMNIST_G5") == {
        "google_project_iam_member.admin": (
            "roles/resourcemanager.projectIamAdmin without a condition on iam.googleapis.com/modifiedGrantsByRole can "
            "grant any role, owner included"
        )
    }


@pytest.mark.parametrize("expression", ["true", f"{LIMIT_FORM.replace('[...]', '[]')} || true"])
def test_a_condition_that_limits_nothing_names_the_one_form_that_does(expression):
    binding = {"role": "roles/owner", "member": "user:a@b", "condition": {"expression": expression}}
    document = {"resource": {"google_project_iam_member": {"b": binding}}}
    assert _problems(document, "CKV2_FMNIST_G5") == {
        "google_project_iam_member.b": f"roles/owner: its condition is not limited to `{LIMIT_FORM}`"
    }


def test_every_deletion_argument_left_unset_is_named_after_a_resource_without_any():
    document = {
        "resource": {
            "google_pubsub_topic": {"t": {"name": "t"}},  # no deletion argument: judged by nothing, and skipped
            "google_bigtable_instance": {"i": {"name": "i"}},  # two of them
        }
    }
    assert _problems(document, "CKV2_FMNIST_G6") == {
        "google_bigtable_instance.i": (
            "leaves deletion_protection (provider default true), force_destroy (provider default false) unset: set it "
            "from infra/teardown.py TeardownPolicy.argument"
        )
    }


def test_each_result_carries_its_policys_name_for_the_report():
    results = evaluate_stack("s", {"resource": {"google_made_up_thing": {"x": {}}}})
    names = {p.id: p.name for p in POLICIES}
    assert [(r.stack, r.check_id, r.check_name) for r in results] == [("s", "CKV2_FMNIST_G1", names["CKV2_FMNIST_G1"])]
    assert names["CKV2_FMNIST_G1"] == "Every resource depends on the google_project_service of its API"
