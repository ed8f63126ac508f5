"""Service accounts and IAM: the bootstrap stack owns the accounts and the Terraform runners' rights; the main stack
grants resource-level roles, and project-level ones only where listed with a reason."""

from __future__ import annotations

import json
import re

import pytest

from infra.components.accounts import ACCOUNT_ACT_AS, BILLING_ROLES, DEPLOYER_ROLES, IAM_ADMIN, PLANNER_ROLES
from infra.components.identity import AGENT_PROJECT_ROLES, PROJECT_ROLES, granted_project_roles
from infra.naming import STACK_ACCOUNTS, Names
from tests.infra.conftest import BOOTSTRAP

ENVS = ("dev", "prod")
PRIMITIVE = {"roles/owner", "roles/editor", "roles/viewer"}


def _iam_resources(stack: dict):
    for resource_type, resources in stack["resource"].items():
        # bindings, not role definitions; a deny policy grants nothing
        if (
            "_iam_" in resource_type
            and not resource_type.endswith("_custom_role")
            and resource_type != "google_iam_deny_policy"
        ):
            for name, body in resources.items():
                yield resource_type, name, body


def _account(member: str, names: Names) -> str:
    """`trainer` for `serviceAccount:<prefix>-trainer@...` or `${google_service_account.accounts_trainer_X.email}`;
    `agent:storage` for the email of infra/components/service_agents.py's `storage` agent."""
    for role in STACK_ACCOUNTS:
        if member == names.account_member(role) or re.search(rf"google_service_account\.accounts_{role}_", member):
            return role
    agent = re.search(r"^serviceAccount:\$\{(?:data\.)?google_[a-z_]+\.agents_([a-z]+)_", member)
    return f"agent:{agent.group(1)}" if agent else member


@pytest.mark.parametrize("stack", [*ENVS, *BOOTSTRAP.values()])
def test_no_primitive_roles_anywhere(synth, stack):
    roles = {body["role"] for _, _, body in _iam_resources(synth.stack(stack))}
    assert roles and not roles & PRIMITIVE


@pytest.mark.parametrize("env", ENVS)
def test_project_level_bindings_are_exactly_the_justified_ones(synth, env, settings_by_env):
    names = Names.of(settings_by_env[env])
    main = {
        (_account(b["member"], names), b["role"]) for b in synth.resources(env, "google_project_iam_member").values()
    }
    assert main == {
        *((account, role) for account, grants in PROJECT_ROLES.items() for role, _ in grants),
        *((f"agent:{agent}", role) for agent, role in AGENT_PROJECT_ROLES),
    }
    bootstrap = synth.resources(BOOTSTRAP[env], "google_project_iam_member").values()
    assert {(_account(b["member"], names), b["role"]) for b in bootstrap} == {
        *(("deployer", role) for role, _ in DEPLOYER_ROLES),
        *(("planner", role) for role, _ in PLANNER_ROLES),
        ("starter", names.starter_role),  # its custom role (infra/components/starter_role.py)
    }
    every_reason = [why for grants in (*PROJECT_ROLES.values(), DEPLOYER_ROLES, PLANNER_ROLES) for _, why in grants]
    every_reason += [*AGENT_PROJECT_ROLES.values(), *ACCOUNT_ACT_AS.values()]
    assert all(len(why) > 20 for why in every_reason)
    service_roles = [role for role, _ in PROJECT_ROLES["service"]]
    assert service_roles == ["roles/monitoring.metricWriter"], "the service only writes its metrics project-wide"


@pytest.mark.parametrize("env", ENVS)
def test_the_deployer_may_grant_exactly_the_roles_the_stack_grants(synth, env):
    admin = [b for b in synth.resources(BOOTSTRAP[env], "google_project_iam_member").values() if b["role"] == IAM_ADMIN]
    assert len(admin) == 1 and "deployer" in admin[0]["member"]
    expression = admin[0]["condition"]["expression"]
    limit = re.fullmatch(
        r"api\.getAttribute\('iam\.googleapis\.com/modifiedGrantsByRole', \[\]\)\.hasOnly\((\[.*\])\)", expression
    )
    assert limit, f"not the documented grant limit alone: {expression}"
    allowed = limit.group(1)
    assert sorted(json.loads(allowed)) == granted_project_roles()
    main_roles = {b["role"] for b in synth.resources(env, "google_project_iam_member").values()}
    assert main_roles == set(granted_project_roles())
    assert "roles/owner" not in allowed and IAM_ADMIN not in allowed


@pytest.mark.parametrize("env", ENVS)
def test_the_deployer_administers_no_account_and_one_key(synth, env):
    roles = {b["role"] for b in synth.resources(BOOTSTRAP[env], "google_project_iam_member").values()}
    assert not roles & {"roles/iam.serviceAccountAdmin", "roles/cloudkms.admin", "roles/iam.securityAdmin"}
    key_admins = [
        b for b in synth.resources(BOOTSTRAP[env], "google_kms_crypto_key_iam_member").values() if "admin" in b["role"]
    ]
    assert [(b["role"], "deployer" in b["member"]) for b in key_admins] == [("roles/cloudkms.admin", True)]
    assert key_admins[0]["crypto_key_id"].startswith("${google_kms_crypto_key.")


@pytest.mark.parametrize("env", ENVS)
def test_service_accounts_are_made_by_the_bootstrap_stack(synth, env, settings_by_env):
    names = Names.of(settings_by_env[env])
    ids = {sa["account_id"] for sa in synth.resources(BOOTSTRAP[env], "google_service_account").values()}
    assert ids == {names.service_account_id(r) for r in STACK_ACCOUNTS}
    assert all(len(i) <= 30 for i in ids)
    assert not synth.resources(env, "google_service_account"), "the deployer creates no account"


@pytest.mark.parametrize("env", ENVS)
def test_deployer_acts_as_the_stack_accounts_only(synth, env, settings_by_env):
    names = Names.of(settings_by_env[env])
    act_as = synth.resources(BOOTSTRAP[env], "google_service_account_iam_member").values()
    assert {a["role"] for a in act_as} == {"roles/iam.serviceAccountUser"}
    pairs = [
        (_account(a["member"], names), _account(a["service_account_id"].replace(".name", ".email"), names))
        for a in act_as
    ]
    assert sorted(on for who, on in pairs if who == "deployer") == sorted(STACK_ACCOUNTS)
    # the only other actAs: the lifecycle pipeline's chain (starter -> pipelines -> trainer, service), each justified
    assert sorted(pair for pair in pairs if pair[0] != "deployer") == sorted(ACCOUNT_ACT_AS)
    assert not synth.resources(env, "google_service_account_iam_member"), "the deployer sets no account's policy"
    for stack in (env, BOOTSTRAP[env]):
        assert not any(
            b["role"] == "roles/iam.serviceAccountUser"
            for b in synth.resources(stack, "google_project_iam_member").values()
        )


@pytest.mark.parametrize("env", ENVS)
def test_billing_roles_for_the_terraform_runners(synth, env, settings_by_env):
    names = Names.of(settings_by_env[env])
    grants = synth.resources(BOOTSTRAP[env], "google_billing_account_iam_member").values()
    assert {(_account(g["member"], names), g["role"]) for g in grants} == set(BILLING_ROLES.items())
    assert {g["billing_account_id"] for g in grants} == {settings_by_env[env].infra.billing_account}


@pytest.mark.parametrize("env", ENVS)
def test_bucket_access_is_per_bucket(synth, env, settings_by_env):
    names = Names.of(settings_by_env[env])
    bucket_ids = {key: b["name"] for key, b in synth.resources(env, "google_storage_bucket").items()}
    grants = set()
    for binding in synth.resources(env, "google_storage_bucket_iam_member").values():
        bucket = next(name for key, name in bucket_ids.items() if key in binding["bucket"])
        grants.add((bucket, _account(binding["member"], names), binding["role"]))
    assert grants == {
        (names.bucket("dev"), "trainer", "roles/storage.objectAdmin"),
        (names.bucket("models"), "trainer", "roles/storage.objectAdmin"),  # job outputs only (condition)
        (names.bucket("models"), "trainer", "roles/storage.objectViewer"),
        (names.bucket("datasets"), "trainer", "roles/storage.objectViewer"),
        (names.bucket("models"), "service", "roles/storage.objectViewer"),
        (names.access_log_bucket, "group:cloud-storage-analytics@google.com", "roles/storage.objectCreator"),
        (names.bucket("dev"), "planner", "roles/storage.objectCreator"),
        # the lifecycle pipeline runs the steps a person ran before (infra/components/pipelines.py)
        (names.bucket("dev"), "pipelines", "roles/storage.objectAdmin"),
        (names.bucket("datasets"), "pipelines", "roles/storage.objectAdmin"),
        (names.bucket("models"), "pipelines", "roles/storage.objectAdmin"),  # job outputs only (condition)
        # the promoter alone writes registry/ (infra/components/promoter.py, infra/index_writers.py)
        (names.bucket("models"), "promoter", "roles/storage.objectAdmin"),
        (names.bucket("datasets"), "promoter", "roles/storage.objectViewer"),
        # the pipeline starter's source archives and deferrals, under dev/starter/ only (condition)
        (names.bucket("dev"), "starter", "roles/storage.objectAdmin"),
    }
    bindings = synth.resources(env, "google_storage_bucket_iam_member").values()
    plans = next(b for b in bindings if "planner" in b["member"])
    assert plans["condition"]["expression"] == (
        f'resource.name.startsWith("projects/_/buckets/{names.bucket("dev")}/objects/plans/")'
    ), "the planner writes plan summaries and nothing else"


@pytest.mark.parametrize("env", ENVS)
def test_each_environment_s_state_is_its_own(synth, env, settings_by_env):
    settings, names = settings_by_env[env], Names.of(settings_by_env[env])
    bucket = synth.one(BOOTSTRAP[env], "google_storage_bucket")
    assert bucket["name"] == settings.infra.state_bucket and bucket["versioning"] == {"enabled": True}
    assert bucket["public_access_prevention"] == "enforced"
    access = {
        (_account(b["member"], names), b["role"])
        for b in synth.resources(BOOTSTRAP[env], "google_storage_bucket_iam_member").values()
    }
    assert access == {("deployer", "roles/storage.objectAdmin"), ("planner", "roles/storage.objectViewer")}
    other = next(e for e in ENVS if e != env)
    assert settings.infra.state_bucket != settings_by_env[other].infra.state_bucket
    assert synth.stack(env)["terraform"]["backend"]["gcs"]["bucket"] == settings.infra.state_bucket
    assert "data" not in synth.stack(env) or "google_client_config" not in synth.stack(env)["data"], (
        "no access token in state"
    )
