"""The trainer's exceptions. A library module raises these; only `trainer.cli` turns them into exit statuses."""

from __future__ import annotations

import json
import sys
from typing import Any


class CommandError(Exception):
    """A command failed for a reason the user can fix; the message says what and how.

    Exit status `exit_code` (1; a refusal that callers treat as an outcome, such as the quality gate, uses its own).
    """

    exit_code = 1


class DatasetError(CommandError):
    """No usable dataset version: the message names the location and the fix (for example: run ingest)."""


class ModelDirError(CommandError):
    """A model directory is missing a file or holds one that does not match its record."""


class RegistryError(CommandError):
    """The registry refused or could not apply a change; the message says why and what to do."""


class GateRefused(RegistryError):
    """Promotion refused by the quality gate; the message carries the numbers. Exit status 3: an outcome that
    pipelines (and `make demo`) tell apart from a failure."""

    exit_code = 3


def log_event(event: str, message: str, severity: str = "ERROR", **fields: Any) -> None:
    """One JSON line on stderr that Cloud Logging reads as a structured entry (jsonPayload); the alert policies on
    failed pipeline runs and gate refusals match `event` (contracts.monitoring_queries.event_log_filter)."""
    line = {"severity": severity, "message": message, "event": event, "component": "trainer", **fields}
    print(json.dumps(line, default=str), file=sys.stderr, flush=True)
