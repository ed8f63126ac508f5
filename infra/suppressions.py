"""Justified checkov suppressions, written as notes on the resource in code.

checkov drops the `"//"` keys of cdk.tf.json, so inline skip comments cannot work. `suppress()` stores the
check id and its reason under the resource's `"//"` metadata, where reviewers see it in the synthesized JSON,
and infra/checkov_baseline.py turns all notes into a checkov baseline file. Keep them few: each one is a
finding we accept on purpose.
"""

from __future__ import annotations

NOTE_KEY = "checkov_skip"


def suppress(resource, check_id: str, reason: str) -> None:
    """Accept `check_id` on this resource; `reason` says why it cannot or should not be met."""
    if not reason or len(reason.strip()) < 20:
        raise ValueError(f"suppressing {check_id} needs a reason of at least a sentence, got {reason!r}")
    resource.add_override(f"//.{NOTE_KEY}.{check_id}", reason.strip())
