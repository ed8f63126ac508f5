"""Issue 23, defect 7: only `images-<env>` holds the docker provider, so `<env>` and `serving-<env>` plan and
destroy without a Docker daemon; Cloud Run takes the digest that stack pushed; deploy and destroy paths run the
stacks in dependency order and its reverse."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from infra.simulate import simulate_outdir
from tests.infra.conftest import ENVIRONMENTS

REPO_ROOT = Path(__file__).resolve().parents[2]

STACKS = ("{env}", "images-{env}", "serving-{env}")


def _stacks(env: str) -> list[str]:
    return [s.format(env=env) for s in STACKS]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_environment_stack_but_images_needs_a_docker_daemon(synth, env):
    environment, images, serving = (synth.stack(s) for s in _stacks(env))
    for document in (environment, serving, synth.stack(f"bootstrap-{env}")):
        assert "docker" not in document.get("provider", {})
        assert not [t for t in document.get("resource", {}) if t.startswith("docker_")]
    assert set(images["provider"]) == {"docker"}
    assert set(images["resource"]) == {"docker_image", "docker_registry_image"}
    plan = {stack: [s for s in steps if s.walk == "plan"] for stack, steps in simulate_outdir(synth.outdir).items()}
    for stack in (*_stacks(env), f"bootstrap-{env}"):
        assert [s.problem for s in plan[stack] if s.problem] == [], stack
    assert "CKV2_FMNIST_S1" not in "".join(synth.texts.values()), "no open defect-7 note is left"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_cloud_run_runs_the_digest_the_images_stack_pushed(synth, env):
    images, serving = synth.stack(f"images-{env}"), synth.stack(f"serving-{env}")
    image = synth.one(f"serving-{env}", "google_cloud_run_v2_service")["template"]["containers"][0]["image"]
    output = re.fullmatch(r".*/service@\$\{data\.terraform_remote_state\.([^.]+)\.outputs\.([^}]+)\}", image)
    assert output, image
    remote = serving["data"]["terraform_remote_state"][output.group(1)]
    assert remote["config"] == images["terraform"]["backend"]["gcs"], "read from where images-<env> keeps state"
    push = next(n for n in images["resource"]["docker_registry_image"] if "service" in n)
    assert images["output"][output.group(2)]["value"] == f"${{docker_registry_image.{push}.sha256_digest}}"
    dependencies = {
        name: stack["dependencies"]
        for name, stack in json.loads((synth.outdir / "manifest.json").read_text())["stacks"].items()
    }
    assert dependencies[f"images-{env}"] == [env] and dependencies[f"serving-{env}"] == [f"images-{env}"]
    assert dependencies[env] == []


def _recipe(makefile: str, target: str) -> str:
    return makefile.split(f"\n{target}: setup\n", 1)[1].split("\n\n", 1)[0]


def test_deploy_runs_the_stacks_in_order_and_destroy_in_reverse_without_a_daemon():
    import yaml

    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "npx cdktf deploy $(ENV) images-$(ENV) serving-$(ENV)" in _recipe(makefile, "deploy")
    destroy = _recipe(makefile, "destroy")
    assert destroy.index("cdktf destroy serving-$(ENV)") < destroy.index(
        "cdktf destroy $(ENV) --ignore-missing-stack-dependencies"
    )
    assert "images-" not in destroy and "DOCKER_REGISTRY_PASS" not in destroy
    steps = {
        s["id"]: s["args"][-1] for s in yaml.safe_load((REPO_ROOT / "cloudbuild-deploy.yaml").read_text())["steps"]
    }
    assert 'npx cdktf deploy "${_ENV}" "images-${_ENV}" "serving-${_ENV}" --auto-approve' in steps["deploy"]
    assert steps["destroy"].index('cdktf destroy "serving-${_ENV}"') < steps["destroy"].index(
        'cdktf destroy "${_ENV}" --auto-approve --ignore-missing-stack-dependencies'
    )
    assert "DOCKER_REGISTRY_PASS" not in steps["destroy"]
    plan = yaml.safe_load((REPO_ROOT / "cloudbuild-plan.yaml").read_text())["steps"][-1]["args"][-1]
    assert 'cdktf diff "${_ENV}"' in plan and 'cdktf diff "serving-${_ENV}"' in plan
    assert "DOCKER_REGISTRY_PASS" not in plan and "images-" not in plan
