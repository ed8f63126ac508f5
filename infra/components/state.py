"""The bucket holding the environment stack's Terraform state, in the environment's own project (bootstrap stack).

Why per project: state names every resource and was once readable by another environment's deployer. Here only
this environment's deployer writes it and its planner reads it (bucket-level grants).
"""

from __future__ import annotations

from cdktf_cdktf_provider_google.storage_bucket import StorageBucket, StorageBucketLifecycleRule
from cdktf_cdktf_provider_google.storage_bucket_iam_member import StorageBucketIamMember
from constructs import Construct

from infra.components.accounts import Accounts
from infra.components.apis import Apis
from infra.naming import Names
from infra.suppressions import suppress
from infra.teardown import TeardownPolicy

NONCURRENT_STATE_DAYS = 90  # earlier states stay restorable for a quarter
STATE_ACCESS = (("deployer", "roles/storage.objectAdmin"), ("planner", "roles/storage.objectViewer"))


class StateBucket(Construct):
    def __init__(
        self, scope: Construct, id: str, *, names: Names, teardown: TeardownPolicy, apis: Apis, accounts: Accounts
    ):
        super().__init__(scope, id)
        bucket_name = names.settings.infra.state_bucket
        self.bucket = StorageBucket(
            self,
            "bucket",
            name=bucket_name,
            location=names.region,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            force_destroy=teardown.bucket_force_destroy,
            labels=names.labels,
            versioning={"enabled": True},
            lifecycle_rule=[
                StorageBucketLifecycleRule(
                    action={"type": "Delete"},
                    condition={"days_since_noncurrent_time": NONCURRENT_STATE_DAYS, "with_state": "ARCHIVED"},
                )
            ],
            lifecycle=teardown.lifecycle(),
            depends_on=[apis["storage.googleapis.com"]],
        )
        suppress(
            self.bucket,
            "CKV_GCP_62",
            "The access-log bucket belongs to the environment stack, which needs this bucket first; reads and "
            "writes of state are in the Cloud Audit Logs of the deployer and planner accounts.",
        )
        for account, role in STATE_ACCESS:
            StorageBucketIamMember(
                self,
                f"{account}-{role.split('.')[-1]}",
                bucket=self.bucket.name,
                role=role,
                member=accounts.member(account),
            )
