"""The pipeline starter's custom role (issue 25, least privilege round two), in the bootstrap stack.

Why custom: `roles/aiplatform.user` would let the starter create custom jobs, endpoints and models, and a custom
job that runs as the Vertex AI service agent. Starting and listing runs needs three permissions (Vertex AI's REST
reference: `pipelineJobs.create` and `pipelineJobs.list` on the location, `pipelineJobs.get` on the run). The rest of
what creating the run needs is granted where it belongs, not here: actAs on the pipelines account (an account-level
binding, infra/components/accounts.py ACCOUNT_ACT_AS), reading the template (artifactregistry.reader on the KFP
repository), and the key (Vertex AI's own agent encrypts the run; the caller needs no KMS permission).

Why the bootstrap stack: creating a role is iam.roles.create (Role Administrator), which the deployer does not hold,
and granting it here keeps the deployer's "grants only these roles" condition free of a project-specific name.
"""

from __future__ import annotations

from cdktf_cdktf_provider_google.project_iam_custom_role import ProjectIamCustomRole
from cdktf_cdktf_provider_google.project_iam_member import ProjectIamMember
from constructs import Construct

from contracts.cloud import STARTER_ROLE
from infra.components.apis import Apis
from infra.naming import Names

# permission -> why the starter needs it (starter/vertex.py makes exactly these calls)
PERMISSIONS = {
    "aiplatform.pipelineJobs.create": "starts a lifecycle run (POST .../pipelineJobs?pipelineJobId=...)",
    "aiplatform.pipelineJobs.list": "lists the active runs before starting one (GET .../pipelineJobs?filter=...)",
    "aiplatform.pipelineJobs.get": "reads one run (a person checking what the starter started, as this account)",
}


class StarterRole(Construct):
    def __init__(self, scope: Construct, id: str, *, names: Names, apis: Apis, member: str):
        super().__init__(scope, id)
        self.role = ProjectIamCustomRole(
            self,
            "role",
            project=names.project,
            role_id=STARTER_ROLE,
            title="fmnist pipeline starter",
            description="start and list the lifecycle's Vertex AI pipeline runs, nothing else",
            permissions=sorted(PERMISSIONS),
            stage="GA",
            depends_on=[apis["iam.googleapis.com"], apis["cloudresourcemanager.googleapis.com"]],
        )
        self.binding = ProjectIamMember(
            self,
            "starter",
            project=names.project,
            role=names.starter_role,  # the role's name, spelled out: the IAM table (SECURITY.md) shows it as granted
            member=member,
            depends_on=[apis["cloudresourcemanager.googleapis.com"], self.role],
        )
