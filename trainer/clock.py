"""UTC timestamps in the one format every record (registry, run records, manifests) carries."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> str:
    """'2026-12-01T09:30:00Z': second resolution, sortable as text."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
