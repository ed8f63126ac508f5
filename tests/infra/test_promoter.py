"""The promoter's Cloud Run jobs (issue 25): they run as the promoter on the trainer image, and the arguments an
execution may append cannot switch the job's action or its configuration environment."""

from __future__ import annotations

import pytest

from contracts.cloud import PROMOTION_APPROVE_JOB, PROMOTION_GATE_JOB
from infra.components.ramp import RAMP_JOB
from tests.infra.conftest import ENVIRONMENTS
from trainer.cli import build_parser, main


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_appended_arguments_cannot_switch_the_jobs_action_or_environment(synth, env, capsys):
    every = {job["name"]: job for job in synth.resources(f"serving-{env}", "google_cloud_run_v2_job").values()}
    # the ramp's job runs as the promoter too; its scheduler may run it (run.invoker), never with overrides
    assert set(every) == {PROMOTION_GATE_JOB, PROMOTION_APPROVE_JOB, RAMP_JOB}
    ramp_grants = [
        b["role"]
        for b in synth.resources(f"serving-{env}", "google_cloud_run_v2_job_iam_member").values()
        if "ramp" in b["name"]
    ]
    assert ramp_grants == ["roles/run.invoker"]
    jobs = {name: job for name, job in every.items() if name != RAMP_JOB}
    commands = {name: job["template"]["template"]["containers"][0]["command"] for name, job in jobs.items()}
    assert commands[PROMOTION_GATE_JOB] == ["python3", "-m", "trainer", "--env", env, "promotion", "gate-job"]
    for name, job in jobs.items():
        assert job["template"]["template"]["service_account"].split("@")[0].endswith("-promoter")
        argv = commands[name][3:]  # what `python3 -m trainer` receives
        own = ["--model-dir", "gs://m/jobs/r/model"] if name == PROMOTION_GATE_JOB else ["--version", "v1"]
        other = ["--version", "v1"] if name == PROMOTION_GATE_JOB else ["--model-dir", "gs://m/jobs/r/model"]
        parsed = build_parser(argv[2:] + own).parse_args(argv[2:] + own)
        assert parsed.action == commands[name][-1]
        with pytest.raises(SystemExit):  # the other job's argument, or another action
            build_parser(argv[2:] + other).parse_args(argv[2:] + other)
        with pytest.raises(SystemExit, match="--env given as"):
            main([*argv, *own, "--env", "local"])
