"""Deny the Vertex AI Custom Code Service Agent every object and table read and write in the project (issue 25).

Why: `roles/aiplatform.user` (trainer, pipelines, starter) includes `aiplatform.customJobs.create`, and a custom
job created without `serviceAccount` runs its container as the Custom Code Service Agent
(`service-PROJECT_NUMBER@gcp-sa-aiplatform-cc.iam.gserviceaccount.com`), whose default role reaches Cloud Storage
and BigQuery in the project (Vertex AI's "Use a custom service account" page). So any of those accounts could run
code with access to the models bucket (the registry), the state bucket and the feature tables. Vertex AI has no
project setting that forces jobs onto a custom account, and a custom job's `serviceAccount` is the creator's
choice, so the control is on the agent: an IAM deny policy (it outranks every allow policy, including a service
agent's default grant). This project's jobs always name their account (trainer/cloud/submit.py: the trainer, the
pipeline's tasks: the pipelines account) and never need the agent. Only the Custom Code agent is denied: the Vertex
AI Service Agent (gcp-sa-aiplatform) itself reads model artifacts for uploads and batch prediction and runs no
user code. In the bootstrap stack: creating a deny policy needs roles/iam.denyAdmin, which the person who applies
the bootstrap stack holds and the deployer must not (it could deny anyone).
"""

from __future__ import annotations

from cdktf_cdktf_provider_google.data_google_project import DataGoogleProject
from cdktf_cdktf_provider_google.iam_deny_policy import (
    IamDenyPolicy,
    IamDenyPolicyRules,
    IamDenyPolicyRulesDenyRule,
)
from constructs import Construct

from infra.components.apis import Apis
from infra.naming import Names

CUSTOM_CODE_AGENT = "service-{number}@gcp-sa-aiplatform-cc.iam.gserviceaccount.com"
DENIED_PERMISSIONS = (
    "storage.googleapis.com/objects.create",
    "storage.googleapis.com/objects.delete",
    "storage.googleapis.com/objects.get",
    "storage.googleapis.com/objects.list",
    "storage.googleapis.com/objects.update",
    "bigquery.googleapis.com/tables.getData",
    "bigquery.googleapis.com/tables.updateData",
)
POLICY_ID = "fmnist-deny-vertex-custom-code-agent"


def agent_principal(number: str) -> str:
    """The deny-policy identifier of a service account (IAM v2 principal format)."""
    return f"principal://iam.googleapis.com/projects/-/serviceAccounts/{CUSTOM_CODE_AGENT.format(number=number)}"


class VertexAgentDeny(Construct):
    def __init__(self, scope: Construct, id: str, *, names: Names, apis: Apis):
        super().__init__(scope, id)
        project = DataGoogleProject(
            self, "project", project_id=names.project, depends_on=[apis["cloudresourcemanager.googleapis.com"]]
        )
        self.policy = IamDenyPolicy(
            self,
            "deny",
            name=POLICY_ID,
            parent=f"cloudresourcemanager.googleapis.com%2Fprojects%2F{names.project}",
            display_name="Vertex AI custom code agent: no objects or tables",
            rules=[
                IamDenyPolicyRules(
                    description="custom jobs run without a service account must not reach the buckets or tables",
                    deny_rule=IamDenyPolicyRulesDenyRule(
                        denied_principals=[agent_principal(project.number)],
                        denied_permissions=list(DENIED_PERMISSIONS),
                    ),
                )
            ],
            depends_on=[apis["iam.googleapis.com"]],
        )
