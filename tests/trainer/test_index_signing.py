"""The promoter's side of the signed index: every index the registry writes has a signature, made on its exact
bytes, that the service's check accepts; the local key pair is made once, private, outside the models bucket;
the Cloud KMS request is what the API documents (built offline)."""

import base64
import hashlib
import json
import stat
from pathlib import Path

import pytest

import storage
from contracts.index_signature import ALGORITHM, IndexSignature, signature_name
from service.index_verification import IndexRefused, IndexVerifier, NotFound
from trainer.errors import RegistryError
from trainer.models.index_signing import (
    KmsSigner,
    LocalKeySigner,
    check_sign_reply,
    kms_key_version_name,
    local_key_dir,
    public_key_request,
    sign_request,
    signer_for,
)
from trainer.models.registry import ModelRegistry

KEY_VERSION = "projects/p/locations/europe-west4/keyRings/r/cryptoKeys/fmnist-index-signing/cryptoKeyVersions/1"


def reader(root: str):
    def read(name: str) -> bytes:
        try:
            return storage.read_bytes(storage.join(root, name))
        except storage.NotFound:
            raise NotFound(name) from None

    return read


def signed_registry(root: str, key_dir: Path) -> ModelRegistry:
    return ModelRegistry(root, accuracy_floor=0.0, regression_tolerance=1.0, signer=LocalKeySigner(key_dir))


def check_current_index(registry: ModelRegistry, key_dir: Path) -> IndexSignature:
    verifier = IndexVerifier.from_pem(LocalKeySigner(key_dir).public_key_pem(), "test key")
    return verifier.verify(storage.read_bytes(registry.index_uri), registry.root, reader(registry.root))


def test_the_local_key_pair_is_made_once_private_and_outside_the_models_bucket(settings):
    signer = signer_for(settings)
    assert isinstance(signer, LocalKeySigner)
    assert signer.directory == local_key_dir(settings)
    assert not signer.directory.resolve().is_relative_to(Path(settings.models_bucket).resolve())
    first = signer.public_key_pem()
    assert stat.S_IMODE(signer.private_path.stat().st_mode) == 0o600
    assert LocalKeySigner(signer.directory).public_key_pem() == first  # the same key on the next use
    assert first.startswith(b"-----BEGIN PUBLIC KEY-----")


def test_every_index_write_is_signed_on_its_exact_bytes(tmp_path, settings):
    registry = signed_registry(str(tmp_path / "models"), tmp_path / "keys")
    registry.register({"metadata.json": b"{}"}, {"accuracy": 0.9}, "custom", dataset_version="d", version="v1")
    assert (
        check_current_index(registry, tmp_path / "keys").index_sha256
        == hashlib.sha256(storage.read_bytes(registry.index_uri)).hexdigest()
    )
    registry.promote("v1")
    registry.record("canary_started", "v1")
    check_current_index(registry, tmp_path / "keys")
    signatures = list((tmp_path / "models" / "registry" / "signatures").iterdir())
    assert len(signatures) == 3  # register, promote, record: one per index content


def test_an_index_changed_after_signing_is_refused(tmp_path):
    registry = signed_registry(str(tmp_path / "models"), tmp_path / "keys")
    registry.register({"metadata.json": b"{}"}, {"accuracy": 0.9}, "custom", dataset_version="d", version="v1")
    data = storage.read_bytes(registry.index_uri)
    # the old signature copied next to a changed index: its name no longer matches, so the index is unsigned
    changed = data.replace(b'"candidate"', b'"champion"')
    verifier = IndexVerifier.from_pem(LocalKeySigner(tmp_path / "keys").public_key_pem(), "test key")
    with pytest.raises(IndexRefused) as refused:
        verifier.verify(changed, registry.root, reader(registry.root))
    assert refused.value.reason == "unsigned"
    # ... and renamed to the changed index's name, the signature does not verify
    original = storage.read_bytes(storage.join(registry.root, signature_name(data)))
    forged = json.loads(original)
    forged["index_sha256"] = hashlib.sha256(changed).hexdigest()
    storage.write_bytes(storage.join(registry.root, signature_name(changed)), json.dumps(forged).encode())
    with pytest.raises(IndexRefused) as refused:
        verifier.verify(changed, registry.root, reader(registry.root))
    assert refused.value.reason == "bad_signature"


def test_a_signature_by_another_key_is_refused_naming_both_keys(tmp_path):
    registry = signed_registry(str(tmp_path / "models"), tmp_path / "forger")
    registry.register({"metadata.json": b"{}"}, {"accuracy": 0.9}, "custom", dataset_version="d", version="v1")
    promoter = IndexVerifier.from_pem(LocalKeySigner(tmp_path / "promoter").public_key_pem(), "test key")
    with pytest.raises(IndexRefused) as refused:
        promoter.verify(storage.read_bytes(registry.index_uri), registry.root, reader(registry.root))
    assert refused.value.reason == "other_key"
    assert promoter.fingerprint in str(refused.value)


def test_the_signer_follows_the_target_and_the_setting(settings, monkeypatch):
    from settings import load_config

    gcp = load_config("dev")
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    signer = signer_for(gcp)
    assert isinstance(signer, KmsSigner)
    assert signer.key_version == kms_key_version_name(gcp.project_id, gcp.region, gcp.infra.kms_key_ring)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:1")  # an emulator has no KMS beside it
    assert isinstance(signer_for(gcp), LocalKeySigner)
    assert (
        signer_for(
            settings.model_copy(update={"registry": settings.registry.model_copy(update={"index_signer": "none"})})
        )
        is None
    )


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli, reflected 0x82F63B78), bit by bit: an independent reference for the request's value."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_the_reference_crc32c_is_castagnolis():
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value of CRC-32C


def test_the_kms_sign_request_is_the_documented_one():
    data = b'{"aliases": {}}'
    url, body = sign_request(KEY_VERSION, data)
    assert url == f"https://cloudkms.googleapis.com/v1/{KEY_VERSION}:asymmetricSign"
    assert base64.b64decode(body["digest"]["sha256"]) == hashlib.sha256(data).digest()
    assert body["digestCrc32c"] == str(crc32c(hashlib.sha256(data).digest()))  # a decimal string (Int64Value)
    assert set(body) == {"digest", "digestCrc32c"}
    assert public_key_request(KEY_VERSION) == f"https://cloudkms.googleapis.com/v1/{KEY_VERSION}/publicKey"


def test_a_kms_reply_that_fails_its_checks_is_refused():
    import google_crc32c

    signature = b"\x30\x44signature"
    good = {
        "signature": base64.b64encode(signature).decode(),
        "signatureCrc32c": str(google_crc32c.value(signature)),
        "verifiedDigestCrc32c": True,
        "name": KEY_VERSION,
    }
    assert check_sign_reply(good, KEY_VERSION) == signature
    for change, message in (
        ({"verifiedDigestCrc32c": False}, "checksum"),
        ({"name": KEY_VERSION.replace("/1", "/2")}, "not"),
        ({"signatureCrc32c": "1"}, "damaged"),
    ):
        with pytest.raises(RegistryError, match=message):
            check_sign_reply({**good, **change}, KEY_VERSION)


class FakeKms:
    """Stands in for the REST session only: the requests are the ones above, the replies are what KMS returns."""

    def __init__(self, key_dir: Path):
        self.local = LocalKeySigner(key_dir)
        self.calls = []

    def request(self, method, url, data=None, timeout=None):
        import google_crc32c

        self.calls.append((method, url))
        if url.endswith("/publicKey"):
            reply = {"pem": self.local.public_key_pem().decode(), "algorithm": ALGORITHM}
        else:
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric import ec, utils

            digest = base64.b64decode(json.loads(data)["digest"]["sha256"])
            der = self.local._private_key().sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
            reply = {
                "signature": base64.b64encode(der).decode(),
                "signatureCrc32c": str(google_crc32c.value(der)),
                "verifiedDigestCrc32c": True,
                "name": KEY_VERSION,
            }
        return type("Reply", (), {"status_code": 200, "json": lambda self: reply, "text": ""})()


def test_a_kms_signature_passes_the_services_check(tmp_path):
    kms = FakeKms(tmp_path / "kms")
    registry = ModelRegistry(str(tmp_path / "models"), signer=KmsSigner(KEY_VERSION, _session=kms))
    registry.register({"metadata.json": b"{}"}, {"accuracy": 0.9}, "custom", dataset_version="d", version="v1")
    signature = check_current_index(registry, tmp_path / "kms")
    assert signature.signer == KEY_VERSION
    assert [method for method, _ in kms.calls] == ["GET", "POST"]  # the public key once, then one signature
