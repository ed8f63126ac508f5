"""The graph policies' plumbing on small documents: every stack of an outdir, which strings make edges, which
resources each policy judges, and the exact advice (found by `make mutate`)."""

from __future__ import annotations

import json

from infra.graph_policies import Graph, evaluate_outdir, evaluate_stack

REF = "${google_storage_bucket.b.name}"


def test_every_stack_of_an_outdir_is_judged_under_its_own_name(tmp_path):
    for stack in ("b-stack", "a-stack"):
        (tmp_path / "stacks" / stack).mkdir(parents=True)
        document = {"resource": {"google_made_up_thing": {stack.replace("-", "_"): {}}}}
        (tmp_path / "stacks" / stack / "cdk.tf.json").write_text(json.dumps(document))
    found = {(r.stack, r.resource) for r in evaluate_outdir(tmp_path) if r.check_id == "CKV2_FMNIST_G1"}
    assert found == {("a-stack", "google_made_up_thing.a_stack"), ("b-stack", "google_made_up_thing.b_stack")}


def test_references_deep_in_lists_are_edges_and_comments_self_and_unknown_targets_are_not():
    graph = Graph(
        {
            "resource": {
                "google_storage_bucket": {"b": {"name": "x", "labels": {"self": "${google_storage_bucket.b.id}"}}},
                "google_pubsub_topic": {
                    "nested": {"a": [[{"deep": [REF]}]]},
                    "commented": {"//": {"note": REF}},
                    "unknown": {"x": "${google_storage_bucket.gone.name}"},
                },
            }
        }
    )
    assert graph.ancestors("google_pubsub_topic.nested") == {"google_storage_bucket.b"}
    assert graph.ancestors("google_pubsub_topic.commented") == set()
    assert graph.ancestors("google_pubsub_topic.unknown") == set()
    assert graph.ancestors("google_storage_bucket.b") == set()


def test_the_api_switch_itself_is_not_judged_for_depending_on_itself():
    document = {"resource": {"google_project_service": {"s": {"service": "storage.googleapis.com"}}}}
    assert [r for r in evaluate_stack("s", document) if r.check_id == "CKV2_FMNIST_G1"] == []


def test_a_data_source_read_at_plan_time_is_named_with_the_fix_after_any_other():
    document = {
        "data": {
            "external": {"first": {}},  # not google: skipped, and the check goes on
            "google_project": {"p": {}},
        }
    }
    [result] = [r for r in evaluate_stack("s", document) if r.check_id == "CKV2_FMNIST_G2"]
    assert (result.resource, result.problem) == (
        "data.google_project.p",
        "read at plan time (no dependency) but needs cloudresourcemanager.googleapis.com, which a fresh project "
        "has off: add depends_on on the google_project_service that enables it",
    )


def test_a_key_binding_that_names_an_agent_by_hand_in_its_members_is_refused():
    binding = {"role": "roles/cloudkms.cryptoKeyEncrypterDecrypter", "crypto_key_id": "k"}
    document = {
        "resource": {
            "google_kms_crypto_key_iam_binding": {
                "by_hand": {**binding, "members": ["serviceAccount:service-1@gcp-sa-pubsub.iam.gserviceaccount.com"]},
                "fine": {**binding, "members": ["serviceAccount:x@p.iam.gserviceaccount.com"]},
            },
            "google_kms_crypto_key_iam_member": {"first": {**binding, "member": "serviceAccount:y@p"}},
        }
    }
    problems = {r.resource: r.problem for r in evaluate_stack("s", document) if r.check_id == "CKV2_FMNIST_G3"}
    assert problems == {
        "google_kms_crypto_key_iam_binding.by_hand": (
            "names a service agent by hand: Google creates agents lazily, so use the email of a "
            "google_project_service_identity (or the data source that creates the agent)"
        ),
        "google_kms_crypto_key_iam_binding.fine": None,
        "google_kms_crypto_key_iam_member.first": None,
    }


def test_a_grant_limit_whose_list_is_not_names_says_so():
    expression = "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly([roles/run.admin])"
    binding = {"role": "roles/iam.securityAdmin", "member": "user:a@b", "condition": {"expression": expression}}
    document = {"resource": {"google_project_iam_member": {"b": binding}}}
    [result] = [r for r in evaluate_stack("s", document) if r.check_id == "CKV2_FMNIST_G5"]
    assert result.problem == (
        "roles/iam.securityAdmin: its condition lists roles that are not a list of quoted names: [roles/run.admin]"
    )
