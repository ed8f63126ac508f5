"""Project-level roles the environment stack grants to the trainer, the pull-request checks account, the lifecycle
pipeline's accounts and service agents.

The service accounts themselves, and the deployer's and planner's roles, belong to the bootstrap stack
(infra/components/accounts.py): the deployer runs this stack, so it must not manage its own rights. Access to a
bucket, dataset, repository or key is granted next to that resource (resource-level); project-level roles appear
only here, each with the reason Google Cloud offers nothing narrower. The deployer may grant exactly these roles
(an IAM condition on its projectIamAdmin lists them). No owner/editor/viewer role anywhere (a custom policy).
"""

from __future__ import annotations

from cdktf_cdktf_provider_google.project_iam_member import ProjectIamMember
from constructs import Construct

from infra.components.apis import Apis
from infra.naming import Names

# (role, why it must be project-level)
PROJECT_ROLES = {
    "trainer": (
        ("roles/aiplatform.user", "Vertex AI custom jobs, experiments and TensorBoard runs have no resource-level IAM"),
        ("roles/bigquery.jobUser", "BigQuery jobs (the feature table load) are created in the project"),
        ("roles/logging.logWriter", "log entries are written to the project's log router"),
    ),
    "service": (
        (
            "roles/monitoring.metricWriter",
            "the Managed Service for Prometheus sidecar writes the instance's metrics; time series have no "
            "resource-level IAM",
        ),
    ),
    "checks": (
        ("roles/logging.logWriter", "Cloud Build with a user-managed account writes build logs to the project"),
    ),
    # the lifecycle pipeline's accounts (infra/components/pipelines.py)
    "pipelines": (
        ("roles/aiplatform.user", "pipeline, custom and batch prediction jobs, model uploads and feature view syncs"),
        ("roles/bigquery.jobUser", "the feature table's load job is created in the project"),
        ("roles/logging.logWriter", "pipeline tasks write their logs to the project's log router"),
    ),
    # Starting runs is its custom role (bootstrap stack, infra/components/starter_role.py); invoking the function
    # is run.invoker on that function alone (infra/components/starter_function.py).
    "starter": (
        ("roles/eventarc.eventReceiver", "Eventarc triggers need their account to receive events"),
        ("roles/logging.logWriter", "the function's logs, and its build's (it is the build account too)"),
    ),
}
# Project-level roles of Google-managed service agents (infra/components/service_agents.py), granted by the construct
# that needs them: (agent, role) -> why.
AGENT_PROJECT_ROLES = {
    ("storage", "roles/pubsub.publisher"): "Cloud Storage publishes the datasets bucket's notification of raw/_COMMIT "
    "to the new-data topic (infra/components/pipelines.py)",
}


def granted_project_roles() -> list[str]:
    """Every role this stack grants at project level: what the deployer's IAM condition allows it to grant."""
    accounts = {role for grants in PROJECT_ROLES.values() for role, _ in grants}
    return sorted(accounts | {role for _agent, role in AGENT_PROJECT_ROLES})


class Identity(Construct):
    def __init__(self, scope: Construct, id: str, *, names: Names, apis: Apis):
        super().__init__(scope, id)
        self.names = names
        self.project_bindings = {}
        for account, grants in PROJECT_ROLES.items():
            for iam_role, _why in grants:
                self.project_bindings[(account, iam_role)] = ProjectIamMember(
                    self,
                    f"{account}_{iam_role.split('/')[1].replace('.', '_')}",
                    project=names.project,
                    role=iam_role,
                    member=self.member(account),
                    depends_on=[apis["cloudresourcemanager.googleapis.com"]],
                )

    def member(self, role: str) -> str:
        return self.names.account_member(role)

    def email(self, role: str) -> str:
        return self.names.service_account_email(role)
