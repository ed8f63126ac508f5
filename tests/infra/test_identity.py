"""Service accounts and IAM: resource-level bindings, project-level only where listed with a reason."""

from __future__ import annotations

import pytest

from infra.components.identity import PROJECT_ROLES
from infra.naming import Names

ENVS = ("dev", "prod")
PRIMITIVE = {"roles/owner", "roles/editor", "roles/viewer"}


def _iam_resources(stack: dict):
    for resource_type, resources in stack["resource"].items():
        if "_iam_" in resource_type:
            for name, body in resources.items():
                yield resource_type, name, body


@pytest.mark.parametrize("env", ENVS)
def test_no_primitive_roles_anywhere(synth, env):
    roles = {body["role"] for _, _, body in _iam_resources(synth.stack(env))}
    assert roles and not roles & PRIMITIVE


@pytest.mark.parametrize("env", ENVS)
def test_project_level_bindings_are_exactly_the_justified_ones(synth, env):
    bindings = synth.resources(env, "google_project_iam_member").values()
    declared = {(account, role) for account, grants in PROJECT_ROLES.items() for role, _ in grants}
    found = {(b["member"].split("identity_")[1].split("_")[0], b["role"]) for b in bindings}
    assert found == declared
    assert all(len(why) > 20 for grants in PROJECT_ROLES.values() for _, why in grants)
    assert "service" not in PROJECT_ROLES, "the prediction service needs no project-level role"


@pytest.mark.parametrize("env", ENVS)
def test_service_accounts(synth, env, settings_by_env):
    names = Names.of(settings_by_env[env])
    ids = {sa["account_id"] for sa in synth.resources(env, "google_service_account").values()}
    assert ids == {names.service_account_id(r) for r in ("trainer", "service", "deployer", "checks")}
    assert all(len(i) <= 30 for i in ids)


@pytest.mark.parametrize("env", ENVS)
def test_deployer_acts_as_the_stack_accounts_only(synth, env):
    act_as = synth.resources(env, "google_service_account_iam_member").values()
    assert {a["role"] for a in act_as} == {"roles/iam.serviceAccountUser"}
    assert all("identity_deployer_" in a["member"] for a in act_as)
    assert not any(
        b["role"] == "roles/iam.serviceAccountUser" for b in synth.resources(env, "google_project_iam_member").values()
    )


@pytest.mark.parametrize("env", ENVS)
def test_bucket_access_is_per_bucket(synth, env, settings_by_env):
    names = Names.of(settings_by_env[env])
    bucket_ids = {key: b["name"] for key, b in synth.resources(env, "google_storage_bucket").items()}
    grants = set()
    for binding in synth.resources(env, "google_storage_bucket_iam_member").values():
        bucket = next(name for key, name in bucket_ids.items() if key in binding["bucket"])
        who = (
            binding["member"].split("identity_")[1].split("_")[0]
            if "identity_" in binding["member"]
            else binding["member"]
        )
        grants.add((bucket, who, binding["role"]))
    assert grants == {
        (names.bucket("dev"), "trainer", "roles/storage.objectAdmin"),
        (names.bucket("models"), "trainer", "roles/storage.objectAdmin"),
        (names.bucket("datasets"), "trainer", "roles/storage.objectViewer"),
        (names.bucket("models"), "service", "roles/storage.objectViewer"),
        (names.access_log_bucket, "group:cloud-storage-analytics@google.com", "roles/storage.objectCreator"),
    }
