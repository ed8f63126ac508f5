"""Where an environment's Terraform-run stacks keep their state: the environment's state bucket, one prefix per stack
(`fmnist-mlops/<stack>`), else a local file at the repository root (infra.state_bucket unset).

Why one place: the environment, images and serving stacks share the rule, and cdktf's cross-stack references read
the images stack's outputs through the same backend (a `terraform_remote_state` the planner may read: it holds
objectViewer on the state bucket, infra/components/state.py).
"""

from __future__ import annotations

from cdktf import GcsBackend, LocalBackend, TerraformStack

from infra.bootstrap import local_state_path
from settings import Settings

STATE_PREFIX = "fmnist-mlops"


def environment_backend(stack: TerraformStack, settings: Settings, stack_name: str) -> None:
    bucket = settings.infra.state_bucket
    if bucket:
        GcsBackend(stack, bucket=bucket, prefix=f"{STATE_PREFIX}/{stack_name}")
    else:
        LocalBackend(stack, path=local_state_path(stack_name))
