"""Check the registry index's signature before following an alias (contracts/index_signature.py says why).

The service is given the promoter's public key (INDEX_PUBLIC_KEY, PEM text, or INDEX_PUBLIC_KEY_FILE); an
index whose signature object is missing, malformed, made by another key or not valid for these exact bytes is
refused with one of REFUSAL_REASONS, and whatever serves keeps serving. Runs only when the index changed (the
poll compares a generation or a stat first), so the hot path pays nothing.
A valid signature is not enough: an old index the promoter once signed (an earlier champion) could be written back.
Every index carries a `sequence` the registry raises on each write, inside the signed bytes; ReplayGuard keeps the
highest one this service accepted in its state directory (shared by the gunicorn workers, so one worker's accepted
index binds the others) and refuses a lower one as `replayed`.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from contracts.index_signature import (
    ALGORITHM,
    IndexSignature,
    SignatureFormatError,
    index_digest,
    key_fingerprint,
    signature_name,
)
from contracts.registry_index import RegistryIndexError, index_sequence

REFUSAL_REASONS = ("unsigned", "other_key", "bad_signature", "malformed", "replayed")
SEQUENCE_FILE = "index-sequence"  # in SERVICE_STATE_DIR: the highest index sequence accepted


class PublicKeyError(ValueError):
    """The configured public key is not a P-256 public key in PEM; the message says how to get the right one."""


class IndexRefused(Exception):
    """The index is not signed by the promoter's key; `reason` is one of REFUSAL_REASONS (a metric label)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class NotFound(Exception):
    """What `read` raises when the signature object does not exist."""


@dataclass(frozen=True)
class IndexVerifier:
    """The promoter's public key, and the check of one index content against its signature object."""

    public_key: ec.EllipticCurvePublicKey
    fingerprint: str

    @classmethod
    def from_pem(cls, pem: bytes, where: str) -> IndexVerifier:
        fix = (
            "give the promoter's public key in PEM (`gcloud kms keys versions get-public-key` on Google Cloud; "
            "<storage root>/promoter/index-signing.pub.pem locally)"
        )
        try:
            key = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError) as exc:
            raise PublicKeyError(f"{where}: not a PEM public key ({exc}); {fix}") from None
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise PublicKeyError(f"{where}: expected an EC P-256 public key ({ALGORITHM}); {fix}")
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return cls(key, key_fingerprint(der))

    def verify(self, index_bytes: bytes, root: str, read: Callable[[str], bytes]) -> IndexSignature:
        """The signature of `index_bytes`, read with `read(path under the models bucket root)` and verified;
        IndexRefused naming the reason otherwise."""
        name = signature_name(index_bytes)
        where = f"{root.rstrip('/')}/{name}"
        try:
            raw = read(name)
        except NotFound:
            raise IndexRefused(
                f"the registry index (sha256 {index_digest(index_bytes)}) is unsigned: {where} does not exist. "
                "Only the promoter (python -m trainer registry promote, with the signing key) may write the index",
                "unsigned",
            ) from None
        try:
            signature = IndexSignature.decode(raw)
        except SignatureFormatError as exc:
            raise IndexRefused(f"{where}: {exc}", "malformed") from None
        if signature.algorithm != ALGORITHM or signature.index_sha256 != index_digest(index_bytes):
            raise IndexRefused(
                f"{where}: made for another index or algorithm ({signature.algorithm}, index sha256 "
                f"{signature.index_sha256})",
                "malformed",
            )
        if signature.key != self.fingerprint:
            raise IndexRefused(
                f"the registry index is signed by another key ({signature.key}, signer {signature.signer[:200]}), "
                f"not the promoter's ({self.fingerprint})",
                "other_key",
            )
        try:
            self.public_key.verify(signature.signature, index_bytes, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise IndexRefused(
                f"{where}: the signature does not verify with the promoter's key {self.fingerprint} "
                "(the index or its signature was altered)",
                "bad_signature",
            ) from None
        return signature


class ReplayGuard:
    """The highest index sequence accepted, in `<state dir>/index-sequence` (in memory without a state dir)."""

    def __init__(self, state_dir: str | None):
        self._path = os.path.join(state_dir, SEQUENCE_FILE) if state_dir else None
        self._highest = 0

    def admit(self, index_bytes: bytes, where: str) -> int:
        """The index's sequence, recorded as the highest when it is; IndexRefused ("replayed") when it is lower
        than one accepted before. Call only after the signature verified."""
        try:
            sequence = index_sequence(json.loads(index_bytes), where)
        except RegistryIndexError as exc:  # its message names the index already
            raise IndexRefused(str(exc), "malformed") from None
        except (ValueError, AttributeError) as exc:
            raise IndexRefused(f"{where}: {exc}", "malformed") from None
        if self._path is None:
            return self._check(sequence, self._highest, where)
        with open(self._path, "a+", encoding="ascii") as file:
            fcntl.flock(file, fcntl.LOCK_EX)  # workers accept indexes concurrently
            file.seek(0)
            text = file.read().strip()
            highest = int(text) if text.isdigit() else 0
            self._check(sequence, highest, where)
            if sequence > highest:
                file.seek(0)
                file.truncate()
                file.write(str(sequence))
                file.flush()
        return sequence

    def _check(self, sequence: int, highest: int, where: str) -> int:
        if sequence < highest:
            raise IndexRefused(
                f"{where} has sequence {sequence}, older than the index this service accepted (sequence {highest}): "
                "an earlier index written back (a replay); the promoter's next write carries a higher sequence",
                "replayed",
            )
        self._highest = max(self._highest, sequence)
        return sequence
