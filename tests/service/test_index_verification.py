"""The service's check of the index signature, and the configuration of the key: each way a signature can be
wrong has its own reason, and a missing or wrong key stops start-up with a message that says what to give."""

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from contracts.index_signature import IndexSignature, index_digest, key_fingerprint, signature_name
from service.config import ConfigError, ServiceConfig
from service.index_verification import REFUSAL_REASONS, IndexRefused, IndexVerifier, NotFound

INDEX = b'{"aliases": {"champion": "v1"}, "versions": {"v1": {}}}'


def keypair():
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, pem, key_fingerprint(der)


def signed(key, fingerprint, data=INDEX, **changes) -> dict[str, bytes]:
    signature = IndexSignature(index_digest(data), key.sign(data, ec.ECDSA(hashes.SHA256())), fingerprint, "test")
    document = json.loads(signature.encode())
    document.update(changes)
    return {signature_name(data): json.dumps(document).encode()}


def verify(pem, objects: dict[str, bytes], data=INDEX):
    def read(name):
        if name not in objects:
            raise NotFound(name)
        return objects[name]

    return IndexVerifier.from_pem(pem, "test").verify(data, "gs://models", read)


def reason(pem, objects, data=INDEX) -> str:
    with pytest.raises(IndexRefused) as refused:
        verify(pem, objects, data)
    assert refused.value.reason in REFUSAL_REASONS
    return refused.value.reason


def test_the_promoters_signature_verifies():
    key, pem, fingerprint = keypair()
    assert verify(pem, signed(key, fingerprint)).key == fingerprint


def test_each_wrong_signature_has_its_reason():
    key, pem, fingerprint = keypair()
    other, _, other_fingerprint = keypair()
    assert reason(pem, {}) == "unsigned"
    assert reason(pem, signed(other, other_fingerprint)) == "other_key"
    assert reason(pem, signed(other, fingerprint)) == "bad_signature"  # claims the promoter's key, is not
    assert reason(pem, {signature_name(INDEX): b"not json"}) == "malformed"
    assert reason(pem, signed(key, fingerprint, algorithm="RSA_SIGN_PSS_2048_SHA256")) == "malformed"
    assert reason(pem, signed(key, fingerprint, signature="!!")) == "malformed"
    tampered = bytearray(base64.b64decode(json.loads(signed(key, fingerprint)[signature_name(INDEX)])["signature"]))
    tampered[-1] ^= 1
    assert reason(pem, signed(key, fingerprint, signature=base64.b64encode(bytes(tampered)).decode())) in (
        "bad_signature",
    )


def test_the_message_says_what_is_missing_and_who_may_write():
    _, pem, _ = keypair()
    with pytest.raises(IndexRefused, match=r"unsigned: gs://models/registry/signatures/[0-9a-f]{64}\.json does not"):
        verify(pem, {})


def test_the_key_is_read_from_the_environment_and_checked(tmp_path):
    _, pem, _ = keypair()
    path = tmp_path / "key.pem"
    path.write_bytes(pem)
    assert ServiceConfig.from_env({"INDEX_PUBLIC_KEY_FILE": str(path)}).index_public_key == pem
    assert ServiceConfig.from_env({"INDEX_PUBLIC_KEY": pem.decode()}).index_public_key == pem
    rsa_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ConfigError, match="expected an EC P-256 public key"):
        ServiceConfig.from_env({"INDEX_PUBLIC_KEY": rsa_pem.decode()})
    with pytest.raises(ConfigError, match="not a PEM public key"):
        ServiceConfig.from_env({"INDEX_PUBLIC_KEY": "hello"})
    with pytest.raises(ConfigError, match="cannot read it"):
        ServiceConfig.from_env({"INDEX_PUBLIC_KEY_FILE": str(tmp_path / "absent.pem")})
    with pytest.raises(ConfigError, match="both set"):
        ServiceConfig.from_env({"INDEX_PUBLIC_KEY_FILE": str(path), "INDEX_PUBLIC_KEY": pem.decode()})


def test_cloud_run_following_a_registry_needs_the_key():
    registry = {"K_SERVICE": "fmnist-predict", "MODEL_URI": "gs://models@champion"}
    with pytest.raises(ConfigError, match="REQUIRE_SIGNED_INDEX is on"):
        ServiceConfig.from_env(registry)
    assert ServiceConfig.from_env({**registry, "REQUIRE_SIGNED_INDEX": "false"}).index_public_key is None
    # a plain model directory (a Vertex AI endpoint's AIP_STORAGE_URI) has no index to sign
    assert ServiceConfig.from_env({"AIP_MODE": "PREDICTION", "AIP_STORAGE_URI": "gs://m/v1"}).index_public_key is None
