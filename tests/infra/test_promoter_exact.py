"""The promoter's and the ramp's Cloud Run jobs on the synthesized serving stacks, pinned exactly: the job each
runs, with what and as whom, who may execute which job (the approvers the config names, the approval job only),
the ramp's tick and what it waits for, and each resource's Terraform address (a renamed construct id destroys and
recreates the job or drops a grant while it is replaced)."""

from __future__ import annotations

import pytest

from contracts.cloud import PROMOTION_APPROVE_JOB, PROMOTION_GATE_JOB
from infra.naming import Names
from tests.infra.conftest import APPROVERS, ENVIRONMENTS

GATE, APPROVE = PROMOTION_GATE_JOB, PROMOTION_APPROVE_JOB
ADDRESSES = {
    f"promoter/{APPROVE}": "google_cloud_run_v2_job",
    f"promoter/{GATE}": "google_cloud_run_v2_job",
    f"promoter/{GATE}-jobsExecutorWithOverrides-0": "google_cloud_run_v2_job_iam_member",
    f"promoter/{GATE}-viewer-0": "google_cloud_run_v2_job_iam_member",
    "ramp/job": "google_cloud_run_v2_job",
    "ramp/moves-the-service": "google_cloud_run_v2_service_iam_member",
    "ramp/acts-as-the-service": "google_service_account_iam_member",
    "ramp/reads-promql": "google_project_iam_member",
    "ramp/scheduler-runs-the-job": "google_cloud_run_v2_job_iam_member",
    "ramp/schedule": "google_cloud_scheduler_job",
}


def ours(synth, stack: str) -> dict[str, tuple[str, str, dict]]:
    return {p: found for p, found in synth.by_path(stack).items() if p.startswith(("promoter/", "ramp/"))}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_promoter_and_ramp_resources_keep_their_addresses_and_waits(synth, env):
    stack = f"serving-{env}"
    assert {path: kind for path, (kind, _, _) in ours(synth, stack).items()} == ADDRESSES
    assert {**synth.waits(stack, "promoter/"), **synth.waits(stack, "ramp/")} == {
        f"promoter/{APPROVE}": ["apis/run"],
        f"promoter/{GATE}": ["apis/run"],
        "ramp/job": ["apis/run"],
        # the tick runs only once every grant it needs exists
        "ramp/schedule": [
            "apis/cloudscheduler",
            "ramp/moves-the-service",
            "ramp/acts-as-the-service",
            "ramp/reads-promql",
            "ramp/scheduler-runs-the-job",
        ],
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_promotion_job_runs_its_fixed_command_in_the_trainer_image_as_the_promoter(synth, env, settings_by_env):
    names = Names.of(settings_by_env[env])
    stack = f"serving-{env}"
    for job, action in ((GATE, "gate-job"), (APPROVE, "approve-job")):
        body = synth.body(stack, f"promoter/{job}")
        [container] = body["template"]["template"].pop("containers")
        assert body == {
            "//": body["//"],
            "depends_on": body["depends_on"],
            "name": job,
            "location": names.region,
            "labels": names.labels,
            "deletion_protection": env == "prod",  # the teardown policy: prod's jobs survive a destroy
            "template": {
                "labels": names.labels,
                "task_count": 1,
                "template": {
                    "service_account": names.service_account_email("promoter"),
                    "max_retries": 0,
                    "timeout": "3600s",
                },
            },
        }
        assert container["command"] == ["python3", "-m", "trainer", "--env", env, "promotion", action]
        assert container["resources"] == {"limits": {"cpu": "2", "memory": "4Gi"}}
        assert container["image"].startswith(f"{names.region}-docker.pkg.dev/{names.project}/")
        assert container["image"].split("@")[0].endswith("/trainer") and "sha256_digest" in container["image"]
        assert set(container) == {"command", "resources", "image"}  # no args or env an execution could not override


def executors(synth, stack: str) -> list[tuple[str, str, str, str]]:
    return sorted(
        (path, body["name"], body["role"], body["member"])
        for path, (kind, _, body) in ours(synth, stack).items()
        if kind == "google_cloud_run_v2_job_iam_member" and path.startswith("promoter/")
    )


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_only_the_pipeline_may_run_the_gate_job_and_nobody_the_approval_job_by_default(synth, env, settings_by_env):
    names = Names.of(settings_by_env[env])
    stack = f"serving-{env}"
    gate = synth.ref(stack, f"promoter/{GATE}", "name")
    assert executors(synth, stack) == [
        (
            f"promoter/{GATE}-jobsExecutorWithOverrides-0",
            gate,
            "roles/run.jobsExecutorWithOverrides",
            names.account_member("pipelines"),
        ),
        (f"promoter/{GATE}-viewer-0", gate, "roles/run.viewer", names.account_member("pipelines")),
    ]
    for path, (kind, _, body) in ours(synth, stack).items():
        if kind in ("google_cloud_run_v2_job_iam_member", "google_cloud_run_v2_service_iam_member"):
            assert body.get("location") == names.region, path  # without it, the provider's default region


def test_the_configured_approvers_may_run_the_approval_job_only(approvers_synth, settings_by_env):
    names = Names.of(settings_by_env["dev"])
    stack = "serving-dev"
    gate = approvers_synth.ref(stack, f"promoter/{GATE}", "name")
    approve = approvers_synth.ref(stack, f"promoter/{APPROVE}", "name")
    pipelines = names.account_member("pipelines")
    assert executors(approvers_synth, stack) == sorted(
        [
            (f"promoter/{GATE}-jobsExecutorWithOverrides-0", gate, "roles/run.jobsExecutorWithOverrides", pipelines),
            (f"promoter/{GATE}-viewer-0", gate, "roles/run.viewer", pipelines),
            *(
                (f"promoter/{APPROVE}-{role.split('.')[-1]}-{index}", approve, role, member)
                for index, member in enumerate(APPROVERS)
                for role in ("roles/run.jobsExecutorWithOverrides", "roles/run.viewer")
            ),
        ]
    )


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_ramp_job_and_its_tick_are_exact(synth, env, settings_by_env):
    names = Names.of(settings_by_env[env])
    stack = f"serving-{env}"
    job = synth.body(stack, "ramp/job")
    [container] = job["template"]["template"].pop("containers")
    assert (job["name"], job["location"], job["labels"], job["deletion_protection"]) == (
        "fmnist-ramp",
        names.region,
        names.labels,
        env == "prod",
    )
    assert job["template"] == {
        "task_count": 1,
        "template": {"service_account": names.service_account_email("promoter"), "max_retries": 0, "timeout": "600s"},
    }
    assert container["env"] == [{"name": "FMNIST_ENV", "value": env}]
    assert container["resources"] == {"limits": {"cpu": "1", "memory": "2Gi"}}
    tick = synth.body(stack, "ramp/schedule")
    assert (tick["name"], tick["region"], tick["time_zone"], tick["retry_config"]) == (
        "fmnist-ramp-tick",
        names.region,
        "Etc/UTC",
        {"retry_count": 0},  # the next tick is the retry
    )
    assert tick["description"] == "one tick of `trainer ramp`: judge the current step, advance, promote or roll back"
    assert tick["http_target"]["oauth_token"] == {
        "service_account_email": names.service_account_email("starter"),
        "scope": "https://www.googleapis.com/auth/cloud-platform",
    }
    runs = synth.body(stack, "ramp/scheduler-runs-the-job")
    assert (runs["name"], runs["location"]) == (synth.ref(stack, "ramp/job", "name"), names.region)
    moves = synth.body(stack, "ramp/moves-the-service")
    assert (moves["name"], moves["location"]) == (synth.ref(stack, "serving/service", "name"), names.region)
    assert synth.body(stack, "ramp/reads-promql")["project"] == names.project
    assert synth.body(stack, "ramp/acts-as-the-service")["service_account_id"] == (
        f"projects/{names.project}/serviceAccounts/{names.service_account_email('service')}"
    )
