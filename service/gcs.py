"""Read small objects from Google Cloud Storage with the standard library only.

Why not google-cloud-storage: with its auth stack (cryptography, protobuf, api-core) it adds about 42 MB to a
serving environment whose goal is <= 200 MB, and the service only reads two or three small objects at start-up.
Credentials, first found wins: none against STORAGE_EMULATOR_HOST (fake-gcs-server in tests); the authorized-user
file of `gcloud auth application-default login` (GOOGLE_APPLICATION_CREDENTIALS or the well-known path); the
metadata server that Cloud Run and Vertex AI provide (GCE_METADATA_HOST overrides its address).
Redirects are never followed: urllib's default handler would resend the bearer token to wherever a reply points.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

GCS_SCHEME = "gs://"
PUBLIC_API = "https://storage.googleapis.com"
TOKEN_URL = "https://oauth2.googleapis.com/token"
WELL_KNOWN_ADC = Path("~/.config/gcloud/application_default_credentials.json")
TIMEOUT_S = 30
RETRIES = 3


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Turn every 3xx into an HTTPError instead of a second request that would carry the same headers."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> None:
        return None


_OPENER = urllib.request.build_opener(_RefuseRedirects)


class GcsError(OSError):
    """A read from GCS failed; the message names the object and the reason."""


class GcsNotFound(GcsError):
    """The object (or its bucket) does not exist."""


def split_uri(uri: str) -> tuple[str, str]:
    """'gs://bucket/a/b' -> ('bucket', 'a/b')."""
    if not uri.startswith(GCS_SCHEME):
        raise GcsError(f"{uri}: not a gs:// URI")
    bucket, _, name = uri[len(GCS_SCHEME) :].partition("/")
    if not bucket:
        raise GcsError(f"{uri}: a gs:// URI needs a bucket name (gs://BUCKET/PATH)")
    return bucket, name


def api_base(environ: Mapping[str, str] = os.environ) -> str:
    emulator = environ.get("STORAGE_EMULATOR_HOST")
    if not emulator:
        return PUBLIC_API
    return emulator.rstrip("/") if "://" in emulator else f"http://{emulator.rstrip('/')}"


def build_request(
    uri: str,
    token: str | None,
    environ: Mapping[str, str] = os.environ,
    *,
    generation: int | None = None,
    metadata_only: bool = False,
) -> urllib.request.Request:
    """The JSON API media download of one object (`alt=media`; that very `generation` when given), or with
    `metadata_only` its generation alone (`fields=generation`, a reply of a few bytes), with a bearer token when
    one is needed."""
    bucket, name = split_uri(uri)
    query = "fields=generation" if metadata_only else "alt=media"
    if generation is not None:
        query += f"&generation={int(generation)}"
    url = (
        f"{api_base(environ)}/storage/v1/b/{urllib.parse.quote(bucket, safe='')}"
        f"/o/{urllib.parse.quote(name, safe='')}?{query}"
    )
    headers = {"User-Agent": "fmnist-service"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return urllib.request.Request(url, headers=headers, method="GET")


class TokenSource:
    """Caches one OAuth access token until a minute before it expires."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self._environ = environ
        self._token: str | None = None
        self._expires_at = 0.0

    def token(self) -> str | None:
        if self._environ.get("STORAGE_EMULATOR_HOST"):
            return None
        if self._token is None or time.time() > self._expires_at - 60:
            self._token, lifetime = self._fetch()
            self._expires_at = time.time() + lifetime
        return self._token

    def _fetch(self) -> tuple[str, float]:
        adc = self._environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        path = Path(adc).expanduser() if adc else WELL_KNOWN_ADC.expanduser()
        if path.is_file():
            return self._from_authorized_user(path)
        if adc:
            raise GcsError(f"GOOGLE_APPLICATION_CREDENTIALS={adc}: file not found")
        return self._from_metadata_server()

    def _from_authorized_user(self, path: Path) -> tuple[str, float]:
        info = json.loads(path.read_text())
        if info.get("type") != "authorized_user":
            raise GcsError(
                f"{path}: credentials of type {info.get('type')!r} are not supported by the service's "
                "GCS reader; run `gcloud auth application-default login`, or run on Cloud Run / Vertex AI "
                "where the metadata server provides a token"
            )
        body = urllib.parse.urlencode(
            {
                "grant_type": "refresh_token",
                "client_id": info["client_id"],
                "client_secret": info["client_secret"],
                "refresh_token": info["refresh_token"],
            }
        ).encode()
        reply = _json_request(urllib.request.Request(TOKEN_URL, data=body, method="POST"), "OAuth token endpoint")
        return reply["access_token"], float(reply.get("expires_in", 3600))

    def _from_metadata_server(self) -> tuple[str, float]:
        host = self._environ.get("GCE_METADATA_HOST") or "metadata.google.internal"
        url = f"http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
        request = urllib.request.Request(url, headers={"Metadata-Flavor": "Google"})
        try:
            reply = _json_request(request, "metadata server", retries=1, timeout=3)
        except GcsError as exc:
            raise GcsError(
                f"no Google Cloud credentials: {exc}. Outside Google Cloud run "
                "`gcloud auth application-default login` first"
            ) from None
        return reply["access_token"], float(reply.get("expires_in", 3600))


def _json_request(
    request: urllib.request.Request, what: str, retries: int = RETRIES, timeout: float = TIMEOUT_S
) -> dict[str, Any]:
    reply = json.loads(_send(request, what, retries, timeout))
    if not isinstance(reply, dict):
        raise GcsError(f"{what}: expected a JSON object, got {type(reply).__name__}")
    return reply


def _send(request: urllib.request.Request, what: str, retries: int = RETRIES, timeout: float = TIMEOUT_S) -> bytes:
    for attempt in range(retries):
        try:
            with _OPENER.open(request, timeout=timeout) as reply:
                data: bytes = reply.read()
                return data
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise GcsNotFound(f"{what}: not found (HTTP 404)") from None
            if 300 <= exc.code < 400:
                raise GcsError(
                    f"{what}: HTTP {exc.code} redirect refused (credentials are never sent to another address)"
                ) from None
            if exc.code in (401, 403):
                raise GcsError(
                    f"{what}: permission denied (HTTP {exc.code}); the service account needs "
                    "roles/storage.objectViewer on the bucket"
                ) from None
            if exc.code != 429 and exc.code < 500 or attempt == retries - 1:
                raise GcsError(f"{what}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            if attempt == retries - 1:
                raise GcsError(f"{what}: {getattr(exc, 'reason', exc)}") from None
        time.sleep(0.2 * 2**attempt)
    raise GcsError(f"{what}: no attempts made")


class GcsReader:
    """Reads whole objects, or an object's generation; one token source per reader."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self._environ = environ
        self._tokens = TokenSource(environ)

    def read(self, uri: str, generation: int | None = None) -> bytes:
        """The object's bytes (of that generation when given: GcsNotFound once it has been replaced)."""
        return _send(build_request(uri, self._tokens.token(), self._environ, generation=generation), uri)

    def generation(self, uri: str) -> int:
        """The object's generation: it changes on every rewrite, so a poll costs one small request."""
        request = build_request(uri, self._tokens.token(), self._environ, metadata_only=True)
        reply = _json_request(request, uri)
        try:
            return int(reply["generation"])
        except (KeyError, TypeError, ValueError):
            raise GcsError(f"{uri}: the metadata reply has no generation ({str(reply)[:80]})") from None
