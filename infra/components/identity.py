"""Service accounts for the trainer, the prediction service, the deploy pipeline and the pull-request checks.

Access to a bucket, dataset, repository or key is granted next to that resource (resource-level). Project-level
roles appear only here, each with the reason Google Cloud offers nothing narrower. No owner/editor/viewer role
anywhere (a custom checkov policy enforces it).
"""

from __future__ import annotations

from cdktf_cdktf_provider_google.project_iam_member import ProjectIamMember
from cdktf_cdktf_provider_google.service_account import ServiceAccount
from cdktf_cdktf_provider_google.service_account_iam_member import ServiceAccountIamMember
from constructs import Construct

from infra.components.apis import Apis
from infra.naming import SERVICE_ACCOUNT_SUFFIXES, Names
from infra.suppressions import suppress

DESCRIPTIONS = {
    "trainer": "Vertex AI custom jobs: reads datasets, writes models, runs and TensorBoard logs",
    "service": "Cloud Run prediction service: reads the models bucket (request logs go through stdout)",
    "deployer": "Cloud Build on deploy pushes: builds and pushes images, runs cdktf deploy",
    "checks": "Cloud Build on pull requests: tests, synth and policy scan; can write build logs only",
}

# (role, why it must be project-level)
PROJECT_ROLES = {
    "trainer": (
        ("roles/aiplatform.user", "Vertex AI custom jobs, experiments and TensorBoard runs have no resource-level IAM"),
        ("roles/bigquery.jobUser", "BigQuery jobs (the feature table load) are created in the project"),
        ("roles/logging.logWriter", "log entries are written to the project's log router"),
    ),
    "checks": (
        ("roles/logging.logWriter", "Cloud Build with a user-managed account writes build logs to the project"),
    ),
    # The deployer runs `cdktf deploy` of this whole stack: Terraform creates, changes and deletes every resource
    # type below in the project, so it needs the predefined admin role of each service at project level.
    "deployer": (
        ("roles/logging.logWriter", "Cloud Build with a user-managed account writes build logs to the project"),
        ("roles/serviceusage.serviceUsageAdmin", "enables the APIs the stack declares (google_project_service)"),
        ("roles/resourcemanager.projectIamAdmin", "manages the project-level bindings declared in this file"),
        (
            "roles/iam.serviceAccountAdmin",
            "creates these service accounts and sets their account-level bindings: "
            "a new account has no binding yet that a narrower grant could rest on",
        ),
        ("roles/cloudkms.admin", "creates the key ring, key and key bindings"),
        ("roles/storage.admin", "creates the buckets and their bindings"),
        ("roles/artifactregistry.admin", "creates the repository, its cleanup policy and bindings"),
        ("roles/bigquery.admin", "creates the feature dataset, table and dataset bindings"),
        ("roles/aiplatform.admin", "creates the endpoint, TensorBoard, feature online store and feature view"),
        ("roles/run.admin", "creates the Cloud Run service and its invoker bindings"),
        ("roles/pubsub.admin", "creates the budget topic and its publisher binding"),
        ("roles/monitoring.admin", "creates the notification channel and alert policies"),
        ("roles/cloudbuild.builds.editor", "creates the Cloud Build triggers"),
    ),
}


class Identity(Construct):
    def __init__(self, scope: Construct, id: str, *, names: Names, apis: Apis):
        super().__init__(scope, id)
        self.accounts = {
            role: ServiceAccount(
                self,
                role,
                account_id=names.service_account_id(role),
                display_name=f"fmnist {role} ({names.env})",
                description=DESCRIPTIONS[role],
                project=names.project,
                depends_on=[apis["iam.googleapis.com"]],
            )
            for role in SERVICE_ACCOUNT_SUFFIXES
        }
        self.project_bindings = {}
        for role, grants in PROJECT_ROLES.items():
            for iam_role, _why in grants:
                self.project_bindings[(role, iam_role)] = ProjectIamMember(
                    self,
                    f"{role}_{iam_role.split('/')[1].replace('.', '_')}",
                    project=names.project,
                    role=iam_role,
                    member=self.member(role),
                )
        for iam_role, manages in (
            ("roles/iam.serviceAccountAdmin", "its four service accounts"),
            ("roles/cloudbuild.builds.editor", "its Cloud Build triggers"),
        ):
            suppress(
                self.project_bindings[("deployer", iam_role)],
                "CKV_GCP_49",
                f"The deployer runs `cdktf deploy` of this stack and needs {iam_role} to manage {manages}; "
                "it can act as the stack's four accounts only (account-level actAs below), and already "
                "holds projectIamAdmin, which this does not widen.",
            )
        # The deployer attaches the runtime accounts to the resources it creates (Cloud Run, Vertex AI jobs and
        # the Cloud Build triggers): actAs on those accounts only, not on every account in the project.
        self.act_as = [
            ServiceAccountIamMember(
                self,
                f"deployer_acts_as_{role}",
                service_account_id=self.accounts[role].name,
                role="roles/iam.serviceAccountUser",
                member=self.member("deployer"),
            )
            for role in ("trainer", "service", "deployer", "checks")
        ]

    def member(self, role: str) -> str:
        return f"serviceAccount:{self.accounts[role].email}"

    def email(self, role: str) -> str:
        return self.accounts[role].email
