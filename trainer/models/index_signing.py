"""Sign each registry index the promoter writes (contracts/index_signature.py: what, where, and why).

Two signers, one algorithm (ECDSA P-256 over SHA-256), so the service has one check for both targets:
- `KmsSigner` (gcp): Cloud KMS `asymmetricSign` on the environment's index-signing key. The private key never
  leaves KMS; only the promoter's account holds `cloudkms.cryptoKeyVersions.useToSign` on it (infra/).
  A thin REST adapter: `sign_request` builds the request (tested offline), google-auth sends it.
- `LocalKeySigner` (local target, and the GCS emulator, which has no KMS beside it): a key pair created on first
  use under `<storage root>/promoter/`, beside the buckets and never inside the models bucket, private key 0600.
Signing is one call on the index's exact bytes, made by the registry just before it swaps the index in.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import storage
from contracts.index_signature import (
    ALGORITHM,
    INDEX_SIGNING_KEY_ID,
    IndexSignature,
    index_digest,
    key_fingerprint,
    signature_name,
)
from trainer.errors import RegistryError

KMS_API = "https://cloudkms.googleapis.com/v1"
LOCAL_KEY_DIR = "promoter"  # under the storage root, beside (not inside) the models bucket
PRIVATE_KEY_FILE = "index-signing.pem"
PUBLIC_KEY_FILE = "index-signing.pub.pem"
SIGNERS = ("auto", "kms", "local", "none")


class Signer(Protocol):
    def sign(self, data: bytes) -> IndexSignature: ...

    def public_key_pem(self) -> bytes: ...


def write_signature(root: str, index_bytes: bytes, signer: Signer) -> str:
    """Sign `index_bytes` and store the signature where the service looks for it; returns its URI.

    Written before the index itself: a reader that sees the new index always finds its signature."""
    uri = storage.join(root, signature_name(index_bytes))
    storage.write_bytes(uri, signer.sign(index_bytes).encode(), content_type="application/json")
    return uri


def _public_der(pem: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_public_key(pem)
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass
class LocalKeySigner:
    """An EC P-256 key pair in `directory`, created on first use (private key mode 0600)."""

    directory: Path

    @property
    def private_path(self) -> Path:
        return self.directory / PRIVATE_KEY_FILE

    @property
    def public_path(self) -> Path:
        return self.directory / PUBLIC_KEY_FILE

    def _private_key(self):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        if not self.private_path.is_file():
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            try:  # O_EXCL: two first uses at once keep one key, the loser reads the winner's
                fd = os.open(self.private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(pem)
        key = serialization.load_pem_private_key(self.private_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise RegistryError(f"{self.private_path} is not an EC P-256 private key; move it away to create a new one")
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if not self.public_path.is_file() or self.public_path.read_bytes() != public:
            self.public_path.write_bytes(public)
        return key

    def public_key_pem(self) -> bytes:
        self._private_key()
        return self.public_path.read_bytes()

    def sign(self, data: bytes) -> IndexSignature:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        key = self._private_key()
        signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
        return IndexSignature(
            index_digest(data), signature, key_fingerprint(_public_der(self.public_path.read_bytes())), "local key"
        )


def kms_key_version_name(project: str, region: str, key_ring: str, version: int = 1) -> str:
    return (
        f"projects/{project}/locations/{region}/keyRings/{key_ring}/cryptoKeys/{INDEX_SIGNING_KEY_ID}"
        f"/cryptoKeyVersions/{version}"
    )


def sign_request(key_version: str, data: bytes) -> tuple[str, dict]:
    """(URL, JSON body) of the Cloud KMS asymmetricSign call for `data`: its SHA-256 digest, with the digest's
    CRC32C so KMS can refuse a digest damaged on the way."""
    import google_crc32c

    digest = bytes.fromhex(index_digest(data))
    return f"{KMS_API}/{key_version}:asymmetricSign", {
        "digest": {"sha256": base64.b64encode(digest).decode()},
        "digestCrc32c": str(google_crc32c.value(digest)),
    }


def public_key_request(key_version: str) -> str:
    return f"{KMS_API}/{key_version}/publicKey"


def check_sign_reply(reply: dict, key_version: str) -> bytes:
    """The DER signature from an asymmetricSign reply, after KMS's own integrity checks."""
    import google_crc32c

    if not reply.get("verifiedDigestCrc32c"):
        raise RegistryError(f"Cloud KMS did not confirm the digest's checksum for {key_version}; nothing was written")
    if reply.get("name") != key_version:
        raise RegistryError(f"Cloud KMS signed with {reply.get('name')}, not {key_version}; nothing was written")
    signature = base64.b64decode(reply["signature"])
    if str(google_crc32c.value(signature)) != str(reply.get("signatureCrc32c")):
        raise RegistryError(f"the signature from {key_version} arrived damaged (CRC32C mismatch); run it again")
    return signature


@dataclass
class KmsSigner:
    """Cloud KMS asymmetric signing with one key version (needs cloudkms.cryptoKeyVersions.useToSign)."""

    key_version: str
    _session: object = field(default=None, repr=False)
    _public_pem: bytes | None = field(default=None, repr=False)

    def _authorized(self):
        if self._session is None:
            import google.auth
            from google.auth.transport.requests import AuthorizedSession

            credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloudkms"])
            self._session = AuthorizedSession(credentials)
        return self._session

    def _call(self, method: str, url: str, body: dict | None = None) -> dict:
        reply = self._authorized().request(method, url, data=None if body is None else json.dumps(body), timeout=30)
        if reply.status_code != 200:
            raise RegistryError(
                f"Cloud KMS {url.rsplit('/', 1)[-1]} on {self.key_version} failed: HTTP {reply.status_code} "
                f"{reply.text[:300]} (the promoter's account needs roles/cloudkms.signerVerifier on the key)"
            )
        return reply.json()

    def public_key_pem(self) -> bytes:
        if self._public_pem is None:
            reply = self._call("GET", public_key_request(self.key_version))
            if reply.get("algorithm") != ALGORITHM:
                raise RegistryError(f"{self.key_version} is a {reply.get('algorithm')} key; expected {ALGORITHM}")
            self._public_pem = reply["pem"].encode()
        return self._public_pem

    def sign(self, data: bytes) -> IndexSignature:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        pem = self.public_key_pem()
        url, body = sign_request(self.key_version, data)
        signature = check_sign_reply(self._call("POST", url, body), self.key_version)
        public = serialization.load_pem_public_key(pem)
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(signature, data, ec.ECDSA(hashes.SHA256()))  # what the service will check, checked first
        return IndexSignature(index_digest(data), signature, key_fingerprint(_public_der(pem)), self.key_version)


def local_key_dir(settings) -> Path:
    root = Path(settings.storage_root).expanduser()
    if not root.is_absolute():
        from settings import REPO_ROOT

        root = REPO_ROOT / root
    return root / LOCAL_KEY_DIR


def signer_for(settings) -> Signer | None:
    """The index signer configured by `registry.index_signer`: auto = Cloud KMS on the gcp target, a local key
    pair on the local target and against a GCS emulator (STORAGE_EMULATOR_HOST: no KMS beside it); none = unsigned
    (a service with INDEX_PUBLIC_KEY then refuses every index)."""
    choice = settings.registry.index_signer
    if choice == "auto":
        emulated = bool(os.environ.get("STORAGE_EMULATOR_HOST"))
        choice = "kms" if settings.target == "gcp" and not emulated else "local"
    if choice == "none":
        return None
    if choice == "local":
        return LocalKeySigner(local_key_dir(settings))
    names = settings.names
    return KmsSigner(kms_key_version_name(names.project, names.region, names.kms_key_ring))


def service_environment(settings) -> dict[str, str]:
    """INDEX_PUBLIC_KEY for a service started here on this environment's registry (the demo's local service):
    the configured signer's public key, so the local service checks signatures as Cloud Run does."""
    signer = signer_for(settings)
    return {} if signer is None else {"INDEX_PUBLIC_KEY": signer.public_key_pem().decode()}
