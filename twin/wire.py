"""One small JSON-over-HTTP server that every fake of the twin speaks through.

Why one: the real Google clients (google-cloud-aiplatform and the GAPIC clients over REST, google-cloud-bigquery,
google-cloud-monitoring over REST, google-auth's metadata-server credentials) all send JSON over HTTP/1.1; each fake
only decides what to answer. Every request is recorded as it came over the wire, with its Authorization header, so a
test can check what the SDK sent, not what our code meant to send.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Request:
    """One request as it came over the wire: HTTP method, resource path (no API version), custom method, query,
    JSON body, and the Authorization header ('' when none was sent)."""

    method: str
    path: str
    verb: str
    query: dict[str, str]
    body: dict[str, Any]
    authorization: str = ""


Answer = tuple[int, Any]  # status, JSON body (a str is sent as text/plain)


def parse(method: str, raw_path: str, raw_body: bytes, prefixes: tuple[str, ...], authorization: str = "") -> Request:
    """Split `/v1/projects/p/...:verb?query` into a Request; `prefixes` are stripped from the path."""
    url = urlsplit(raw_path)
    path = unquote(url.path)
    for prefix in prefixes:
        if path.startswith(prefix):
            path = path.removeprefix(prefix)
            break
    path = path.strip("/")
    head, _, verb = path.rpartition(":") if ":" in path.rpartition("/")[2] else (path, "", "")
    query = {k: v[0] for k, v in parse_qs(url.query).items() if not k.startswith("$")}
    body = json.loads(raw_body) if raw_body.strip() else {}
    return Request(method, head, verb, query, body, authorization)


def not_found(path: str) -> Answer:
    return 404, {"error": {"code": 404, "message": f"{path} not found", "status": "NOT_FOUND"}}


@contextmanager
def serve(
    answer: Callable[[BaseHTTPRequestHandler, bytes], Answer], headers: dict[str, str] | None = None
) -> Iterator[str]:
    """Serve `answer(handler, body)` on 127.0.0.1 at an ephemeral port; yields `http://127.0.0.1:PORT`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                status, reply = answer(self, raw)
            except Exception as exc:  # noqa: BLE001 - a fake's bug reaches the client as a 500 with its message
                status, reply = 500, {"error": {"code": 500, "message": f"twin: {exc!r}", "status": "INTERNAL"}}
            text = isinstance(reply, str)
            body = reply.encode() if text else json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if text else "application/json")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        def log_message(self, *args: Any) -> None:  # the fakes record the requests
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    # shutdown() waits for the loop's next poll: at the default 0.5 s every fake's stop cost a test up to 0.5 s
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
