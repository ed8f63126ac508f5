"""The bootstrap stack itself (infra/bootstrap.py), pinned value by value on the session's synthesized stacks: its
local state file, the components at their construct paths (a renamed construct is a new Terraform address: plan
destroys and recreates the key ring or an account), who administers the CMEK key, signs the index and holds the
starter's role, the note that accepts each API outside the budget, the placeholder guard and the four outputs the
person who bootstraps reads (the deployer's and planner's emails go into the Cloud Build triggers)."""

from __future__ import annotations

import pytest

from infra.components.apis import BOOTSTRAP_APIS
from infra.guard import GUARD_VARIABLE
from infra.preflight import placeholder_problems
from tests.infra.conftest import BOOTSTRAP, ENVIRONMENTS, VARIANT

COMPONENTS = ["accounts", "apis", "index_signing", "kms", "starter_role", "state", "vertex_agent"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_its_state_is_a_local_file_at_the_repository_root_named_after_the_stack(synth, env):
    backend = synth.stack(BOOTSTRAP[env])["terraform"]["backend"]
    assert backend == {"local": {"path": f"../../../terraform.bootstrap-{env}.tfstate"}}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_its_components_sit_at_their_construct_paths(synth, env):
    stack = BOOTSTRAP[env]
    paths = synth.by_path(stack)
    assert sorted({path.split("/")[0] for path in paths}) == COMPONENTS
    assert sorted(synth.stack(stack)) == ["//", "data", "output", "provider", "resource", "terraform", "variable"]
    assert sorted(path for path in paths if path.startswith("apis/")) == sorted(
        f"apis/{api.split('.')[0]}" for api in BOOTSTRAP_APIS
    )


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_deployer_administers_the_key_the_promoter_signs_and_the_starter_holds_its_role(synth, env):
    stack = BOOTSTRAP[env]
    member = {
        role: f"serviceAccount:{synth.ref(stack, f'accounts/{role}', 'email')}"
        for role in ("deployer", "promoter", "starter")
    }
    kms_admin = {k: v for k, v in synth.body(stack, "kms/admin").items() if k != "//"}
    assert kms_admin == {
        "crypto_key_id": synth.ref(stack, "kms/key", "id"),
        "member": member["deployer"],
        "role": "roles/cloudkms.admin",
    }
    signers = {path: body["member"] for path, (_, _, body) in synth.by_path(stack).items() if "signer" in path}
    assert signers == {"index_signing/signer-0": member["promoter"]}
    assert synth.body(stack, "starter_role/starter")["member"] == member["starter"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_api_carries_the_note_that_accepts_it_outside_the_budget(synth, env):
    """CKV2_FMNIST_3 wants every API watched by the budget, which the environment stack builds after this one;
    infra/checkov_baseline.py turns this exact note into the scan's baseline."""
    stack = BOOTSTRAP[env]
    notes = {
        path: body["//"].get("checkov_skip")
        for path, (kind, _, body) in synth.by_path(stack).items()
        if kind == "google_project_service"
    }
    assert notes == {
        f"apis/{api.split('.')[0]}": {
            "CKV2_FMNIST_3": f"The budget of the {env} stack watches this project; {api} is enabled here, before "
            "that stack exists, because planning it needs the API."
        }
        for api in BOOTSTRAP_APIS
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_placeholder_settings_fail_its_plan_too(synth, env, settings_by_env):
    variables = synth.stack(BOOTSTRAP[env])["variable"]
    assert list(variables) == [GUARD_VARIABLE]
    assert variables[GUARD_VARIABLE]["default"] == placeholder_problems(settings_by_env[env])
    assert variables[GUARD_VARIABLE]["validation"][0]["condition"] == f"${{length(var.{GUARD_VARIABLE}) == 0}}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_its_outputs_are_the_key_the_two_terraform_accounts_and_the_state_bucket(synth, env):
    stack = BOOTSTRAP[env]
    assert synth.stack(stack)["output"] == {
        "kms_key": {"value": synth.ref(stack, "kms/key", "id")},
        "deployer_service_account": {"value": synth.ref(stack, "accounts/deployer", "email")},
        "planner_service_account": {"value": synth.ref(stack, "accounts/planner", "email")},
        "state_bucket": {"value": synth.ref(stack, "state/bucket", "name")},
    }


def test_without_a_state_bucket_it_declares_none_and_says_local_state(variant_synth):
    stack = BOOTSTRAP[VARIANT]
    assert not [path for path in variant_synth.by_path(stack) if path.startswith("state/")]
    assert "google_storage_bucket" not in variant_synth.stack(stack)["resource"]
    outputs = variant_synth.stack(stack)["output"]
    assert outputs["state_bucket"] == {"value": "(local state)"}
    assert outputs["kms_key"] == {"value": variant_synth.ref(stack, "kms/key", "id")}
    assert variant_synth.stack(stack)["terraform"]["backend"] == {
        "local": {"path": f"../../../terraform.bootstrap-{VARIANT}.tfstate"}
    }
