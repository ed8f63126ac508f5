"""cloudbuild.yaml and the triggers agree, and the checks pipeline fails on findings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def build() -> dict:
    return yaml.safe_load((REPO_ROOT / "cloudbuild.yaml").read_text())


def _script(step: dict) -> str:
    return " ".join(step.get("args", []))


def test_every_trigger_substitution_is_declared(build, synth):
    for env in ("dev", "prod"):
        for trigger in synth.resources(env, "google_cloudbuild_trigger").values():
            assert set(trigger["substitutions"]) <= set(build["substitutions"]), trigger["name"]
            assert trigger["filename"] == "cloudbuild.yaml"


def test_user_managed_accounts_need_cloud_logging_only(build):
    assert build["options"]["logging"] == "CLOUD_LOGGING_ONLY"


def test_checks_run_tests_synth_and_scan_and_fail_on_findings(build):
    steps = {s["id"]: s for s in build["steps"]}
    assert "pytest" in _script(steps["tests"])
    scan = _script(steps["synth-and-scan"])
    assert "cdktf synth" in scan and "python -m infra.scan" in scan and "--junit-xml" in scan
    for step_id in ("tests", "synth-and-scan"):
        script = _script(steps[step_id])
        assert "-euo" in script and "|| true" not in script, step_id
        assert "_PIPELINE" not in script, f"{step_id} must run in every pipeline"


def test_deploy_steps_run_only_in_the_deploy_pipeline_after_the_checks(build):
    ids = [s["id"] for s in build["steps"]]
    assert ids.index("deploy") > ids.index("synth-and-scan") > ids.index("tests")
    deploy = _script(build["steps"][ids.index("deploy")])
    assert '"${_PIPELINE}" != deploy' in deploy
    assert 'cdktf deploy "${_ENV}" --auto-approve' in deploy
    assert "sha256sum -c" in deploy, "the downloaded terraform binary is verified"
