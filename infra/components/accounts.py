"""The stack's service accounts and the rights of the two accounts that run Terraform (bootstrap stack).

Why here and not in the environment stack: the deployer applies the environment stack, so an account that
managed its own bindings could grant itself anything. Here a person creates the accounts once; the deployer gets
the service admin roles it needs, actAs on the stack's accounts only (no service-account admin: it creates no
account), and projectIamAdmin under a condition that lets it grant exactly the roles infra/components/identity.py
declares. The planner reads everything and writes nothing: `cdktf diff` in pull requests.
"""

from __future__ import annotations

import json

from cdktf_cdktf_provider_google.billing_account_iam_member import BillingAccountIamMember
from cdktf_cdktf_provider_google.project_iam_member import ProjectIamMember
from cdktf_cdktf_provider_google.service_account import ServiceAccount
from cdktf_cdktf_provider_google.service_account_iam_member import ServiceAccountIamMember
from constructs import Construct

from infra.components.apis import Apis
from infra.components.identity import granted_project_roles
from infra.naming import WORKBENCH_SUFFIX, Names, stack_accounts
from infra.suppressions import suppress

DESCRIPTIONS = {
    "trainer": "Vertex AI custom jobs: reads datasets, writes models, runs and TensorBoard logs",
    "service": "Cloud Run prediction service: reads the models bucket (request logs go through stdout)",
    "deployer": "Cloud Build on deploy pushes: builds and pushes images, runs cdktf deploy",
    "checks": "Cloud Build on pull requests: tests, synth and policy scan; can write build logs only",
    "promoter": "the promotion jobs: runs the gate, alone writes and signs the registry index",
    "planner": "Cloud Build on pull requests: cdktf diff with read-only access and the state reader role",
    WORKBENCH_SUFFIX: "Vertex AI Workbench: reads datasets and models, writes the dev bucket, calls the service",
    # the lifecycle pipeline's accounts (infra/components/pipelines.py)
    "pipelines": "Vertex AI Pipelines runs of the lifecycle: the steps' buckets, features, Vertex AI",
    "starter": "starts lifecycle pipeline runs (schedule, new data, drift) as the pipelines account",
}
IAM_ADMIN = "roles/resourcemanager.projectIamAdmin"
# Roles whose holder can change who holds which role in the project: each carries an IAM condition.
GRANTING_ROLES = frozenset({IAM_ADMIN, "roles/iam.securityAdmin", "roles/owner"})

# (role, why it must be project-level). The deployer applies the environment stack: Terraform creates, changes and
# deletes every resource type below in the project, so it needs the predefined admin role of each service.
DEPLOYER_ROLES = (
    ("roles/logging.logWriter", "Cloud Build with a user-managed account writes build logs to the project"),
    ("roles/serviceusage.serviceUsageAdmin", "enables the APIs and creates the service agents the stack declares"),
    (IAM_ADMIN, "grants the project-level roles of identity.py, and only those (IAM condition)"),
    ("roles/storage.admin", "creates the buckets and their bindings"),
    ("roles/artifactregistry.admin", "creates the repository, its cleanup policy and bindings"),
    ("roles/bigquery.admin", "creates the feature dataset, table and dataset bindings"),
    ("roles/aiplatform.admin", "creates the endpoint, TensorBoard, feature online store and feature view"),
    ("roles/run.admin", "creates the Cloud Run service and its invoker bindings"),
    ("roles/pubsub.admin", "creates the budget, drift and new-data topics and their publisher bindings"),
    ("roles/monitoring.admin", "creates the notification channel and alert policies"),
    ("roles/cloudbuild.builds.editor", "creates the Cloud Build triggers"),
    # the lifecycle pipeline's starter and triggers (infra/components/pipelines.py)
    ("roles/cloudfunctions.admin", "creates the starter function of the lifecycle pipeline"),
    ("roles/eventarc.admin", "creates the new-data and drift triggers of the lifecycle pipeline"),
    ("roles/cloudscheduler.admin", "creates the weekly schedule of the lifecycle pipeline"),
)
# Read-only roles for `terraform plan` (refresh reads every resource and its IAM policy).
PLANNER_ROLES = (
    ("roles/logging.logWriter", "Cloud Build with a user-managed account writes build logs to the project"),
    ("roles/iam.securityReviewer", "reads the IAM policy of every resource the plan refreshes"),
    (
        "roles/serviceusage.serviceUsageConsumer",
        "reads the enabled APIs, and serviceusage.services.use: the budget's provider names the project as quota "
        "project (X-Goog-User-Project), which a Viewer may not",
    ),
    ("roles/iam.serviceAccountViewer", "reads the stack's service accounts"),
    ("roles/cloudkms.viewer", "reads the key ring and key"),
    (
        "roles/cloudkms.publicKeyViewer",
        "reads the registry index signing key's public key, which serving-<env> reads at plan (issue 25)",
    ),
    ("roles/storage.bucketViewer", "reads bucket metadata (not objects)"),
    ("roles/artifactregistry.reader", "reads the repository and the pushed image digests"),
    ("roles/bigquery.metadataViewer", "reads the dataset and table definitions"),
    ("roles/aiplatform.viewer", "reads the endpoint, TensorBoard and feature store"),
    ("roles/run.viewer", "reads the Cloud Run service"),
    ("roles/pubsub.viewer", "reads the budget topic"),
    ("roles/monitoring.viewer", "reads the notification channel and alert policies"),
    ("roles/cloudbuild.builds.viewer", "reads the Cloud Build triggers"),
    # the lifecycle pipeline's starter and triggers (infra/components/pipelines.py)
    ("roles/cloudfunctions.viewer", "reads the starter function of the lifecycle pipeline"),
    ("roles/eventarc.viewer", "reads the new-data and drift triggers of the lifecycle pipeline"),
    ("roles/cloudscheduler.viewer", "reads the weekly schedule of the lifecycle pipeline"),
)
# Only with `infra.workbench.enabled` (infra/components/workbench.py): what the deployer needs to create the
# instance and the network around it, and what the planner needs to read them.
WORKBENCH_DEPLOYER_ROLES = (
    ("roles/notebooks.admin", "creates the Vertex AI Workbench instance"),
    ("roles/compute.networkAdmin", "creates the Workbench network, subnet, router and Cloud NAT"),
    ("roles/compute.securityAdmin", "creates the Workbench network's deny-all ingress firewall rule"),
)
WORKBENCH_PLANNER_ROLES = (
    ("roles/notebooks.viewer", "reads the Vertex AI Workbench instance"),
    ("roles/compute.networkViewer", "reads the Workbench network, subnet, router, Cloud NAT and firewall rule"),
)
# (account, the account it acts as) -> why. Account-level actAs between stack accounts (the lifecycle pipeline's
# chain): here because setting a service account's IAM policy is service-account admin, which the deployer lacks.
ACCOUNT_ACT_AS = {
    ("pipelines", "trainer"): "the pipeline's training step submits a Vertex AI custom job as the trainer",
    ("pipelines", "service"): "the pipeline's deploy-model and batch prediction steps attach the service account",
    ("starter", "pipelines"): "the starter creates pipeline runs that run as the pipelines account",
}
# The planner has none: billing.viewer on the billing account reads every project's costs, and pull-request code
# runs as the planner; its plan does not refresh (cloudbuild-plan.yaml), so it never reads the budget (issue 25).
BILLING_ROLES = {"deployer": "roles/billing.costsManager"}


def grant_limit_condition(roles: list[str]) -> dict:
    """The documented IAM condition that limits which roles a projectIamAdmin may grant or revoke."""
    return {
        "title": "grants only the stack's roles",
        "description": "the roles infra/components/identity.py grants at project level, and nothing else",
        "expression": f"api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly({json.dumps(roles)})",
    }


class Accounts(Construct):
    def __init__(self, scope: Construct, id: str, *, names: Names, apis: Apis):
        super().__init__(scope, id)
        infra = names.settings.infra
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
            for role in stack_accounts(names.settings)
        }
        deployer_roles, planner_roles = DEPLOYER_ROLES, PLANNER_ROLES
        if infra.workbench.enabled:
            deployer_roles = (*deployer_roles, *WORKBENCH_DEPLOYER_ROLES)
            planner_roles = (*planner_roles, *WORKBENCH_PLANNER_ROLES)
        self.project_bindings = {}
        for account, grants in (("deployer", deployer_roles), ("planner", planner_roles)):
            for iam_role, _why in grants:
                condition = grant_limit_condition(granted_project_roles()) if iam_role in GRANTING_ROLES else None
                self.project_bindings[(account, iam_role)] = ProjectIamMember(
                    self,
                    f"{account}_{iam_role.split('/')[1].replace('.', '_')}",
                    project=names.project,
                    role=iam_role,
                    member=self.member(account),
                    condition=condition,
                    depends_on=[apis["cloudresourcemanager.googleapis.com"]],
                )
        suppress(
            self.project_bindings[("deployer", "roles/cloudbuild.builds.editor")],
            "CKV_GCP_49",
            "The deployer runs `cdktf deploy` and manages the Cloud Build triggers; the builds run as the stack's "
            "accounts, on which it holds actAs only (account-level, below), and it creates no account.",
        )
        # The deployer attaches the stack's accounts to what it creates (Cloud Run, Vertex AI jobs, the Cloud Build
        # triggers): actAs on those accounts only, not on every account in the project.
        self.act_as = [
            ServiceAccountIamMember(
                self,
                f"deployer_acts_as_{role}",
                service_account_id=self.accounts[role].name,
                role="roles/iam.serviceAccountUser",
                member=self.member("deployer"),
            )
            for role in stack_accounts(names.settings)
        ]
        # The Workbench's users open its JupyterLab by acting as its account (the deployer cannot grant this: it
        # holds no IAM admin on accounts).
        self.act_as += [
            ServiceAccountIamMember(
                self,
                f"workbench_user_{index}",
                service_account_id=self.accounts[WORKBENCH_SUFFIX].name,
                role="roles/iam.serviceAccountUser",
                member=user,
            )
            for index, user in enumerate(infra.workbench.users if infra.workbench.enabled else (), start=1)
        ]
        self.account_act_as = {
            (who, on): ServiceAccountIamMember(
                self,
                f"{who}_acts_as_{on}",
                service_account_id=self.accounts[on].name,
                role="roles/iam.serviceAccountUser",
                member=self.member(who),
            )
            for who, on in ACCOUNT_ACT_AS
        }
        self.billing = []
        if infra.grant_billing_roles and infra.billing_account:
            self.billing = [
                BillingAccountIamMember(
                    self,
                    f"{account}_billing",
                    billing_account_id=infra.billing_account,
                    role=role,
                    member=self.member(account),
                    depends_on=[apis["cloudbilling.googleapis.com"]],
                )
                for account, role in BILLING_ROLES.items()
            ]

    def member(self, role: str) -> str:
        return f"serviceAccount:{self.accounts[role].email}"
