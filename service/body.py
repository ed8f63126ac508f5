"""Read a request body whole, or refuse it with 413: also a chunked one, which has no Content-Length.

Why not `request.get_data()`: for a body without Content-Length werkzeug stops reading at MAX_CONTENT_LENGTH
and returns what it has, so an oversize chunked body would be cut silently and parsed as if complete. Why from
the environ: the predict route answers without Flask (service/predict_route.py).
"""

from __future__ import annotations

from typing import Any

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_content_length, get_input_stream

_CHUNK = 65536


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """The body's bytes; RequestEntityTooLarge when there are more than `limit` of them."""
    if get_content_length(environ) is not None or "wsgi.input_terminated" not in environ:
        # what Flask's request.get_data() does: a Content-Length over the limit is refused before reading
        return get_input_stream(environ, max_content_length=limit).read()
    stream = environ["wsgi.input"]  # the server ends this stream where the chunked body ends
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = stream.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    raise RequestEntityTooLarge()
