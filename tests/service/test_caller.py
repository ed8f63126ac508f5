"""The rollout's caller key: the identity Cloud Run verified when configured, else the trusted address; never a
header the client picks."""

from __future__ import annotations

import base64
import json

from service.caller import caller_key, verified_identity


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
