"""The pipeline starter's custom role (infra/components/starter_role.py) on the synthesized bootstrap stacks, pinned
where test_pipelines.py checks only the permissions: the role's id, title, description and launch stage, the one
binding of it and to whom, what each waits for, and both Terraform addresses (a renamed construct id destroys and
recreates the role or the grant: the starter cannot start a run while it is replaced)."""

from __future__ import annotations

import pytest

from infra.naming import Names
from tests.infra.conftest import BOOTSTRAP, ENVIRONMENTS


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_starter_s_role_and_its_one_binding_are_exact(synth, env, settings_by_env):
    names = Names.of(settings_by_env[env])
    stack = BOOTSTRAP[env]
    found = {p: kind for p, (kind, _, _) in synth.by_path(stack).items() if p.startswith("starter_role/")}
    assert found == {
        "starter_role/role": "google_project_iam_custom_role",
        "starter_role/starter": "google_project_iam_member",
    }
    assert synth.waits(stack, "starter_role/") == {
        "starter_role/role": ["apis/iam", "apis/cloudresourcemanager"],
        "starter_role/starter": ["apis/cloudresourcemanager", "starter_role/role"],
    }
    role = synth.body(stack, "starter_role/role")
    assert {k: v for k, v in role.items() if k not in ("//", "depends_on")} == {
        "project": names.project,
        "role_id": "fmnistPipelineStarter",
        "title": "fmnist pipeline starter",
        "description": "start and list the lifecycle's Vertex AI pipeline runs, nothing else",
        "permissions": [
            "aiplatform.pipelineJobs.create",
            "aiplatform.pipelineJobs.get",
            "aiplatform.pipelineJobs.list",
        ],
        "stage": "GA",
    }
    binding = synth.body(stack, "starter_role/starter")
    assert {k: v for k, v in binding.items() if k not in ("//", "depends_on")} == {
        "project": names.project,
        "role": f"projects/{names.project}/roles/fmnistPipelineStarter",
        "member": f"serviceAccount:{synth.ref(stack, 'accounts/starter', 'email')}",  # the bootstrap stack's account
    }
