"""The twin's credentials: a metadata server, as a Vertex AI job or pipeline task gets its identity on Google Cloud.

Why a metadata server and not anonymous credentials: the adapters call `google.auth.default()` (directly or through
the SDKs) and must keep doing so unchanged. google-auth honours `GCE_METADATA_HOST` (token and identity) and
`GCE_METADATA_IP` (the "am I on Google Cloud" ping) from the environment, so pointing both at this server gives every
process of the twin, and every container it runs, Compute Engine credentials of the service account the twin names:
a real token refresh, and a Bearer token on every request that the fakes record. google-auth reads GCE_METADATA_HOST
once, at import: a process that already imported it (a test) uses `service_account_file` instead, a service-account
key (GOOGLE_APPLICATION_CREDENTIALS, read at each `google.auth.default()`) whose token URI is this server. (An
authorized-user file will not do: google-auth always sends its refresh to oauth2.googleapis.com, whatever the
file says.)
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs

from twin import wire

FLAVOR = {"Metadata-Flavor": "Google"}
TOKEN_PREFIX = "twin-token-"


@dataclass
class FakeMetadata:
    project: str
    account: str
    requests: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)  # what each token request asked for (Google's grant checks it)
    host: str = ""  # host:port, for GCE_METADATA_HOST and GCE_METADATA_IP
    _tokens: Iterator[int] = field(default_factory=itertools.count)

    def token(self) -> dict[str, object]:
        return {"access_token": f"{TOKEN_PREFIX}{next(self._tokens)}", "expires_in": 3600, "token_type": "Bearer"}

    def answer(self, method: str, path: str, body: bytes = b"") -> wire.Answer:
        self.requests.append(path)
        if method == "POST" and path == "/token":  # the service-account key's JWT-bearer grant
            self.scopes.append(_granted_scope(body))
            return 200, self.token()
        path, _, query = path.partition("?")
        path = path.removeprefix("/computeMetadata/v1").rstrip("/")
        if path == "":
            return 200, "computeMetadata/"  # the ping: only the Metadata-Flavor header matters
        account = "instance/service-accounts/default"
        if path == f"/{account}/token":
            self.scopes.append(",".join(parse_qs(query).get("scopes", [""])))
            return 200, self.token()
        if path == f"/{account}":
            return 200, {
                "email": self.account,
                "aliases": ["default"],
                "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
            }
        if path == f"/{account}/email":
            return 200, self.account
        if path == "/project/project-id":
            return 200, self.project
        if path == "/universe/universe-domain":
            return 200, "googleapis.com"
        return 404, f"{path} not found"

    def service_account_file(self, path: Path) -> Path:
        """A service-account key of the twin's account (a fresh RSA key) whose token grant comes here."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        info = {"type": "service_account", "project_id": self.project, "private_key_id": "twin", "private_key": pem}
        info.update(client_email=self.account, client_id="1", token_uri=f"http://{self.host}/token")
        path.write_text(json.dumps(info))
        return path

    def environment(self) -> dict[str, str]:
        """What a process needs to find this server (and no other credentials first)."""
        return {"GCE_METADATA_HOST": self.host, "GCE_METADATA_IP": self.host}


def _granted_scope(body: bytes) -> str:
    """The `scope` claim of a JWT-bearer grant's assertion (read, not verified: the twin trusts its own keys)."""
    assertion = parse_qs(body.decode()).get("assertion", [""])[0]
    payload = assertion.split(".")[1] if assertion.count(".") == 2 else ""
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)) or b"{}")
    return str(claims.get("scope", ""))


@contextmanager
def serve(project: str, account: str) -> Iterator[FakeMetadata]:
    fake = FakeMetadata(project, account)

    def answer(handler: BaseHTTPRequestHandler, raw: bytes) -> wire.Answer:
        return fake.answer(handler.command, handler.path, raw)

    with wire.serve(answer, headers=FLAVOR) as url:
        fake.host = url.removeprefix("http://")
        yield fake
