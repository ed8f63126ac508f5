"""No deploy with placeholder values: the preflight names each key, the deploy paths run it first, and the guard
variable in each stack makes a real `terraform plan` fail before any provider is called."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from infra.guard import GUARD_VARIABLE
from infra.preflight import main as preflight_main
from infra.preflight import placeholder_problems
from settings import load_config

REPO_ROOT = Path(__file__).resolve().parents[2]
REAL = {
    "FMNIST_INFRA__BILLING_ACCOUNT": "01A2B3-C4D5E6-F7A8B9",
    "FMNIST_INFRA__BUDGET_CURRENCY": "EUR",
    "FMNIST_INFRA__GITHUB_OWNER": "fmnist-team",
    "FMNIST_INFRA__ALERT_EMAIL": "oncall@fmnist.dev",
}
KEYS = ("infra.billing_account", "infra.budget_currency", "infra.github_owner", "infra.alert_email")


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_committed_configs_are_placeholders_and_each_key_is_named(env):
    problems = placeholder_problems(load_config(env, environ={}))
    assert [p.split(" ", 1)[0] for p in problems] == list(KEYS)
    assert all(f"config/{env}.yaml" in p for p in problems)


def test_real_values_pass():
    assert placeholder_problems(load_config("dev", environ=REAL)) == []


def test_the_cli_refuses_and_names_the_keys(monkeypatch, capsys):
    for name in REAL:
        monkeypatch.delenv(name, raising=False)
    assert preflight_main(["dev"]) == 1
    err = capsys.readouterr().err
    assert all(key in err for key in KEYS) and "refusing to deploy dev" in err
    for name, value in REAL.items():
        monkeypatch.setenv(name, value)
    assert preflight_main(["bootstrap-dev"]) == 0


def test_local_target_is_not_deployable(capsys):
    assert preflight_main(["local"]) == 2
    assert "nothing to deploy" in capsys.readouterr().err


def test_make_runs_the_preflight_before_every_cdktf_command():
    makefile = (REPO_ROOT / "Makefile").read_text()
    for target in ("bootstrap", "deploy", "destroy"):
        recipe = makefile.split(f"\n{target}: setup\n", 1)[1].split("\n\n", 1)[0]
        assert recipe.index("infra.preflight") < recipe.index("npx cdktf"), target
    destroy = makefile.split("\ndestroy: setup\n", 1)[1].split("\n\n", 1)[0]
    assert destroy.index("undeploy-all --yes") < destroy.index("infra.endpoint_guard") < destroy.index("cdktf destroy")


@pytest.mark.parametrize("stack", ["dev", "bootstrap-dev"])
def test_every_stack_carries_the_guard_while_placeholders_remain(synth, stack):
    variable = synth.stack(stack)["variable"][GUARD_VARIABLE]
    assert len(variable["default"]) == len(KEYS)
    assert all(key in variable["validation"][0]["error_message"] for key in KEYS)


def test_real_values_synthesize_no_guard(tmp_path):
    from infra.app import build_app, plan_environments

    build_app(plan_environments(["dev"], environ=REAL), outdir=str(tmp_path)).synth()
    for stack in ("dev", "bootstrap-dev"):
        variables = json.loads((tmp_path / "stacks" / stack / "cdk.tf.json").read_text()).get("variable", {})
        assert GUARD_VARIABLE not in variables, stack
        # the only variables left seed the service's secrets (infra/components/service_secrets.py)
        assert set(variables) <= {"service_admin_token", "service_routing_key"}, stack


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform not on PATH")
def test_terraform_plan_fails_on_the_guard_before_any_provider(synth, tmp_path):
    """The real Terraform evaluates the synthesized guard: plan stops, naming each key, with no provider loaded."""
    (tmp_path / "main.tf.json").write_text(json.dumps({"variable": synth.stack("dev")["variable"]}))
    run = {
        "cwd": tmp_path,
        "capture_output": True,
        "text": True,
        "env": {
            "CHECKPOINT_DISABLE": "1",
            "PATH": "/usr/bin:/bin:/usr/local/bin",
            # what scripts/secret_seeds.sh exports for the service's secrets (ephemeral variables)
            "TF_VAR_service_admin_token": "a" * 32,
            "TF_VAR_service_routing_key": "r" * 32,
        },
    }
    assert subprocess.run(["terraform", "init", "-input=false", "-no-color"], **run).returncode == 0
    short = {**run, "env": {**run["env"], "TF_VAR_service_routing_key": "short"}}
    refused = subprocess.run(["terraform", "plan", "-input=false", "-no-color", f"-var={GUARD_VARIABLE}=[]"], **short)
    assert refused.returncode == 1 and "TF_VAR_service_routing_key must be a random string" in refused.stderr
    planned = subprocess.run(["terraform", "plan", "-input=false", "-no-color"], **run)
    assert planned.returncode == 1
    assert "Invalid value for variable" in planned.stderr
    assert all(key in planned.stderr.replace("\n", " ") for key in KEYS)
    cleared = subprocess.run(["terraform", "plan", "-input=false", "-no-color", f"-var={GUARD_VARIABLE}=[]"], **run)
    assert cleared.returncode == 0, cleared.stderr
