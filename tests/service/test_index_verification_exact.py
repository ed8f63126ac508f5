"""The index check's refusals word for word (what the operator reads in the log), the signature read by its exact
name under the bucket root, and the replay guard's file and memory: an equal sequence is the same index read
again, an index from before sequences is admitted by a fresh service, the file holds the highest sequence alone."""

from __future__ import annotations

import pytest

from contracts.index_signature import index_digest, signature_name
from service.config import ConfigError, ServiceConfig
from service.index_verification import SEQUENCE_FILE, IndexRefused, IndexVerifier, NotFound, ReplayGuard
from tests.service.test_index_replay import index
from tests.service.test_index_verification import INDEX, keypair, signed


def refusal(pem, objects: dict[str, bytes], data: bytes = INDEX, root: str = "gs://models/") -> IndexRefused:
    asked = []

    def read(name):
        asked.append(name)
        if name not in objects:
            raise NotFound(name)
        return objects[name]

    with pytest.raises(IndexRefused) as refused:
        IndexVerifier.from_pem(pem, "test").verify(data, root, read)
    assert asked == [signature_name(data)]  # the one object named after these bytes, under the root
    return refused.value


def test_each_refusal_says_where_what_and_which_key():
    key, pem, fingerprint = keypair()
    other, _, other_fingerprint = keypair()
    where = f"gs://models/{signature_name(INDEX)}"
    digest = index_digest(INDEX)

    unsigned = refusal(pem, {})
    assert (unsigned.reason, str(unsigned)) == (
        "unsigned",
        f"the registry index (sha256 {digest}) is unsigned: {where} does not exist. Only the promoter (python -m "
        "trainer registry promote, with the signing key) may write the index",
    )
    local = refusal(pem, {}, root="/srv/MODELS-X/")  # a local root: one slash, its own letters kept
    assert f"is unsigned: /srv/MODELS-X/{signature_name(INDEX)} does not exist" in str(local)
    garbled = refusal(pem, {signature_name(INDEX): b"[]"})
    assert (garbled.reason, str(garbled)) == ("malformed", f"{where}: expected a JSON object")
    for changes in ({"algorithm": "RSA_SIGN_PSS_2048_SHA256"}, {"index_sha256": "0" * 64}):
        foreign = refusal(pem, signed(key, fingerprint, **changes))
        algorithm = changes.get("algorithm", "EC_SIGN_P256_SHA256")
        assert (foreign.reason, str(foreign)) == (
            "malformed",
            f"{where}: made for another index or algorithm ({algorithm}, index sha256 "
            f"{changes.get('index_sha256', digest)})",
        )
    by_other = refusal(pem, signed(other, other_fingerprint, signer="x" * 300))
    assert (by_other.reason, str(by_other)) == (
        "other_key",
        f"the registry index is signed by another key ({other_fingerprint}, signer {'x' * 200}), not the "
        f"promoter's ({fingerprint})",
    )
    forged = refusal(pem, signed(other, fingerprint))
    assert (forged.reason, str(forged)) == (
        "bad_signature",
        f"{where}: the signature does not verify with the promoter's key {fingerprint} (the index or its "
        "signature was altered)",
    )


def test_a_signature_over_other_bytes_is_refused_even_with_the_right_key():
    key, pem, fingerprint = keypair()
    other_index = INDEX.replace(b"v1", b"v9")
    signature = signed(key, fingerprint, data=other_index)[signature_name(other_index)]
    # the promoter's genuine signature of another index, stored under this index's name
    assert refusal(pem, {signature_name(INDEX): signature}).reason == "malformed"


def test_the_key_must_be_a_p256_public_key_and_the_message_says_where_to_get_it():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    p384 = (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    fix = (
        "give the promoter's public key in PEM (`gcloud kms keys versions get-public-key` on Google Cloud; "
        "<storage root>/promoter/index-signing.pub.pem locally)"
    )
    with pytest.raises(ConfigError) as caught:
        ServiceConfig.from_env({"INDEX_PUBLIC_KEY": p384.decode()})
    assert f"INDEX_PUBLIC_KEY: expected an EC P-256 public key (EC_SIGN_P256_SHA256); {fix}" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        ServiceConfig.from_env({"INDEX_PUBLIC_KEY": "hello"})
    assert "INDEX_PUBLIC_KEY: not a PEM public key (" in str(caught.value) and fix in str(caught.value)


def test_the_replay_guard_keeps_the_highest_sequence_alone_in_its_file(tmp_path):
    guard = ReplayGuard(str(tmp_path))
    assert guard.admit(index(None), "index.json") == 0  # a fresh service admits an index from before sequences
    for sequence in (9, 10, 10, 12):
        assert guard.admit(index(sequence), "index.json") == sequence
        assert (tmp_path / SEQUENCE_FILE).read_text() == str(max(9, sequence))
    with pytest.raises(IndexRefused) as refused:
        guard.admit(index(11), "gs://m/registry/index.json")
    assert str(refused.value) == (
        "gs://m/registry/index.json has sequence 11, older than the index this service accepted (sequence 12): an "
        "earlier index written back (a replay); the promoter's next write carries a higher sequence"
    )
    assert (tmp_path / SEQUENCE_FILE).read_text() == "12"


def test_without_a_state_dir_an_equal_sequence_is_the_same_index_read_again():
    guard = ReplayGuard(None)
    assert guard.admit(index(None), "index.json") == 0
    assert guard.admit(index(4), "index.json") == 4
    assert guard.admit(index(4), "index.json") == 4
    with pytest.raises(IndexRefused, match=r"^gs://m/index.json has sequence 3, older than .*\(sequence 4\)"):
        guard.admit(index(3), "gs://m/index.json")
    assert guard.admit(index(5), "index.json") == 5


@pytest.mark.parametrize("data", [b"not json", b"[]", b'{"sequence": -2}'])
def test_an_index_whose_sequence_cannot_be_read_is_malformed_and_named(data, tmp_path):
    with pytest.raises(IndexRefused) as refused:
        ReplayGuard(str(tmp_path)).admit(data, "gs://m/registry/index.json")
    assert refused.value.reason == "malformed" and str(refused.value).startswith("gs://m/registry/index.json: ")
    assert not (tmp_path / SEQUENCE_FILE).exists() or (tmp_path / SEQUENCE_FILE).read_text() == ""


def test_a_negative_sequence_is_named_once_with_its_index():
    with pytest.raises(IndexRefused) as refused:
        ReplayGuard(None).admit(b'{"sequence": -2}', "gs://m/registry/index.json")
    assert str(refused.value) == "gs://m/registry/index.json: sequence must be a non-negative integer, got int"
