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
        assert "variable" not in json.loads((tmp_path / "stacks" / stack / "cdk.tf.json").read_text()), stack


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform not on PATH")
def test_terraform_plan_fails_on_the_guard_before_any_provider(synth, tmp_path):
    """The real Terraform evaluates the synthesized guard: plan stops, naming each key, with no provider loaded."""
    (tmp_path / "main.tf.json").write_text(json.dumps({"variable": synth.stack("dev")["variable"]}))
    run = {
        "cwd": tmp_path,
        "capture_output": True,
        "text": True,
        "env": {"CHECKPOINT_DISABLE": "1", "PATH": "/usr/bin:/bin:/usr/local/bin"},
    }
    assert subprocess.run(["terraform", "init", "-input=false", "-no-color"], **run).returncode == 0
    planned = subprocess.run(["terraform", "plan", "-input=false", "-no-color"], **run)
    assert planned.returncode == 1
    assert "Invalid value for variable" in planned.stderr
    assert all(key in planned.stderr.replace("\n", " ") for key in KEYS)
    cleared = subprocess.run(["terraform", "plan", "-input=false", "-no-color", f"-var={GUARD_VARIABLE}=[]"], **run)
    assert cleared.returncode == 0, cleared.stderr


@pytest.fixture
def docker_socket(tmp_path):
    """A Unix socket that answers `/_ping` like a Docker daemon."""
    import socket
    import threading

    path = tmp_path / "docker.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def answer():
        connection, _ = server.accept()
        with connection:
            connection.recv(1024)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield f"unix://{path}"
    server.close()
    thread.join(timeout=5)


def test_the_deploy_check_passes_with_a_daemon_and_a_password(docker_socket):
    from infra.preflight import deploy_tool_problems

    assert deploy_tool_problems({"DOCKER_HOST": docker_socket, "DOCKER_REGISTRY_PASS": "token"}) == []


def test_the_deploy_check_names_a_missing_daemon_and_an_empty_password(tmp_path):
    from infra.preflight import deploy_tool_problems

    problems = deploy_tool_problems({"DOCKER_HOST": f"unix://{tmp_path}/none.sock", "DOCKER_REGISTRY_PASS": " "})
    assert len(problems) == 2
    assert "DOCKER_REGISTRY_PASS is empty" in problems[0] and "gcloud auth print-access-token" in problems[0]
    assert "no Docker daemon" in problems[1]


def test_deploy_paths_check_the_daemon_and_password_before_cdktf_deploy():
    makefile = (REPO_ROOT / "Makefile").read_text()
    recipe = makefile.split("\ndeploy: setup\n", 1)[1].split("\n\n", 1)[0]
    assert (
        recipe.index("DOCKER_REGISTRY_PASS=") < recipe.index("infra.preflight --deploy") < recipe.index("cdktf deploy")
    )
    build = (REPO_ROOT / "cloudbuild-deploy.yaml").read_text()
    assert build.index("infra.preflight --deploy") < build.index("npx cdktf deploy")


def test_the_deploy_preflight_refuses_before_reading_the_config(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    monkeypatch.delenv("DOCKER_REGISTRY_PASS", raising=False)
    assert preflight_main(["--deploy", "dev"]) == 1
    err = capsys.readouterr().err
    assert "DOCKER_REGISTRY_PASS is empty" in err and "placeholder" not in err


def test_the_deploy_preflight_says_who_may_create_the_budget(monkeypatch, capsys, docker_socket):
    monkeypatch.setenv("DOCKER_HOST", docker_socket)
    monkeypatch.setenv("DOCKER_REGISTRY_PASS", "token")
    monkeypatch.setenv("FMNIST_INFRA__BILLING_ACCOUNT", "0A0A0A-0A0A0A-0A0A0A")
    monkeypatch.setenv("FMNIST_INFRA__BUDGET_CURRENCY", "EUR")
    monkeypatch.setenv("FMNIST_INFRA__GITHUB_OWNER", "someone")
    monkeypatch.setenv("FMNIST_INFRA__ALERT_EMAIL", "ops@fmnist.dev")
    monkeypatch.delenv("CLOUDSDK_AUTH_IMPERSONATE_SERVICE_ACCOUNT", raising=False)
    status = preflight_main(["--deploy", "dev"])
    err = capsys.readouterr().err
    assert status == 0, err
    assert "billing.budgets.create" in err and "project Owner" in err
