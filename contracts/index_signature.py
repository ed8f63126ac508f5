"""The registry index's signature: where it lives and what it holds (the promoter writes it, the service checks it).

Why a signature: the service follows `registry/index.json` (which version serves, and its files' digests), so
whoever can write that object chooses what serves. The promoter signs the index's exact bytes (ECDSA P-256 over
SHA-256: what Cloud KMS `EC_SIGN_P256_SHA256` keys produce, and what the local key pair uses too, so one check
serves both targets); the service follows an alias only when the signature verifies with the public key it was
given. Why one signature object per index content (`registry/signatures/<sha256 of the index>.json`) and not
one `index.json.sig`: the writer stores the signature before it swaps the index in, so a reader never sees an
index whose signature is still on its way, and two promoters racing cannot leave one's signature beside the
other's index. Knowing where signatures live gives nothing: without the private key none verifies.
Pure standard library: the service and the trainer both import it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass

ALGORITHM = "EC_SIGN_P256_SHA256"  # the Cloud KMS algorithm name; the local key pair is the same curve and hash
SIGNATURES_PREFIX = "registry/signatures"
INDEX_SIGNING_KEY_ID = "fmnist-index-signing"  # the Cloud KMS key (in the environment's key ring)


class SignatureFormatError(ValueError):
    """A signature object is not what `encode` writes; the message names the field."""


def index_digest(index_bytes: bytes) -> str:
    return hashlib.sha256(index_bytes).hexdigest()


def signature_name(index_bytes: bytes) -> str:
    """The signature object's path in the models bucket for this exact index content."""
    return f"{SIGNATURES_PREFIX}/{index_digest(index_bytes)}.json"


def key_fingerprint(public_key_der: bytes) -> str:
    """Which key signed: sha256 of the public key's DER SubjectPublicKeyInfo (what `openssl pkey -pubout
    -outform DER | sha256sum` prints), so a refusal can say "signed by another key" and name both."""
    return "sha256:" + hashlib.sha256(public_key_der).hexdigest()


@dataclass(frozen=True)
class IndexSignature:
    """One signature of one index content."""

    index_sha256: str
    signature: bytes  # DER-encoded ECDSA signature, as Cloud KMS returns it
    key: str  # key_fingerprint of the signer's public key
    signer: str  # who signed, for people: a KMS key version name or a local key path
    algorithm: str = ALGORITHM

    def encode(self) -> bytes:
        return json.dumps(
            {
                "algorithm": self.algorithm,
                "index_sha256": self.index_sha256,
                "key": self.key,
                "signature": base64.b64encode(self.signature).decode(),
                "signer": self.signer,
            },
            indent=2,
            sort_keys=True,
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> IndexSignature:
        try:
            document = json.loads(data)
        except ValueError as exc:
            raise SignatureFormatError(f"not valid JSON ({exc})") from None
        if not isinstance(document, dict):
            raise SignatureFormatError("expected a JSON object")
        fields = {}
        for name in ("algorithm", "index_sha256", "key", "signature", "signer"):
            value = document.get(name)
            if not isinstance(value, str) or not value:
                raise SignatureFormatError(f"'{name}' must be a non-empty string")
            fields[name] = value
        try:
            raw = base64.b64decode(fields["signature"], validate=True)
        except (binascii.Error, ValueError):
            raise SignatureFormatError("'signature' is not base64") from None
        return cls(fields["index_sha256"], raw, fields["key"], fields["signer"], fields["algorithm"])
