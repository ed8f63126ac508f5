"""The unattended ramp: Cloud Scheduler runs a Cloud Run job every few minutes, the job runs one tick of
`python -m trainer ramp` (trainer/cloud/ramp.py) in the trainer image, as the promoter account.

Why a job per tick: the ramp keeps no state of its own (the registry's event log is its state), so a short job that
reads, judges, acts and exits is all it needs; nothing runs between ticks and a failed tick is simply the next
one's work. Why the promoter account: a ramp's last step promotes through the registry, and only the promoter
may write `registry/` and sign the index (issue 25); what the ramp adds to that account is least privilege on the
one service it moves: Cloud Run developer on the prediction service alone (its CANARY_PERCENT, a new revision),
actAs on the service's runtime account only (a revision runs as it), and monitoring.viewer (the fleet's PromQL).
The scheduler calls the job's `:run` as the starter account, which may invoke this job and nothing else new.
"""

from __future__ import annotations

from cdktf_cdktf_provider_google.cloud_run_v2_job import CloudRunV2Job
from cdktf_cdktf_provider_google.cloud_run_v2_job_iam_member import CloudRunV2JobIamMember
from cdktf_cdktf_provider_google.cloud_run_v2_service_iam_member import CloudRunV2ServiceIamMember
from cdktf_cdktf_provider_google.cloud_scheduler_job import CloudSchedulerJob
from cdktf_cdktf_provider_google.project_iam_member import ProjectIamMember
from cdktf_cdktf_provider_google.service_account_iam_member import ServiceAccountIamMember
from constructs import Construct

from contracts.serving import Env
from infra.components.apis import Apis
from infra.components.identity import Identity
from infra.components.images import Images
from infra.naming import Names
from infra.teardown import TeardownPolicy

RAMP_JOB = "fmnist-ramp"
RAMP_SCHEDULE = "*/5 * * * *"  # a tick every 5 minutes: each step waits at least this long for its evidence
RAMP_ACCOUNT = "promoter"  # the one identity that changes what serves (see the module docstring)
SCHEDULER_ACCOUNT = "starter"
# what the ramp's account gets here, each with why (SECURITY.md's table is generated from the synthesized stacks)
RAMP_ROLES = {
    "roles/run.developer": "on the prediction service only: a ramp step sets its CANARY_PERCENT (a new revision)",
    "roles/iam.serviceAccountUser": "on the service's runtime account only: a new revision runs as it",
    "roles/monitoring.viewer": "the fleet's evidence through Cloud Monitoring's PromQL API",
    "roles/run.invoker": "on the ramp job only, for the scheduler's account: it runs one tick",
}


class Ramp(Construct):
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
        service: object,
    ):
        super().__init__(scope, id)
        ramp = identity.member(RAMP_ACCOUNT)
        self.job = CloudRunV2Job(
            self,
            "job",
            name=RAMP_JOB,
            location=names.region,
            labels=names.labels,
            deletion_protection=teardown.cloud_run_deletion_protection,
            template={
                "task_count": 1,
                "template": {
                    "service_account": identity.email(RAMP_ACCOUNT),
                    "max_retries": 0,  # the next tick is the retry
                    "timeout": "600s",
                    "containers": [
                        {
                            "image": images.references["trainer"],
                            "command": ["python3", "-m", "trainer"],
                            "args": ["--env", names.env, "ramp"],
                            "env": [{"name": Env.FMNIST_ENV, "value": names.env}],
                            "resources": {"limits": {"cpu": "1", "memory": "2Gi"}},
                        }
                    ],
                },
            },
            depends_on=[apis["run.googleapis.com"]],
        )
        self.grants = [
            CloudRunV2ServiceIamMember(
                self,
                "moves-the-service",
                name=service.name,  # type: ignore[attr-defined]
                location=names.region,
                role="roles/run.developer",
                member=ramp,
            ),
            ServiceAccountIamMember(
                self,
                "acts-as-the-service",
                service_account_id=f"projects/{names.project}/serviceAccounts/{identity.email('service')}",
                role="roles/iam.serviceAccountUser",
                member=ramp,
            ),
            ProjectIamMember(
                self,
                "reads-promql",
                project=names.project,
                role="roles/monitoring.viewer",
                member=ramp,
            ),
            CloudRunV2JobIamMember(
                self,
                "scheduler-runs-the-job",
                name=self.job.name,
                location=names.region,
                role="roles/run.invoker",
                member=identity.member(SCHEDULER_ACCOUNT),
            ),
        ]
        self.schedule = CloudSchedulerJob(
            self,
            "schedule",
            name=f"{RAMP_JOB}-tick",
            region=names.region,
            schedule=RAMP_SCHEDULE,
            time_zone="Etc/UTC",
            description="one tick of `trainer ramp`: judge the current step, advance, promote or roll back",
            http_target={
                "uri": f"https://run.googleapis.com/v2/projects/{names.project}/locations/{names.region}/jobs/"
                f"{RAMP_JOB}:run",
                "http_method": "POST",
                "oauth_token": {
                    "service_account_email": identity.email(SCHEDULER_ACCOUNT),
                    "scope": "https://www.googleapis.com/auth/cloud-platform",
                },
            },
            retry_config={"retry_count": 0},
            depends_on=[apis["cloudscheduler.googleapis.com"], *self.grants],
        )
