"""The stacks after `<env>` (infra/images_stack.py, infra/serving_stack.py) and where every environment stack keeps
its state (infra/backend.py), pinned exactly on the synthesized stacks: each stack's state bucket and prefix (a
wrong prefix makes two stacks share one state: one's apply would plan the other's resources away), the order
between the stacks, the image references the images stack outputs, the APIs the serving stack enables again with
the policy scan's reason, and the service's URL."""

from __future__ import annotations

import json

import pytest

from infra.bootstrap import local_state_path
from infra.naming import Names
from tests.infra.conftest import ENVIRONMENTS, VARIANT

SERVING_APIS = ("run", "cloudkms", "secretmanager", "cloudscheduler")


def _stacks(env: str) -> tuple[str, str, str]:
    return env, f"images-{env}", f"serving-{env}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_environment_stack_keeps_its_state_in_the_bucket_under_its_own_prefix(synth, env, settings_by_env):
    bucket = settings_by_env[env].infra.state_bucket
    for stack in _stacks(env):
        assert synth.stack(stack)["terraform"]["backend"] == {
            "gcs": {"bucket": bucket, "prefix": f"fmnist-mlops/{stack}"}
        }, stack
    # Cloud Run reads the images stack's outputs from where that stack keeps its state
    assert synth.stack(f"serving-{env}")["data"]["terraform_remote_state"] == {
        f"cross-stack-reference-input-images-{env}": {
            "backend": "gcs",
            "config": {"bucket": bucket, "prefix": f"fmnist-mlops/images-{env}"},
            "workspace": "${terraform.workspace}",
        }
    }


def test_without_a_state_bucket_each_environment_stack_keeps_its_own_local_state_file(variant_synth):
    paths = set()
    for stack in _stacks(VARIANT):
        backend = variant_synth.stack(stack)["terraform"]["backend"]
        assert backend == {"local": {"path": local_state_path(stack)}}, stack
        paths.add(backend["local"]["path"])
    assert len(paths) == 3, "one state file per stack"


def test_the_stacks_run_in_order_environment_images_serving(synth):
    manifest = json.loads((synth.outdir / "manifest.json").read_text())
    assert {name: stack["dependencies"] for name, stack in manifest["stacks"].items()} == {
        "bootstrap-dev": [],
        "bootstrap-prod": [],
        "dev": [],
        "prod": [],
        "images-dev": ["dev"],
        "images-prod": ["prod"],
        "serving-dev": ["images-dev"],
        "serving-prod": ["images-prod"],
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_images_stack_outputs_each_image_by_the_digest_it_pushed(synth, env, settings_by_env):
    names, stack = Names.of(settings_by_env[env]), f"images-{env}"
    repository = f"{names.region}-docker.pkg.dev/{names.project}/fmnist-mlops-{env}-images"
    outputs = {k: v for k, v in synth.stack(stack)["output"].items() if not k.startswith("cross-stack-output-")}
    assert outputs == {
        f"{image}_image": {"value": f"{repository}/{image}@{synth.ref(stack, f'images/{image}-push', 'sha256_digest')}"}
        for image in ("service", "trainer")
    }
    # the guard against deploying placeholder settings sits on this stack too
    assert set(synth.stack(stack)["variable"]) == {"placeholder_settings"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_serving_stack_enables_its_apis_again_and_outputs_the_service_url(synth, env, settings_by_env):
    names, stack = Names.of(settings_by_env[env]), f"serving-{env}"
    apis = {p: b for p, (kind, _, b) in synth.by_path(stack).items() if kind == "google_project_service"}
    assert apis == {
        f"apis/{api}": {
            "//": {
                "checkov_skip": {
                    "CKV2_FMNIST_3": f"The {env} stack enables {api}.googleapis.com first and its budget watches "
                    "this project; it is enabled again here so that the service depends on its API inside this "
                    "stack's graph."
                },
                "metadata": apis[f"apis/{api}"]["//"]["metadata"],
            },
            "disable_dependent_services": False,
            "disable_on_destroy": False,
            "project": names.project,
            "service": f"{api}.googleapis.com",
        }
        for api in SERVING_APIS
    }
    assert synth.stack(stack)["output"] == {"service_url": {"value": synth.ref(stack, "serving/service", "uri")}}
    assert synth.stack(stack)["provider"] == {
        "google": [{"default_labels": names.labels, "project": names.project, "region": names.region}]
    }
    assert set(synth.stack(stack)["variable"]) == {
        "placeholder_settings",
        "service_admin_token",
        "service_routing_key",
    }
    # without the Workbench, Cloud Run's only grant in this stack is the ramp's
    invokers = {
        p for p, (kind, _, _) in synth.by_path(stack).items() if kind == "google_cloud_run_v2_service_iam_member"
    }
    assert invokers == {"ramp/moves-the-service"}
