"""WSGI middleware around the Flask app: request id, latency, request metrics and one JSON log line per request.

Why a middleware rather than Flask before/after_request hooks: it reads the WSGI environ directly instead of
going through Flask's context-local proxies about thirty times per request, which measurably costs throughput
on single-image requests. Views and error handlers leave what the log line needs in the environ
(`fmnist.instances`, `fmnist.error`).
Why `posts`: the predict route is a plain WSGI handler (service/predict_route.py) that this middleware calls
directly for POST, skipping Flask on the hot path; everything else goes through Flask.
Why closed label sets: every label value the client can influence (method, route) is mapped onto a fixed set,
so no sequence of requests can grow the number of metric series. Why a strict request-id pattern and a
trusted hop of X-Forwarded-For: both end up in log lines that people search and trust.
"""

from __future__ import annotations

import ipaddress
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from service.limits import REQUEST_ID_PATTERN
from service.logs import RequestLog

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from service.state import ServiceState

REQUEST_ID = "fmnist.request_id"
INSTANCES = "fmnist.instances"
ERROR = "fmnist.error"
MODEL_VERSION = "fmnist.model_version"  # the version that answered (the predict view's snapshot)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)


def method_label(method: str) -> str:
    """The HTTP method as a metric label: one of METHODS, else "other"."""
    return method if method in METHODS else "other"


def request_id(header: str | None) -> str:
    """The client's X-Request-Id when it matches REQUEST_ID_PATTERN, else a fresh random one."""
    if header and _REQUEST_ID.fullmatch(header):
        return header
    return os.urandom(8).hex()


@lru_cache(maxsize=256)  # every request asks (its log line); the same few peers and proxies ask again and again
def client_ip(forwarded_for: str | None, remote_addr: str | None, trusted_hops: int) -> str:
    """The address of whoever connected to the last trusted proxy.

    Each proxy appends the address it saw to X-Forwarded-For, so only the last `trusted_hops` entries were
    written by infrastructure (Cloud Run's front end appends one; an external Application Load Balancer in front
    adds a second); everything left of them came from the client. With no trusted hop, the peer address is used."""
    address = remote_addr or ""
    if trusted_hops > 0 and forwarded_for:
        entries = forwarded_for.split(",")
        address = entries[-trusted_hops].strip() if len(entries) >= trusted_hops else ""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return ""


class AccountingMiddleware:
    def __init__(
        self,
        wsgi_app: WSGIApplication,
        state: ServiceState,
        routes: set[str],
        quiet_routes: set[str],
        request_log: RequestLog,
        trusted_hops: int = 0,
        posts: Mapping[str, WSGIApplication] | None = None,
    ) -> None:
        self._app = wsgi_app
        self._posts = dict(posts or {})  # path -> the handler of POST on it, in Flask's place
        self._state = state
        self._routes = routes
        self._quiet = quiet_routes
        self._log = request_log
        self._trusted_hops = trusted_hops

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        rid = request_id(environ.get("HTTP_X_REQUEST_ID"))
        environ[REQUEST_ID] = rid
        reply: dict[str, Any] = {}

        def start(
            status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
        ) -> Callable[[bytes], object]:
            headers.append(("X-Request-Id", rid))
            reply["status"], reply["headers"] = status, headers
            return start_response(status, headers, exc_info)

        path = environ.get("PATH_INFO", "")
        handler = self._posts.get(path) if environ["REQUEST_METHOD"] == "POST" else None
        body = (handler or self._app)(environ, start)
        latency = time.perf_counter() - started
        status = int(reply["status"][:3])
        route = path if path in self._routes else "unmatched"
        version = environ.get(MODEL_VERSION) or self._state.version
        self._state.count_request(route, method_label(environ["REQUEST_METHOD"]), status, latency, version)
        response_size = next((v for k, v in reply["headers"] if k == "Content-Length"), "0")
        self._log.write(
            method=environ["REQUEST_METHOD"],
            path=path,
            status=status,
            latency_s=latency,
            request_id=rid,
            request_size=environ.get("CONTENT_LENGTH") or "0",
            response_size=response_size,
            remote_ip=client_ip(environ.get("HTTP_X_FORWARDED_FOR"), environ.get("REMOTE_ADDR"), self._trusted_hops),
            user_agent=environ.get("HTTP_USER_AGENT"),
            trace_header=environ.get("HTTP_X_CLOUD_TRACE_CONTEXT"),
            quiet=route in self._quiet,
            instances=environ.get(INSTANCES, 0),
            error=environ.get(ERROR),
            model_version=version,
        )
        return body
