"""The dev, datasets and models buckets (names shared with settings) and the access-log bucket they log to.

All four: uniform bucket-level access, public access prevention enforced, versioning, lifecycle rules and the
stack's KMS key. Bindings are per bucket: the trainer writes dev and models and reads datasets; the prediction
service reads models.
"""

from __future__ import annotations

from cdktf_cdktf_provider_google.storage_bucket import StorageBucket, StorageBucketLifecycleRule
from cdktf_cdktf_provider_google.storage_bucket_iam_member import StorageBucketIamMember
from constructs import Construct

from infra.components.apis import Apis
from infra.components.identity import Identity
from infra.components.kms import KeyGrants
from infra.naming import BUCKET_KINDS, Names
from infra.suppressions import suppress
from infra.teardown import TeardownPolicy

TRAINER_JOB_OUTPUTS = "jobs"  # the custom jobs' base_output_dir in the models bucket
NONCURRENT_VERSION_DAYS = 30
ACCESS_LOG_DAYS = 365
DEV_OBJECT_DAYS = 180  # run records, reports and TensorBoard logs: kept half a year
# (bucket kind, account role, IAM role)
BUCKET_ACCESS = (
    ("dev", "trainer", "roles/storage.objectAdmin"),
    ("models", "trainer", "roles/storage.objectViewer"),  # writes only job outputs: TRAINER_JOB_OUTPUTS below
    ("datasets", "trainer", "roles/storage.objectViewer"),
    ("models", "service", "roles/storage.objectViewer"),
    # the promoter (infra/components/promoter.py) registers, gates and promotes: the only writer of registry/
    ("models", "promoter", "roles/storage.objectAdmin"),
    ("datasets", "promoter", "roles/storage.objectViewer"),  # the gate's pinned official test set
)


def job_outputs_only(names: Names) -> dict:
    """The IAM condition that limits a models-bucket writer to job outputs (jobs/): registry/ is the promoter's."""
    models = names.bucket("models")
    return {
        "title": "job outputs only",
        "expression": f'resource.type == "storage.googleapis.com/Bucket" || '
        f'resource.name.startsWith("projects/_/buckets/{models}/objects/{TRAINER_JOB_OUTPUTS}/")',
    }


class Storage(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        names: Names,
        teardown: TeardownPolicy,
        apis: Apis,
        kms: KeyGrants,
        identity: Identity,
    ):
        super().__init__(scope, id)
        common = {
            "location": names.region,
            "uniform_bucket_level_access": True,
            "public_access_prevention": "enforced",
            "force_destroy": teardown.bucket_force_destroy,
            "labels": names.labels,
            "versioning": {"enabled": True},
            "encryption": {"default_kms_key_name": kms.key_id},
            "lifecycle": teardown.lifecycle(),
            "depends_on": [apis["storage.googleapis.com"], kms.ready["storage"]],
        }
        noncurrent = StorageBucketLifecycleRule(
            action={"type": "Delete"},
            condition={"days_since_noncurrent_time": NONCURRENT_VERSION_DAYS, "with_state": "ARCHIVED"},
        )
        self.access_logs = StorageBucket(
            self,
            "access-logs",
            name=names.access_log_bucket,
            **common,
            lifecycle_rule=[
                noncurrent,
                StorageBucketLifecycleRule(action={"type": "Delete"}, condition={"age": ACCESS_LOG_DAYS}),
            ],
        )
        suppress(
            self.access_logs,
            "CKV_GCP_62",
            "This is the access-log bucket itself: logging it into itself would loop, and another log bucket "
            "would need its own log bucket in turn.",
        )
        # Cloud Storage usage logs are written by this Google group (documented by Cloud Storage).
        StorageBucketIamMember(
            self,
            "access-logs-writer",
            bucket=self.access_logs.name,
            role="roles/storage.objectCreator",
            member="group:cloud-storage-analytics@google.com",
        )
        self.buckets = {}
        for kind in BUCKET_KINDS:
            rules = [noncurrent]
            if kind == "dev":
                rules.append(StorageBucketLifecycleRule(action={"type": "Delete"}, condition={"age": DEV_OBJECT_DAYS}))
            self.buckets[kind] = StorageBucket(
                self,
                kind,
                name=names.bucket(kind),
                **common,
                lifecycle_rule=rules,
                logging={"log_bucket": self.access_logs.name, "log_object_prefix": names.bucket(kind)},
            )
        # The pull-request plan keeps its summary under plans/ of the dev bucket (cloudbuild-plan.yaml), nowhere else.
        StorageBucketIamMember(
            self,
            "dev-planner-plans",
            bucket=self.buckets["dev"].name,
            role="roles/storage.objectCreator",
            member=identity.member("planner"),
            condition={
                "title": "plan summaries only",
                "expression": f'resource.name.startsWith("projects/_/buckets/{names.bucket("dev")}/objects/plans/")',
            },
        )
        # The trainer's custom jobs write under jobs/ (trainer/cloud/submit.py base_output_dir) and nowhere else in
        # the models bucket: registry/ (the index and its signatures) is the promoter's (infra/index_writers.py).
        StorageBucketIamMember(
            self,
            "models-trainer-job-outputs",
            bucket=self.buckets["models"].name,
            role="roles/storage.objectAdmin",
            member=identity.member("trainer"),
            condition=job_outputs_only(names),
        )
        for kind, account, role in BUCKET_ACCESS:
            StorageBucketIamMember(
                self,
                f"{kind}-{account}-{role.split('.')[-1]}",
                bucket=self.buckets[kind].name,
                role=role,
                member=identity.member(account),
            )
