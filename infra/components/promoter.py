"""The promoter: two Cloud Run jobs that run as the promoter account, the one identity that writes and signs the
registry index (issue 25).

Why jobs and not a permission on the pipeline: whoever writes `registry/index.json` decides what serves, so that
account must run only code nobody can change at run time. A Cloud Run job's code is its image (the trainer image
pushed by `cdktf deploy`, pinned by digest) and its fixed `command`; an execution may override only the
arguments and environment (`run.jobs.runWithOverrides`), which the promoter's command treats as untrusted: it takes
one model directory or one version id, refuses settings, credentials, endpoints and Python variables in its
environment that differ from the image's (trainer/cloud/promotion.py), and re-runs the paired gate itself on the
pinned official test set. (Not `python3 -I`: the image finds its code through PYTHONPATH=/app.)
Why two jobs: an execution cannot tell the job who started it, so "the pipeline may ask, only an approver may
promote over the gate's waiting state" is IAM on two jobs: the gate job (the pipeline, and `trainer rollout` run by
the pipeline's account, may execute it; it promotes only when `registry.promote_pipeline_runs`) and the approval job
(only `infra.promotion_approvers` may execute it). Nobody who runs user-controlled code (trainer, pipelines, starter,
Workbench, pull-request builds) may act as the promoter: the deployer alone holds actAs on it, because it creates
these jobs and already decides the code they run (it builds the trainer image from the main branch).
"""

from __future__ import annotations

from cdktf_cdktf_provider_google.cloud_run_v2_job import CloudRunV2Job
from cdktf_cdktf_provider_google.cloud_run_v2_job_iam_member import CloudRunV2JobIamMember
from constructs import Construct

from contracts.cloud import PROMOTION_APPROVE_JOB, PROMOTION_GATE_JOB, PROMOTION_JOB_ACTIONS, promotion_job_command
from infra.components.apis import Apis
from infra.components.identity import Identity
from infra.components.images import Images
from infra.naming import Names
from infra.teardown import TeardownPolicy

PROMOTER = "promoter"
# what the container runs; `trainer promotion` (trainer/cloud/promotion.py) names the two job actions
JOB_ACTIONS = PROMOTION_JOB_ACTIONS
# run.jobs.run + runWithOverrides (the model directory or version) + executions.cancel; run.viewer on the job adds
# run.executions.get, which the requester polls until the execution ends
EXECUTOR_ROLES = ("roles/run.jobsExecutorWithOverrides", "roles/run.viewer")
GATE_REQUESTERS = ("pipelines",)  # the lifecycle pipeline's promote step (trainer/cloud/promotion.py request)
JOB_TIMEOUT = "3600s"  # export re-evaluates and re-exports, the gate scores two models on 10,000 images
JOB_CPU, JOB_MEMORY = "2", "4Gi"


def job_command(names: Names, job: str) -> list[str]:
    """The fixed command of a promotion job: executions may append arguments, never change this."""
    return promotion_job_command(names.env, job)


class Promoter(Construct):
    """The gate and approval jobs on the trainer image, and who may execute each."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        names: Names,
        teardown: TeardownPolicy,
        apis: Apis,
        identity: Identity,
        images: Images,
    ):
        super().__init__(scope, id)
        self.jobs = {
            job: CloudRunV2Job(
                self,
                job,
                name=job,
                location=names.region,
                labels=names.labels,
                deletion_protection=teardown.cloud_run_deletion_protection,
                template={
                    "labels": names.labels,
                    "task_count": 1,
                    "template": {
                        "service_account": identity.email(PROMOTER),
                        "max_retries": 0,  # a refusal is an answer, not a fault to retry
                        "timeout": JOB_TIMEOUT,
                        "containers": [
                            {
                                "image": images.references["trainer"],
                                "command": job_command(names, job),
                                "resources": {"limits": {"cpu": JOB_CPU, "memory": JOB_MEMORY}},
                            }
                        ],
                    },
                },
                depends_on=[apis["run.googleapis.com"]],
            )
            for job in JOB_ACTIONS
        }
        executors = {
            PROMOTION_GATE_JOB: [identity.member(account) for account in GATE_REQUESTERS],
            PROMOTION_APPROVE_JOB: list(names.settings.infra.promotion_approvers),
        }
        self.executors = [
            CloudRunV2JobIamMember(
                self,
                f"{job}-{role.split('.')[-1]}-{index}",
                name=self.jobs[job].name,
                location=names.region,
                role=role,
                member=member,
            )
            for job, members in executors.items()
            for index, member in enumerate(members)
            for role in EXECUTOR_ROLES
        ]
