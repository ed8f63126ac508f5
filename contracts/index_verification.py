"""Check a registry index's signature against the promoter's public key: the one check, shared.

Why in contracts: two readers must agree on what "signed by the promoter" means. The service follows an alias only
when the index verifies (service/index_verification.py adds its replay guard); the promoter itself builds a change
only on an index that verifies (trainer/models/registry.py), because signing a change on top of a forged index
would make whatever the forger named servable: the forger's champion, signed by the promoter's key. Needs
`cryptography` (in both images); contracts/index_signature.py stays standard library for the pipeline starter.
"""

from __future__ import annotations

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

REFUSAL_REASONS = ("unsigned", "other_key", "bad_signature", "malformed", "replayed")


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
