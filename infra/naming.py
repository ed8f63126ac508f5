"""The stacks' names: contracts.cloud's CloudNames (shared with the trainer) plus the settings they came from.

Why a thin subclass: every resource name is defined once, in contracts/cloud.py; the constructs also read their
`infra.*` settings, so they get both through one object.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from contracts.cloud import SERVICE_ACCOUNT_SUFFIXES, CloudNames
from contracts.images import IMAGE_SOURCES
from contracts.layout import BUCKET_KINDS
from settings import Settings

__all__ = ["BUCKET_KINDS", "IMAGE_NAMES", "SERVICE_ACCOUNT_SUFFIXES", "Names"]
IMAGE_NAMES = tuple(IMAGE_SOURCES)


@dataclass(frozen=True)
class Names(CloudNames):
    settings: Settings | None = None

    @classmethod
    def of(cls, settings: Settings) -> Names:
        base = settings.names
        return cls(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)}, settings=settings)
