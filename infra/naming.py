"""The stacks' names: contracts.cloud's CloudNames (shared with the trainer) plus the settings they came from.

Why a thin subclass: every resource name is defined once, in contracts/cloud.py; the constructs also read their
`infra.*` settings, so they get both through one object. The planner account (only the pull-request pipeline uses
it) and the optional Workbench's account are infra's own, so their names are added here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from contracts.cloud import (
    PIPELINE_ACCOUNT_SUFFIXES,
    SERVICE_ACCOUNT_SUFFIXES,
    CloudNames,
)
from contracts.images import IMAGE_SOURCES
from contracts.layout import BUCKET_KINDS
from settings import Settings

__all__ = ["BUCKET_KINDS", "IMAGE_NAMES", "STACK_ACCOUNTS", "SERVICE_ACCOUNT_SUFFIXES", "Names", "stack_accounts"]
IMAGE_NAMES = tuple(IMAGE_SOURCES)
PLANNER_SUFFIX = "planner"
# Every account the bootstrap stack creates: the runtime and pipeline accounts of contracts.cloud plus the planner.
STACK_ACCOUNTS = (*SERVICE_ACCOUNT_SUFFIXES, *PIPELINE_ACCOUNT_SUFFIXES, "planner")
# The optional Workbench instance's account (infra/components/workbench.py): created only when it is enabled.
WORKBENCH_SUFFIX = "workbench"
INFRA_ACCOUNTS = (PLANNER_SUFFIX, WORKBENCH_SUFFIX)  # infra's own accounts, unknown to contracts.cloud


def stack_accounts(settings: Settings) -> tuple[str, ...]:
    """The accounts the bootstrap stack creates for this environment: STACK_ACCOUNTS plus the enabled options'."""
    return (*STACK_ACCOUNTS, *((WORKBENCH_SUFFIX,) if settings.infra.workbench.enabled else ()))


@dataclass(frozen=True)
class Names(CloudNames):
    settings: Settings | None = None

    @classmethod
    def of(cls, settings: Settings) -> Names:
        base = settings.names
        return cls(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)}, settings=settings)

    def service_account_id(self, role: str) -> str:
        if role not in INFRA_ACCOUNTS:
            return super().service_account_id(role)
        return self.account_id(role)

    def account_member(self, role: str) -> str:
        """The IAM member of a stack account (created by the bootstrap stack, so known by name)."""
        return f"serviceAccount:{self.service_account_email(role)}"

    @property
    def bootstrap_stack(self) -> str:
        return f"bootstrap-{self.env}"

    @property
    def images_stack(self) -> str:
        """The docker provider's stack (infra/images_stack.py), after the environment stack."""
        return f"{IMAGES_STACK_PREFIX}{self.env}"

    @property
    def serving_stack(self) -> str:
        """Cloud Run's stack (infra/serving_stack.py), after the images stack."""
        return f"{SERVING_STACK_PREFIX}{self.env}"


BOOTSTRAP_STACK_PREFIX, IMAGES_STACK_PREFIX, SERVING_STACK_PREFIX = "bootstrap-", "images-", "serving-"


def stack_environment(stack: str) -> str:
    """The environment a stack name belongs to: `bootstrap-dev`, `dev`, `images-dev` and `serving-dev` are all dev."""
    for prefix in (BOOTSTRAP_STACK_PREFIX, IMAGES_STACK_PREFIX, SERVING_STACK_PREFIX):
        if stack.startswith(prefix):
            return stack.removeprefix(prefix)
    return stack
