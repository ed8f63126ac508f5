"""Check the registry index before following an alias (contracts/index_signature.py says why).

The service is given the promoter's public key (INDEX_PUBLIC_KEY, PEM text, or INDEX_PUBLIC_KEY_FILE); an index
whose signature object is missing, malformed, made by another key or not valid for these exact bytes is
refused with one of REFUSAL_REASONS (the check is contracts/index_verification.py: the promoter makes the same
one), and whatever serves keeps serving. Runs only when the index changed (the poll compares a generation or a stat
first), so the hot path pays nothing.
A valid signature is not enough: an old index the promoter once signed (an earlier champion) could be written back.
Every index carries a `sequence` the registry raises on each write, inside the signed bytes; ReplayGuard keeps the
highest one this service accepted in its state directory (shared by the gunicorn workers, so one worker's accepted
index binds the others) and refuses a lower one as `replayed`. It keeps that index's bytes too: a worker whose polls
missed the newest index (two writes within one poll interval, the second refused: a replay or a forgery) follows
what the newest accepted index names instead of staying on what it served, so the workers of one instance never
split between versions.
"""

from __future__ import annotations

import fcntl
import json
import os

from contracts.index_verification import REFUSAL_REASONS, IndexRefused, IndexVerifier, NotFound, PublicKeyError
from contracts.registry_index import RegistryIndexError, index_sequence

__all__ = [
    "ACCEPTED_FILE",
    "REFUSAL_REASONS",
    "SEQUENCE_FILE",
    "IndexRefused",
    "IndexVerifier",
    "NotFound",
    "PublicKeyError",
    "ReplayGuard",
]
SEQUENCE_FILE = "index-sequence"  # in SERVICE_STATE_DIR: the highest index sequence accepted
ACCEPTED_FILE = "index-accepted.json"  # beside it: the bytes of the index that has it (verified when accepted)


class ReplayGuard:
    """The highest index sequence accepted, in `<state dir>/index-sequence`, and that index's bytes beside it (in
    memory without a state dir)."""

    def __init__(self, state_dir: str | None):
        self._path = os.path.join(state_dir, SEQUENCE_FILE) if state_dir else None
        self._accepted_path = os.path.join(state_dir, ACCEPTED_FILE) if state_dir else None
        self._highest = 0
        self._accepted: bytes | None = None

    def admit(self, index_bytes: bytes, where: str) -> int:
        """The index's sequence, recorded as the highest when it is; IndexRefused ("replayed") when it is lower
        than one accepted before. Call only after the signature verified."""
        try:
            sequence = index_sequence(json.loads(index_bytes), where)
        except RegistryIndexError as exc:  # its message names the index already
            raise IndexRefused(str(exc), "malformed") from None
        except (ValueError, AttributeError) as exc:
            raise IndexRefused(f"{where}: {exc}", "malformed") from None
        if self._path is None or self._accepted_path is None:
            self._check(sequence, self._highest, where)
            if sequence >= self._highest:
                self._highest, self._accepted = sequence, index_bytes
            return sequence
        with open(self._path, "a+", encoding="ascii") as file:
            fcntl.flock(file, fcntl.LOCK_EX)  # workers accept indexes concurrently
            file.seek(0)
            text = file.read().strip()
            highest = int(text) if text.isdigit() else 0
            self._check(sequence, highest, where)
            if sequence > highest or not os.path.exists(self._accepted_path):
                temporary = f"{self._accepted_path}.{os.getpid()}"
                with open(temporary, "wb") as accepted:
                    accepted.write(index_bytes)
                os.replace(temporary, self._accepted_path)  # whole or not at all, before the sequence says so
                file.seek(0)
                file.truncate()
                file.write(str(sequence))
                file.flush()
        return sequence

    def newest(self) -> bytes | None:
        """The bytes of the index with the highest sequence accepted (by any worker), None before the first."""
        if self._accepted_path is None:
            return self._accepted
        try:
            with open(self._accepted_path, "rb") as file:
                return file.read()
        except FileNotFoundError:
            return None

    def _check(self, sequence: int, highest: int, where: str) -> int:
        if sequence < highest:
            raise IndexRefused(
                f"{where} has sequence {sequence}, older than the index this service accepted (sequence {highest}): "
                "an earlier index written back (a replay); the promoter's next write carries a higher sequence",
                "replayed",
            )
        self._highest = max(self._highest, sequence)
        return sequence
