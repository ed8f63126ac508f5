"""The signature object as the service reads it: what `encode` writes decodes to the same signature, and each way
an object can be malformed is refused with a message naming the field (the service's refusal repeats it)."""

from __future__ import annotations

import hashlib
import json

import pytest

from contracts.index_signature import IndexSignature, SignatureFormatError, key_fingerprint

GOOD = IndexSignature("ab" * 32, b"\x30\x44der", "sha256:" + "cd" * 32, "local key")


def refusal(document: object) -> str:
    data = document if isinstance(document, bytes) else json.dumps(document).encode()
    with pytest.raises(SignatureFormatError) as refused:
        IndexSignature.decode(data)
    return str(refused.value)


def test_what_encode_writes_decodes_to_the_same_signature():
    assert IndexSignature.decode(GOOD.encode()) == GOOD


@pytest.mark.parametrize("name", ["algorithm", "index_sha256", "key", "signature", "signer"])
def test_an_empty_or_missing_field_is_refused_by_name(name):
    document = json.loads(GOOD.encode())
    assert refusal({**document, name: ""}) == f"'{name}' must be a non-empty string"
    assert refusal({**document, name: 7}) == f"'{name}' must be a non-empty string"
    del document[name]
    assert refusal(document) == f"'{name}' must be a non-empty string"


def test_a_document_that_is_not_a_signature_says_what_it_is():
    assert refusal(b"{not json").startswith("not valid JSON (Expecting property name")
    assert refusal([1]) == "expected a JSON object"
    assert refusal({**json.loads(GOOD.encode()), "signature": "not base64!"}) == "'signature' is not base64"


def test_the_stored_form_is_sorted_indented_json():
    assert GOOD.encode() == (
        b'{\n  "algorithm": "EC_SIGN_P256_SHA256",\n  "index_sha256": "'
        + b"ab" * 32
        + b'",\n  "key": "sha256:'
        + b"cd" * 32
        + b'",\n  "signature": "MERkZXI=",\n  "signer": "local key"\n}'
    )


def test_a_key_is_named_by_the_sha256_of_its_der_form():
    assert key_fingerprint(b"der") == "sha256:" + hashlib.sha256(b"der").hexdigest()
