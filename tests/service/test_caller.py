"""The rollout's caller key: the identity Cloud Run verified when configured, else the trusted address; never a
header the client picks."""

from __future__ import annotations

import base64
import json

from service.caller import caller_key, client_bucket, verified_identity


def _token(claims: dict) -> str:
    def part(document: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()

    return f"Bearer {part({'alg': 'RS256'})}.{part(claims)}.sig"


def test_the_verified_token_names_the_caller():
    environ = {"HTTP_AUTHORIZATION": _token({"email": "app@p.iam.gserviceaccount.com", "sub": "123"})}
    assert verified_identity(environ) == "id:app@p.iam.gserviceaccount.com"
    assert verified_identity({"HTTP_AUTHORIZATION": _token({"sub": "123"})}) == "id:123"
    both = {"HTTP_X_SERVERLESS_AUTHORIZATION": _token({"sub": "first"}), "HTTP_AUTHORIZATION": _token({"sub": "b"})}
    assert verified_identity(both) == "id:first"  # Cloud Run checks X-Serverless-Authorization first


def test_anything_else_is_no_identity():
    for value in ("Bearer not-a-jwt", "Bearer a.!!!.c", "Basic abc", _token({"aud": "x"}), "Bearer a." + "x" * 9000):
        assert verified_identity({"HTTP_AUTHORIZATION": value}) == ""


def test_the_key_is_the_identity_only_where_configured_and_never_a_client_header():
    environ = {
        "HTTP_AUTHORIZATION": _token({"email": "a@b"}),
        "HTTP_X_CLIENT_ID": "always-the-challenger",
        "HTTP_X_FORWARDED_FOR": "203.0.113.9, 198.51.100.4",
        "REMOTE_ADDR": "10.0.0.1",
    }
    assert caller_key(environ, "cloud_run_iam", 1) == "id:a@b"
    assert caller_key(environ, "address", 1) == "ip:198.51.100.4"  # the hop Cloud Run's front end appended
    assert caller_key(environ, "address", 0) == "ip:10.0.0.1"
    assert caller_key({**environ, "HTTP_AUTHORIZATION": "Bearer admin-token"}, "cloud_run_iam", 1) == "ip:198.51.100.4"


def test_a_token_payload_of_any_length_is_read_without_its_padding():
    # the payload's base64 without "=": lengths of every remainder mod 4 that base64 produces (0, 2, 3)
    for sub in ("a", "ab", "abc", "abcd", "abcde", "abcdef"):
        token = _token({"sub": sub})
        assert len(token.split(".")[1]) % 4 in (0, 2, 3)
        assert verified_identity({"HTTP_AUTHORIZATION": token}) == f"id:{sub}", sub
    assert {len(_token({"sub": s}).split(".")[1]) % 4 for s in ("a", "ab", "abc")} == {0, 2, 3}


def test_a_token_up_to_the_size_limit_is_read_and_one_character_more_is_not():
    token = _token({"sub": "s"})
    at_limit = token + "x" * (8192 - len(token))  # the signature part grows: the payload is unchanged
    assert verified_identity({"HTTP_AUTHORIZATION": at_limit}) == "id:s"
    assert verified_identity({"HTTP_AUTHORIZATION": at_limit + "x"}) == ""


def test_claims_that_are_not_a_named_caller_are_no_identity():
    assert verified_identity({"HTTP_AUTHORIZATION": _token({"email": 7, "sub": 8})}) == ""
    assert verified_identity({"HTTP_AUTHORIZATION": _token({"email": "", "sub": "kept"})}) == "id:kept"
    listed = "Bearer e30." + base64.urlsafe_b64encode(b'["a@b"]').rstrip(b"=").decode() + ".sig"
    assert verified_identity({"HTTP_AUTHORIZATION": listed}) == ""  # JSON, but not an object of claims
    assert verified_identity({"HTTP_AUTHORIZATION": "bearer " + _token({"sub": "s"})[7:]}) == ""
    assert verified_identity({}) == ""


def test_each_header_is_tried_in_turn_when_the_first_holds_no_token():
    valid = _token({"sub": "second"})
    for first in ("Basic abc", "Bearer one-part", "Bearer a.!!!.c", "Bearer " + "x" * 9000):
        environ = {"HTTP_X_SERVERLESS_AUTHORIZATION": first, "HTTP_AUTHORIZATION": valid}
        assert verified_identity(environ) == "id:second", first


def test_without_a_verified_identity_the_key_is_the_address_under_any_identity_setting():
    environ = {"HTTP_X_FORWARDED_FOR": "203.0.113.9", "REMOTE_ADDR": "10.0.0.1"}
    assert caller_key(environ, "cloud_run_iam", 1) == "ip:203.0.113.9"
    assert caller_key({"REMOTE_ADDR": "10.0.0.2"}, "cloud_run_iam", 0) == "ip:10.0.0.2"
    assert caller_key({"HTTP_AUTHORIZATION": _token({"sub": "s"}), "REMOTE_ADDR": "10.0.0.3"}, "x", 0) == "ip:10.0.0.3"


def test_a_caller_s_bucket_is_the_same_in_every_worker_and_release():
    # the bucket labels drift's client counts and the feedback rows' poster (joined offline across releases):
    # BLAKE2b-64 of the key, big-endian, modulo CLIENT_BUCKETS (64), pinned on values computed outside Python
    assert [client_bucket(k) for k in ("ip:203.0.113.9", "id:app@p.iam.gserviceaccount.com", "ip:10.0.0.1")] == [
        26,
        30,
        56,
    ]
    assert client_bucket("ip:\udcff") == 50  # a lone surrogate is hashed as the byte it stands for, not refused
    long = "id:" + "x" * 197
    assert client_bucket(long + "a") == client_bucket(long + "b")  # only the first 200 characters count
    assert client_bucket(long[:-1] + "a") != client_bucket(long[:-1] + "b")
