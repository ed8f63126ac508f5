"""Who is calling, as the platform vouches for it: the key a rollout routes and counts clients by.

Why not a header the client writes (the old X-Client-Id): a client that picks its own key picks its side of the
canary and can pose as any number of clients. Two sources a client cannot forge:
- CALLER_IDENTITY=cloud_run_iam, for a Cloud Run service that requires IAM (no allUsers invoker): Cloud Run has
  verified the Google-signed ID token in X-Serverless-Authorization or Authorization before the request arrives,
  so its `email` (or `sub`) claim names the caller. The payload is read, not re-verified: that is why this mode
  must never be set on a public service (infra/ sets it only when `infra.public_endpoint` is false).
- otherwise the client address the last trusted proxy saw (accounting.client_ip, TRUSTED_PROXY_HOPS).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import orjson

from service.accounting import client_ip
from service.config import CLIENT_BUCKETS

_TOKEN_HEADERS = ("HTTP_X_SERVERLESS_AUTHORIZATION", "HTTP_AUTHORIZATION")
_MAX_TOKEN_CHARS = 8192


def verified_identity(environ: Mapping[str, Any]) -> str:
    """The `email` (else `sub`) claim of the ID token Cloud Run verified; "" when there is none."""
    for header in _TOKEN_HEADERS:
        value = environ.get(header) or ""
        if not value.startswith("Bearer ") or len(value) > _MAX_TOKEN_CHARS:
            continue
        parts = value[7:].strip().split(".")
        if len(parts) < 2:
            continue
        try:
            claims = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except (binascii.Error, ValueError):
            continue
        if isinstance(claims, dict):
            who = claims.get("email") or claims.get("sub")
            if isinstance(who, str) and who:
                return f"id:{who}"
    return ""


def caller_key(environ: Mapping[str, Any], identity: str, trusted_hops: int) -> str:
    """The rollout's key for this request: the verified identity where configured and present, else the address."""
    if identity == "cloud_run_iam":
        who = verified_identity(environ)
        if who:
            return who
    address = client_ip(environ.get("HTTP_X_FORWARDED_FOR"), environ.get("REMOTE_ADDR"), trusted_hops)
    return f"ip:{address}"


@lru_cache(maxsize=4096)
def client_bucket(key: str) -> int:
    """The caller's bucket among CLIENT_BUCKETS for counting distinct clients (drift). Unkeyed: the key itself is
    not the client's to choose, and the bucket decides no route. Cached: a worker sees the same callers again."""
    digest = hashlib.blake2b(key[:200].encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % CLIENT_BUCKETS
