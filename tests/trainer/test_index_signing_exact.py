"""The promoter's signer, value by value: the Cloud KMS requests as sent (URL, body, the 30 s limit, the scope of
the credentials), each refusal's exact sentence, the key version's name, where the local key pair lives for a
relative storage root, and the INDEX_PUBLIC_KEY a local service is started with."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from contracts.index_signature import ALGORITHM, signature_name
from tests.trainer.test_index_signing import KEY_VERSION, FakeKms
from trainer.errors import RegistryError
from trainer.models.index_signing import (
    KmsSigner,
    LocalKeySigner,
    check_sign_reply,
    kms_key_version_name,
    local_key_dir,
    service_environment,
    write_signature,
)

API = "https://cloudkms.googleapis.com/v1"


class RecordingKms(FakeKms):
    """FakeKms's replies, every request's method, URL, body and timeout kept; `fail` answers every call with it."""

    def __init__(self, key_dir: Path, fail: tuple[int, str] | None = None, algorithm: str = ALGORITHM):
        super().__init__(key_dir)
        self.sent: list[tuple[str, str, str | None, object]] = []
        self.fail, self.algorithm = fail, algorithm

    def request(self, method, url, data=None, timeout=None):
        self.sent.append((method, url, data, timeout))
        if self.fail:
            return type("Reply", (), {"status_code": self.fail[0], "text": self.fail[1]})()
        reply = super().request(method, url, data, timeout)
        if url.endswith("/publicKey"):
            answer = {**reply.json(), "algorithm": self.algorithm}
            return type("Reply", (), {"status_code": 200, "json": lambda self: answer, "text": ""})()
        return reply


def test_the_kms_requests_are_sent_as_built_with_a_30_second_limit(tmp_path):
    kms = RecordingKms(tmp_path / "kms")
    data = b'{"aliases": {}}'
    KmsSigner(KEY_VERSION, _session=kms).sign(data)
    (get, post) = kms.sent
    assert get == ("GET", f"{API}/{KEY_VERSION}/publicKey", None, 30)  # a GET carries no body, not "null"
    assert post[0:2] == ("POST", f"{API}/{KEY_VERSION}:asymmetricSign")
    assert set(json.loads(post[2])) == {"digest", "digestCrc32c"}
    assert post[3] == 30  # a KMS that never answers must not hold the promotion forever


def test_a_failed_kms_call_names_the_call_the_key_the_status_and_the_role(tmp_path):
    kms = RecordingKms(tmp_path / "kms", fail=(403, "x" * 400))
    with pytest.raises(RegistryError) as refused:
        KmsSigner(KEY_VERSION, _session=kms).public_key_pem()
    assert str(refused.value) == (
        f"Cloud KMS publicKey on {KEY_VERSION} failed: HTTP 403 {'x' * 300} "
        "(the promoter's account needs roles/cloudkms.signerVerifier on the key)"
    )


def test_a_key_of_another_algorithm_is_refused_naming_both(tmp_path):
    kms = RecordingKms(tmp_path / "kms", algorithm="RSA_SIGN_PSS_2048_SHA256")
    with pytest.raises(RegistryError) as refused:
        KmsSigner(KEY_VERSION, _session=kms).public_key_pem()
    assert str(refused.value) == f"{KEY_VERSION} is a RSA_SIGN_PSS_2048_SHA256 key; expected {ALGORITHM}"


def test_a_reply_from_another_key_version_names_both():
    other = KEY_VERSION.replace("Versions/1", "Versions/2")
    with pytest.raises(RegistryError) as refused:
        check_sign_reply({"verifiedDigestCrc32c": True, "name": other, "signature": ""}, KEY_VERSION)
    assert str(refused.value) == f"Cloud KMS signed with {other}, not {KEY_VERSION}; nothing was written"


def test_the_session_has_application_default_credentials_for_cloud_kms(monkeypatch):
    import google.auth
    import google.auth.transport.requests

    asked, credentials = [], object()

    def default(scopes=None):
        asked.append(scopes)
        return credentials, "project"

    class Session:
        def __init__(self, given):
            self.credentials = given

    monkeypatch.setattr(google.auth, "default", default)
    monkeypatch.setattr(google.auth.transport.requests, "AuthorizedSession", Session)
    signer = KmsSigner(KEY_VERSION)
    session = signer._authorized()
    assert isinstance(session, Session) and session.credentials is credentials
    assert signer._authorized() is session  # made once
    assert asked == [["https://www.googleapis.com/auth/cloudkms"]]


def test_the_key_version_is_the_first_of_the_index_signing_key():
    assert kms_key_version_name("p", "europe-west4", "ring") == (
        "projects/p/locations/europe-west4/keyRings/ring/cryptoKeys/fmnist-index-signing/cryptoKeyVersions/1"
    )


def test_a_relative_storage_root_is_under_the_repository():
    from settings import REPO_ROOT, load_config

    relative = load_config("local", environ={"FMNIST_STORAGE_ROOT": "some/root"})
    assert local_key_dir(relative) == REPO_ROOT / "some" / "root" / "promoter"


def test_a_local_service_is_given_the_signers_public_key(settings):
    assert service_environment(settings) == {
        "INDEX_PUBLIC_KEY": LocalKeySigner(local_key_dir(settings)).public_key_pem().decode()
    }
    unsigned = settings.model_copy(update={"registry": settings.registry.model_copy(update={"index_signer": "none"})})
    assert service_environment(unsigned) == {}


def test_the_signature_object_is_json_on_cloud_storage(gcs_bucket, tmp_path):
    import storage

    data = b'{"aliases": {}}'
    uri = write_signature(gcs_bucket, data, LocalKeySigner(tmp_path / "keys"))
    assert uri == f"{gcs_bucket}/{signature_name(data)}"
    bucket, name = uri[len("gs://") :].split("/", 1)
    assert storage.gcs_client().bucket(bucket).get_blob(name).content_type == "application/json"


def test_the_local_key_folder_is_private_and_may_exist_already(tmp_path):
    (tmp_path / "made").mkdir()
    signature = LocalKeySigner(tmp_path / "made").sign(b"index")  # an empty folder left by an earlier attempt
    assert signature.signer == "local key"
    fresh = LocalKeySigner(tmp_path / "fresh")
    fresh.public_key_pem()
    assert stat.S_IMODE(fresh.directory.stat().st_mode) == 0o700


@pytest.mark.parametrize("other", ["rsa", "p384"])
def test_a_private_key_of_another_kind_is_refused_by_name(tmp_path, other):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key = rsa.generate_private_key(65537, 2048) if other == "rsa" else ec.generate_private_key(ec.SECP384R1())
    signer = LocalKeySigner(tmp_path / "keys")
    signer.directory.mkdir()
    signer.private_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    with pytest.raises(RegistryError) as refused:
        signer.sign(b"index")
    assert str(refused.value) == (
        f"{signer.private_path} is not an EC P-256 private key; move it away to create a new one"
    )
