"""The per-request bounds the service enforces, in one place: the parsers, the OpenAPI description and
SECURITY.md quote these names, so what is documented is what is enforced.

Why these values: a worker must survive any single request within 512 MiB (Cloud Run's memory for the
service) and the sync workers' 30 s timeout; bench/bench_hostile.py measures the worst request of the hostile
corpus against a valid 64-image request.
"""

from __future__ import annotations

# JSON bodies: an instance is a flat list of 784 numbers or 28 lists of 28 numbers; nothing deeper is walked.
MAX_LIST_NESTING = 2

# {"b64": ...} images.
MAX_ENCODED_CHARS = 2_000_000  # base64 characters of one image (the body limit is the tighter bound)
MAX_SIDE = 4096  # pixels per side, as declared in the image header
# Decoded pixels are counted as the square the conversion pads an image to: max(width, height) ** 2, with a
# JPEG's width and height after its decoder's 1/2..1/8 downscaling.
MAX_IMAGE_PIXELS = 1024 * 1024  # per image (a 16-bit PNG of that size: about 11 ms of CPU)
MAX_REQUEST_PIXELS = 4 * 1024 * 1024  # all images of one request together
DECODE_CPU_BUDGET_S = 0.05  # CPU seconds one request may spend decoding images (checked after each image)
MAX_JPEG_SCANS = 64  # start-of-scan markers: a progressive JPEG with thousands of scans costs a pass each

# What the service writes back or logs about a request.
MAX_DETAIL_CHARS = 512  # an error's detail sentence
MAX_ECHO_CHARS = 40  # a client value quoted inside a detail (a key name, a parameter value)
MAX_ECHOED_NAMES = 5  # unknown keys listed in a detail before "and N more"
MAX_LOG_FIELD_CHARS = 512  # each client-supplied string in a request log line (path, user agent, method)
MAX_LOG_LINE_BYTES = 8192  # one request log line, far below Cloud Logging's 256 KB entry limit

# X-Request-Id is accepted from the client only in this form; anything else is replaced by a generated id.
REQUEST_ID_PATTERN = r"[A-Za-z0-9._:-]{1,64}"


def shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    note = f"... ({len(text) - limit} more characters)"
    return text[: max(0, limit - len(note))] + note


def echo(value: object) -> str:
    """A client value as a short, bounded description: cheap even for a megabyte-sized string or list."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return shorten(repr(value), MAX_ECHO_CHARS)
    if isinstance(value, str):
        return repr(shorten(value, MAX_ECHO_CHARS))
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return f"an object with {len(value)} key(s)"
    return type(value).__name__


def echo_names(names: list[str]) -> str:
    """At most MAX_ECHOED_NAMES client-supplied names, each shortened, then how many more there were."""
    shown = ", ".join(repr(shorten(str(name), MAX_ECHO_CHARS)) for name in names[:MAX_ECHOED_NAMES])
    if len(names) > MAX_ECHOED_NAMES:
        shown += f" and {len(names) - MAX_ECHOED_NAMES} more"
    return shown
