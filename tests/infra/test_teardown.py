"""Every destroy blocker is a deliberate per-environment setting: dev destroys cleanly, prod refuses."""

from __future__ import annotations

import pytest
from cdktf import Testing as CdktfTesting

# env -> expected value of each blocker
EXPECTED = {
    "dev": {"protect": False},
    "prod": {"protect": True},
}
STATEFUL_TYPES = ("google_storage_bucket", "google_bigquery_dataset", "google_bigquery_table", "google_kms_crypto_key")
BOOTSTRAP = {env: f"bootstrap-{env}" for env in EXPECTED}


@pytest.mark.parametrize("env", sorted(EXPECTED))
def test_config_picks_the_side(settings_by_env, env):
    assert settings_by_env[env].infra.deletion_protection is EXPECTED[env]["protect"]


@pytest.mark.parametrize("env", sorted(EXPECTED))
def test_destroy_blockers(synth, env):
    protect = EXPECTED[env]["protect"]
    text = synth.texts[env]
    assert CdktfTesting.to_have_resource_with_properties(
        synth.texts[f"serving-{env}"], "google_cloud_run_v2_service", {"deletion_protection": protect}
    )
    assert CdktfTesting.to_have_resource_with_properties(
        text, "google_bigquery_table", {"deletion_protection": protect}
    )
    assert CdktfTesting.to_have_resource_with_properties(
        text, "google_vertex_ai_feature_online_store", {"force_destroy": not protect}
    )
    assert synth.one(f"serving-{env}", "google_cloud_run_v2_service")["deletion_protection"] is protect
    assert all(b["force_destroy"] is (not protect) for b in synth.resources(env, "google_storage_bucket").values())
    datasets = synth.resources(env, "google_bigquery_dataset").values()
    assert all(d["delete_contents_on_destroy"] is (not protect) for d in datasets)
    assert all(t["deletion_protection"] is protect for t in synth.resources(env, "google_bigquery_table").values())
    assert synth.one(env, "google_vertex_ai_feature_online_store")["force_destroy"] is (not protect)
    for stack in (env, BOOTSTRAP[env]):
        for resource_type in STATEFUL_TYPES:
            for name, resource in synth.resources(stack, resource_type).items():
                assert resource["lifecycle"] == {"prevent_destroy": protect}, name


@pytest.mark.parametrize("env", sorted(EXPECTED))
def test_apis_are_never_disabled_on_destroy(synth, env):
    for stack in (env, f"serving-{env}"):
        assert {s["disable_on_destroy"] for s in synth.resources(stack, "google_project_service").values()} == {False}


@pytest.mark.parametrize("env", sorted(EXPECTED))
def test_images_survive_destroy_in_the_registry_lifecycle(synth, env):
    # keep_remotely: destroy never deletes a pushed tag that a running revision may still use; the repository
    # itself (and its images) goes with the stack in dev.
    # images-<env> is never destroyed (make destroy, cloudbuild-deploy.yaml): keep_locally too, nothing of it is lost.
    assert {i["keep_remotely"] for i in synth.resources(f"images-{env}", "docker_registry_image").values()} == {True}
    assert {i["keep_locally"] for i in synth.resources(f"images-{env}", "docker_image").values()} == {True}


def test_key_destruction_delay_does_not_follow_protection(synth):
    # destroy_scheduled_duration forces a new key when it changes: flipping deletion_protection must not do that
    keys = {
        key["destroy_scheduled_duration"]
        for env in EXPECTED
        for key in synth.resources(BOOTSTRAP[env], "google_kms_crypto_key").values()  # CMEK and index signing
    }
    assert keys == {"2592000s"}


@pytest.mark.parametrize("env", sorted(EXPECTED))
def test_every_deletion_argument_the_bindings_know_follows_the_teardown_policy(synth, settings_by_env, env):
    """The argument list comes from the installed provider bindings (infra/provider_facts.py), not from this test:
    a resource type added tomorrow with a `deletion_protection` is checked the day it is added."""
    from infra.provider_facts import deletion_arguments
    from infra.teardown import TeardownPolicy

    policy = TeardownPolicy.for_settings(settings_by_env[env])
    checked = set()
    for stack in (env, BOOTSTRAP[env], f"serving-{env}"):
        for resource_type, resources in synth.stack(stack)["resource"].items():
            for argument in deletion_arguments(resource_type):
                for name, body in resources.items():
                    assert body.get(argument.name) is policy.argument(argument.name), (stack, name, argument.name)
                checked.add(f"{resource_type}.{argument.name}")
    assert "google_cloud_run_v2_service.deletion_protection" in checked  # default true in 6.50 (issue 23)
    assert len(checked) >= 6  # the starter workflow (issue 23, defect 1) became a function, which has none


def test_the_workflow_s_deletion_protection_default_is_read_from_its_binding():
    from infra.provider_facts import deletion_arguments

    [argument] = deletion_arguments("google_workflows_workflow")
    assert argument.name == "deletion_protection" and argument.default is True
    assert deletion_arguments("google_storage_bucket")[0].default is False
    assert deletion_arguments("google_made_up_thing") == ()
