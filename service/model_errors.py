"""Why a model could not be served, as one family of exceptions the reader, the reference, the bundle and the slot
share: the slot (service/versions.py) tells a passing read error (retry) from a refusal (remember, never retry)
from an alias not set yet (wait) by these classes alone.
"""

from __future__ import annotations


class ModelLoadError(Exception):
    """The model could not be found, read or validated; the message says where and what to do."""


class ObjectNotFound(ModelLoadError):
    """The file or gs:// object does not exist (what is missing decides what the caller says)."""


class NoModelPromoted(ModelLoadError):
    """The registry has no version under the alias yet (or no index at all): the service can wait for one."""


class ModelReadError(ModelLoadError):
    """Reading failed for a reason that may pass (a GCS outage, a timeout): worth trying again later."""


class ModelRefused(ModelLoadError):
    """The version's files are not the ones recorded (or cannot be checked): it must not be served.

    `reason` is one of REFUSAL_REASONS, a closed set for the refused-versions metric."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


REFUSAL_REASONS = ("digest_mismatch", "missing_file", "no_digest", "invalid")
