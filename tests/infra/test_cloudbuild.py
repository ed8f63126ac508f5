"""The three Cloud Build files and the triggers agree: checks run unprivileged, the planner only plans, the
deployer only deploys, and every deploy path runs the preflight and a Terraform checked against a pinned sum."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from infra.components.cicd import BUILD_FILES

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def builds() -> dict[str, dict]:
    return {pipeline: yaml.safe_load((REPO_ROOT / name).read_text()) for pipeline, name in BUILD_FILES.items()}


def _steps(build: dict) -> dict[str, str]:
    return {s["id"]: " ".join(s.get("args", [])) for s in build["steps"]}


def test_every_trigger_names_an_existing_file_declaring_its_substitutions(builds, synth):
    by_file = {name: builds[pipeline] for pipeline, name in BUILD_FILES.items()}
    for env in ("dev", "prod"):
        for trigger in synth.resources(env, "google_cloudbuild_trigger").values():
            build = by_file[trigger["filename"]]
            assert set(trigger["substitutions"]) <= set(build["substitutions"]), trigger["name"]


def test_user_managed_accounts_need_cloud_logging_only(builds):
    assert {b["options"]["logging"] for b in builds.values()} == {"CLOUD_LOGGING_ONLY"}


def test_each_trigger_runs_as_its_own_account(synth, settings_by_env):
    project = settings_by_env["dev"].project_id
    accounts = {
        t["filename"]: t["service_account"] for t in synth.resources("dev", "google_cloudbuild_trigger").values()
    }
    assert accounts == {
        BUILD_FILES[
            pipeline
        ]: f"projects/{project}/serviceAccounts/fmnist-mlops-dev-{suffix}@{project}.iam.gserviceaccount.com"
        for pipeline, suffix in (("checks", "ci-checks"), ("plan", "planner"), ("deploy", "deployer"))
    }


def test_checks_run_tests_synth_and_scan_and_fail_on_findings(builds):
    steps = _steps(builds["checks"])
    assert "pytest" in steps["tests"]
    assert "cdktf synth" in steps["synth-and-scan"] and "python -m infra.scan" in steps["synth-and-scan"]
    for step_id in ("tests", "synth-and-scan"):
        assert "-euo" in steps[step_id] and "|| true" not in steps[step_id], step_id
    assert "cdktf deploy" not in " ".join(steps.values()), "the checks account deploys nothing"


def test_the_deployer_runs_no_tests_and_starts_with_the_preflight(builds):
    steps = _steps(builds["deploy"])
    assert "pytest" not in " ".join(steps.values()), "tests run in the unprivileged checks build"
    assert "dev]" not in steps["install"] and "'.[infra]'" in steps["install"]
    ids = list(steps)
    assert ids.index("preflight") < ids.index("deploy") < ids.index("destroy")
    assert "python -m infra.preflight" in steps["preflight"]
    assert 'cdktf deploy "${_ENV}" "images-${_ENV}" "serving-${_ENV}" --auto-approve' in steps["deploy"]


def test_the_deploy_publishes_both_pipeline_templates_tagged_latest_and_the_commit(builds):
    """What `make pipeline` writes is what `lifecycle publish` uploads (tests/lifecycle/test_publish.py checks the
    upload request itself), after the deploy that creates the KFP repository."""
    from lifecycle.orchestration.compile import DEFAULT_OUTPUT
    from lifecycle.orchestration.publish import TEMPLATES

    steps = _steps(builds["deploy"])
    ids = list(steps)
    assert ids.index("deploy") < ids.index("publish-pipelines") < ids.index("destroy")
    publish = steps["publish-pipelines"]
    assert 'if [ "${_ACTION}" != deploy ]; then exit 0; fi' in publish and "-euo" in publish
    assert 'make pipeline ENV="${_ENV}"' in publish
    assert "make pipeline-venv" in steps["install"]  # each step is a fresh container: python3-venv is in this one
    assert 'python -m lifecycle publish --env "${_ENV}" --tag "${COMMIT_SHA}"' in publish
    makefile = (REPO_ROOT / "Makefile").read_text()
    recipe = makefile.split("\npipeline: ", 1)[1].split("\n\n", 1)[0]
    assert TEMPLATES[0] == DEFAULT_OUTPUT and f"--output {TEMPLATES[1]}" in recipe


def test_destroy_undeploys_and_refuses_while_models_remain(builds):
    destroy = _steps(builds["deploy"])["destroy"]
    order = [destroy.index(s) for s in ("undeploy-all --yes", "infra.endpoint_guard", "cdktf destroy")]
    assert order == sorted(order)


def test_the_plan_is_read_only_and_kept_as_an_artifact(builds):
    plan = builds["plan"]
    # the planner cannot write the state lock, and reads the state rather than every live resource (no refresh)
    assert "TF_CLI_ARGS_plan=-lock=false -refresh=false" in plan["options"]["env"]
    assert 'cdktf diff "${_ENV}"' in _steps(plan)["plan"]
    assert plan["artifacts"]["objects"]["location"].startswith("gs://${_PLAN_BUCKET}/plans/")
    assert "cdktf deploy" not in " ".join(_steps(plan).values())


def test_terraform_is_verified_against_a_checksum_kept_in_the_repository(builds):
    script = (REPO_ROOT / "scripts" / "install_terraform.sh").read_text()
    assert re.search(r"^TERRAFORM_SHA256=[0-9a-f]{64}$", script, re.M)
    assert "sha256sum -c" in script and 'SHA256SUMS"' not in script and 'curl -fsSLo "$archive"' in script
    assert script.count("curl ") == 1, "only the archive is downloaded, never its checksum"
    for pipeline in ("plan", "deploy"):
        uses = [s for s in _steps(builds[pipeline]).values() if "cdktf diff" in s or "cdktf deploy" in s]
        assert uses and all("scripts/install_terraform.sh" in s for s in uses), pipeline


def test_no_token_is_passed_through_terraform(builds):
    """Only the deploy pushes images (images-<env>): it takes the token from the metadata server, never from state;
    the plan and the destroy run only daemon-free stacks and get no token at all (issue 23, defect 7)."""
    for pipeline in ("plan", "deploy"):
        for step in _steps(builds[pipeline]).values():
            if "npx cdktf deploy" in step:
                assert 'DOCKER_REGISTRY_PASS="$$(bash scripts/metadata_token.sh)"' in step, pipeline
            elif "npx cdktf" in step:
                assert "DOCKER_REGISTRY_PASS" not in step, pipeline
