"""Read a request body whole, or refuse it with 413: also a chunked one, which has no Content-Length.

Why not `request.get_data()`: for a body without Content-Length werkzeug stops reading at MAX_CONTENT_LENGTH
and returns what it has, so an oversize chunked body would be cut silently and parsed as if complete.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from werkzeug.exceptions import RequestEntityTooLarge

if TYPE_CHECKING:
    from flask import Request

_CHUNK = 65536


def read_body(request: Request, limit: int) -> bytes:
    """The body's bytes; RequestEntityTooLarge when there are more than `limit` of them."""
    if request.content_length is not None or "wsgi.input_terminated" not in request.environ:
        return request.get_data(cache=False)  # werkzeug refuses a Content-Length over the limit before reading
    stream = request.environ["wsgi.input"]  # the server ends this stream where the chunked body ends
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = stream.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    raise RequestEntityTooLarge()
