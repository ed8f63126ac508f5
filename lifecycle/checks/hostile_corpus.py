"""Hostile requests, each a class of defect a single request could use to take a worker down or grow its state.

A check of the served model, shared by tests/service/test_hostile.py (a real gunicorn process: no 5xx, no worker
death, bounded memory) and bench/bench_hostile.py (CPU and peak memory of the worst of them beside a valid
64-image request); here rather than in tests/ because benches do not import the test suite.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

JSON = {"Content-Type": "application/json"}
OCTET = {"Content-Type": "application/octet-stream"}
ALWAYS_4XX = frozenset(range(400, 500))


@dataclass
class Hostile:
    name: str
    body: Callable[[], bytes] | None = None  # built on first use: some are megabytes
    method: str = "POST"
    path: str = "/predict"
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    expect: frozenset[int] = ALWAYS_4XX
    chunked: bool = False


def send(port: int, hostile: Hostile, timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
    """One request on its own connection, chunked when the case says so."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        body = hostile.body() if hostile.body else None
        if hostile.chunked and body is not None:
            pieces = (body[i : i + 65536] for i in range(0, len(body), 65536))
            conn.request(hostile.method, hostile.path, pieces, hostile.headers, encode_chunked=True)
        else:
            conn.request(hostile.method, hostile.path, body, hostile.headers)
        reply = conn.getresponse()
        return reply.status, dict(reply.getheaders()), reply.read()
    finally:
        conn.close()


def _json(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def png(width: int, height: int, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a size but holds one empty row: decoders must refuse it before allocating."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def jpeg(width: int, height: int) -> bytes:
    gradient = np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))
    buffer = io.BytesIO()
    Image.fromarray(gradient).save(buffer, format="JPEG", quality=50)
    return buffer.getvalue()


def jpeg_with_many_scan_markers(markers: int = 200) -> bytes:
    """A small JPEG whose comment segment holds `markers` start-of-scan pairs, as a scan bomb's bytes would."""
    raw = jpeg(64, 64)
    comment = b"\xff\xda" * markers
    return raw[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + raw[2:]


def b64(raw: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(raw).decode()}


def images(*instances: object) -> Callable[[], bytes]:
    return lambda: _json({"instances": list(instances)})


def _big_png_instances(count: int, width: int, height: int, mode: str) -> Callable[[], bytes]:
    def build() -> bytes:
        one = b64(png(width, height, mode))
        return _json({"instances": [one] * count})

    return build


def _fill_with(instance: dict[str, str], room: int) -> bytes:
    """As many copies of one image instance as fit in `room` bytes (at least one)."""
    return _json({"instances": [instance] * max(1, room // (len(instance["b64"]) + 12))})


def valid_64(seed: int = 0) -> bytes:
    """The reference: 64 valid images as nested JSON lists (the heavier of the two JSON forms)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (64, 28, 28))
    return _json({"instances": pixels.tolist()})


def corpus(max_body_bytes: int = 1_500_000, max_instances: int = 64) -> Iterator[Hostile]:
    """Every hostile case; bodies stay within `max_body_bytes` unless the case is about the limit itself."""
    room = max_body_bytes - 1000
    zeros = [0] * 783
    # One request must not exhaust a worker: strings, depth and length before any array conversion.
    yield Hostile("string_pixel_1MB", images(zeros + ["A" * (room - 4000)]))
    yield Hostile("string_pixel_in_every_instance", images(*[zeros + ["A" * (room // 70)]] * max_instances))
    yield Hostile("string_in_a_nested_row", images([[0] * 28] * 27 + [[0] * 27 + ["B" * (room - 6000)]]))
    yield Hostile("numeric_string_pixels", images(["1"] * 784))
    yield Hostile("flat_zeros_ending_in_a_string", lambda: _json({"instances": [[0] * (room // 2 - 10) + ["x"]]}))
    yield Hostile("many_short_instances", lambda: _json({"instances": [[0]] * (room // 4)}))
    yield Hostile("deep_nesting_in_an_instance", lambda: b'{"instances":[' + b"[" * 1000 + b"]" * 1000 + b"]}")
    yield Hostile("deep_nesting_within_the_json_limit", lambda: b'{"instances":[' + b"[" * 500 + b"]" * 500 + b"]}")
    yield Hostile("json_deeper_than_the_parser_allows", lambda: b'{"instances":[' + b"[" * 2000 + b"]" * 2000 + b"]}")
    yield Hostile("nulls_and_bools", images([None] * 392 + [True] * 392))
    yield Hostile("huge_numbers", lambda: b'{"instances":[[' + b",".join([b"1e308"] * 784) + b"]]}")
    yield Hostile("too_many_instances", images(*[[0] * 784] * (max_instances + 1)))
    # Images: declared size, decoded pixels, decoding time.
    yield Hostile("png_16bit_4096x4096", _big_png_instances(1, 4096, 4096, "I;16"))
    yield Hostile("png_16bit_4096x4096_x33", _big_png_instances(33, 4096, 4096, "I;16"))
    yield Hostile("png_16bit_2048x2048_x8", _big_png_instances(8, 2048, 2048, "I;16"))
    yield Hostile("png_16bit_1024x1024_x64", _big_png_instances(64, 1024, 1024, "I;16"))
    yield Hostile("png_1x4096_x64", _big_png_instances(64, 4096, 1, "L"))
    yield Hostile("png_header_20000x20000", images(b64(png_header_only(20000, 20000))))
    yield Hostile("png_header_4096x4096_empty", images(b64(png_header_only(4096, 4096))))
    # Large photos are served when they fit the budgets (a JPEG decodes at 1/8 size), else refused.
    yield Hostile(
        "jpeg_4096x4096_filling_the_body",
        lambda: _fill_with(b64(jpeg(4096, 4096)), room),
        expect=ALWAYS_4XX | {200},
    )
    yield Hostile("jpeg_many_scan_markers", images(b64(jpeg_with_many_scan_markers())))
    yield Hostile("base64_of_junk", images({"b64": "QUFB" * (room // 4 - 10)}))
    yield Hostile("b64_with_many_keys", lambda: _json({"instances": [{f"k{i}": 0 for i in range(room // 12)}]}))
    # Errors and logs must stay small whatever the request echoes.
    yield Hostile(
        "unknown_top_level_keys", lambda: _json({"instances": [[0] * 784], **{f"key{i}": 0 for i in range(room // 14)}})
    )
    yield Hostile(
        "unknown_parameters", lambda: _json({"instances": [[0] * 784], "parameters": {"x" * (room - 4000): 1}})
    )
    yield Hostile(
        "top_k_huge_list",
        lambda: _json({"instances": [[0] * 784], "parameters": {"top_k": [0] * ((room - 4000) // 2)}}),
    )
    yield Hostile(
        "top_k_huge_string", lambda: _json({"instances": [[0] * 784], "parameters": {"top_k": "9" * (room - 4000)}})
    )
    yield Hostile(
        "query_top_k_long", path="/predict?top_k=" + "9" * 3000, body=lambda: b"\0" * 784, headers=dict(OCTET)
    )
    yield Hostile(
        "query_top_k_unicode_digit", path="/predict?top_k=%C2%B2", body=lambda: b"\0" * 784, headers=dict(OCTET)
    )
    yield Hostile(
        "query_unknown_keys",
        path="/predict?" + "&".join(f"k{i}=1" for i in range(300)),
        body=lambda: b"\0" * 784,
        headers=dict(OCTET),
    )
    yield Hostile("long_path", method="GET", path="/" + "a" * 3000, body=None, headers={})
    yield Hostile("long_content_type", body=lambda: b"{}", headers={"Content-Type": "x/" + "y" * 6000})
    # Bodies: the limit holds for chunked bodies too, and a chunked body within it is read whole.
    yield Hostile(
        "chunked_over_the_limit",
        lambda: b"\0" * 784 * ((max_body_bytes // 784) + 100),
        headers=dict(OCTET),
        chunked=True,
    )
    yield Hostile("content_length_over_the_limit", lambda: b"\0" * (max_body_bytes + 1), headers=dict(OCTET))
    yield Hostile(
        "chunked_within_the_limit", lambda: b"\0" * 784 * 8, headers=dict(OCTET), chunked=True, expect=frozenset({200})
    )
    yield Hostile("binary_not_a_multiple", lambda: b"\0" * 785, headers=dict(OCTET))
    # Headers that end up in logs, and operator routes.
    yield Hostile(
        "hostile_request_id", images([0] * 784), headers={**JSON, "X-Request-Id": "x" * 4000}, expect=frozenset({200})
    )
    yield Hostile(
        "spoofed_forwarded_for",
        images([0] * 784),
        headers={**JSON, "X-Forwarded-For": "6.6.6.6, " * 500},
        expect=frozenset({200}),
    )
    yield Hostile(
        "long_user_agent", images([0] * 784), headers={**JSON, "User-Agent": "u" * 7000}, expect=frozenset({200})
    )
    yield Hostile(
        "drift_reset_without_token", method="POST", path="/monitoring/drift/reset", body=lambda: b"", headers={}
    )
    yield Hostile(
        "drift_reset_as_a_form_post",
        path="/monitoring/drift/reset",
        body=lambda: b"a=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    for i in range(40):
        yield Hostile(
            f"invented_method_{i}", method="QX" + "".join(chr(65 + int(d)) for d in f"{i:03d}"), body=None, headers={}
        )
