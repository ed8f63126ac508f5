"""The unattended ramp on Google Cloud (infra/components/ramp.py), pinned on the synthesized serving stacks: Cloud
Scheduler runs a Cloud Run job every 5 minutes, the job runs `trainer ramp` in the pushed trainer image as the
promoter account, which gets developer on the prediction service alone, actAs on its runtime account
alone and monitoring.viewer; the scheduler's account may run this job only."""

from __future__ import annotations

import pytest

from infra.naming import Names
from tests.infra.conftest import ENVIRONMENTS


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_scheduler_runs_one_tick_of_trainer_ramp_as_the_promoter(synth, env, settings_by_env):
    names = Names.of(settings_by_env[env])
    stack = f"serving-{env}"
    [job] = [j for key, j in synth.resources(stack, "google_cloud_run_v2_job").items() if key.startswith("ramp_")]
    task = job["template"]["template"]
    [container] = task["containers"]
    assert container["image"].split("@")[0].endswith("/trainer")  # the digest the images stack pushed
    assert (container["command"], container["args"]) == (["python3", "-m", "trainer"], ["--env", env, "ramp"])
    assert task["service_account"] == names.service_account_email("promoter") and task["max_retries"] == 0
    schedule = synth.one(stack, "google_cloud_scheduler_job")
    assert schedule["schedule"] == "*/5 * * * *"
    target = schedule["http_target"]
    assert target["uri"] == (
        f"https://run.googleapis.com/v2/projects/{names.project}/locations/{names.region}/jobs/fmnist-ramp:run"
    )
    assert target["http_method"] == "POST"
    assert target["oauth_token"]["service_account_email"] == names.service_account_email("starter")
    [invoker] = [
        b for b in synth.resources(stack, "google_cloud_run_v2_job_iam_member").values() if "ramp" in b["name"]
    ]
    assert (invoker["role"], invoker["member"]) == ("roles/run.invoker", names.account_member("starter"))
    assert invoker["name"].startswith("${google_cloud_run_v2_job.ramp_job")  # this job, not the project


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_ramp_account_may_move_only_the_prediction_service(synth, env, settings_by_env):
    names = Names.of(settings_by_env[env])
    stack = f"serving-{env}"
    ramp = names.account_member("promoter")
    [developer] = synth.resources(stack, "google_cloud_run_v2_service_iam_member").values()
    assert (developer["role"], developer["member"]) == ("roles/run.developer", ramp)
    assert developer["name"].startswith("${google_cloud_run_v2_service.")  # the one service, not the project
    [act_as] = synth.resources(stack, "google_service_account_iam_member").values()
    assert (act_as["role"], act_as["member"]) == ("roles/iam.serviceAccountUser", ramp)
    assert act_as["service_account_id"].endswith(f"/serviceAccounts/{names.service_account_email('service')}")
    [viewer] = synth.resources(stack, "google_project_iam_member").values()
    assert (viewer["role"], viewer["member"]) == ("roles/monitoring.viewer", ramp)
