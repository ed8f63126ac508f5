"""Every error reply the service writes, from the WSGI environ: the Flask error handlers and the predict route's
plain WSGI handler (service/predict_route.py) both answer through `error_reply`, so a client cannot tell which
path refused it.

The body is {"error": <reason>, "detail": <sentence>} (service/errors.py); the reason labels the errors metric
and, left in the environ, the request's log line. Why a refused body is drained: a server that answers while the
client is still sending, then closes, makes the client's kernel see a reset, and most clients then report the
reset instead of the 413.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from service import metrics
from service.accounting import ERROR, REQUEST_ID
from service.errors import RequestError

log = logging.getLogger("service")
JSON_MIMETYPE = "application/json"
DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
# What is read of a refused body before the connection closes: Cloud Run's largest HTTP/1 request (32 MiB), so
# every body the platform lets through gets its 413; a client still sending after DRAIN_SECONDS is cut off.
DRAIN_BYTES = 32 * 1024 * 1024
DRAIN_SECONDS = 5.0
_DRAIN_CHUNK = 256 * 1024


def status_line(code: int) -> str:
    """The status line werkzeug writes for `code` ("413 REQUEST ENTITY TOO LARGE")."""
    return f"{code} {HTTP_STATUS_CODES.get(code, 'UNKNOWN').upper()}"


def drain_body(environ: Mapping[str, Any], limit: int = DRAIN_BYTES, seconds: float = DRAIN_SECONDS) -> int:
    """Read and discard what the client is still sending (at most `limit` bytes, for about `seconds`); the
    bytes read. A client that hangs up mid-body only loses its own error reply."""
    stream = environ.get("wsgi.input")
    deadline = time.monotonic() + seconds
    read = 0
    try:
        while stream is not None and read < limit and time.monotonic() < deadline:
            chunk = stream.read(min(_DRAIN_CHUNK, limit - read))
            if not chunk:
                break
            read += len(chunk)
    except Exception:  # noqa: BLE001 - see the docstring
        pass
    return read


def error_reply(
    environ: dict[str, Any], error: Exception, max_body_bytes: int
) -> tuple[int, bytes, list[tuple[str, str]]]:
    """(status, JSON body, extra headers) for an exception raised while answering; counted and logged."""
    headers: list[tuple[str, str]] = []
    if isinstance(error, RequestError):
        refusal = error
    elif isinstance(error, HTTPException):
        refusal = _http_refusal(environ, error, max_body_bytes)
        headers = [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]
        if error.code == 413:
            headers.append(("Connection", "close"))  # what is left of the body (past DRAIN_BYTES) is not read
    else:
        method, path = environ.get("REQUEST_METHOD", "?"), environ.get("PATH_INFO", "")
        log.error("unhandled error on %s %s", method, path, exc_info=error)
        refusal = RequestError(
            500,
            "internal_error",
            f"{type(error).__name__}: the service failed; see its logs for request id {environ.get(REQUEST_ID, '?')}",
        )
    environ[ERROR] = {"error": refusal.reason, "detail": refusal.detail}
    metrics.ERRORS.labels(refusal.reason).inc()
    return refusal.status, orjson.dumps(refusal.body(), option=DUMP_OPTIONS), headers


def _http_refusal(environ: Mapping[str, Any], error: HTTPException, max_body_bytes: int) -> RequestError:
    reason = (error.name or "http_error").lower().replace(" ", "_")
    detail = error.description or error.name
    path = environ.get("PATH_INFO", "")
    if error.code == 413:
        drain_body(environ)
        detail = (
            f"the body is over {max_body_bytes} bytes (the Vertex AI limit): split the batch or use the binary path"
        )
    elif error.code == 404:
        detail = f"no route {path}; see /openapi.json"
    elif error.code == 405:
        detail = f"{environ.get('REQUEST_METHOD', '?')} is not allowed on {path}; see /openapi.json"
    return RequestError(error.code or 400, reason, detail)
