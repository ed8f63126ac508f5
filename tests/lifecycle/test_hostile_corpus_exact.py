"""The hostile corpus itself, in-process: each case's request to the byte (what tests/service/test_hostile.py and
bench/bench_hostile.py send), and `send` over the wire to a recording loopback server.

Why: the served check only asks that no reply is a 5xx; a case whose body lost its hostile part (a string pixel
turned valid, a size under the limit) would pass there while testing nothing.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from lifecycle.checks import hostile_corpus
from lifecycle.checks.hostile_corpus import ALWAYS_4XX, JSON, OCTET, Hostile, corpus, send, valid_64

# name -> (body length, first 16 hex digits of its SHA-256) for bodies built without an image encoder
BODIES = {
    "string_pixel_1MB": (1496586, "d35d1e13532a4cdd"),
    "string_pixel_in_every_instance": (1471055, "d37a7f93e1473639"),
    "string_in_a_nested_row": (1494642, "a47178cf4a4528d5"),
    "numeric_string_pixels": (3153, "25e093ee53e04f95"),
    "flat_zeros_ending_in_a_string": (1499001, "cea524285fe0f933"),
    "many_short_instances": (1499015, "e262f0f6c73dabb8"),
    "deep_nesting_in_an_instance": (2016, "eeccdd6ba50227f1"),
    "deep_nesting_within_the_json_limit": (1016, "e88c83edc27feebd"),
    "json_deeper_than_the_parser_allows": (4016, "f25dda62ab63eba5"),
    "nulls_and_bools": (3937, "f9469d95d9c46170"),
    "huge_numbers": (4721, "da322068c13568da"),
    "too_many_instances": (102065, "18611a7b830b238b"),
    "png_header_20000x20000": (114, "0e774666774fec1e"),
    "png_header_4096x4096_empty": (114, "037b1dbfef071b73"),
    "base64_of_junk": (1498986, "5b4aea1a483d092a"),
    "b64_with_many_keys": (1387899, "9cae43b253cbd789"),
    "unknown_top_level_keys": (1389469, "1c91463a2e2f3b7e"),
    "unknown_parameters": (1496605, "a5321fcc0f02a893"),
    "top_k_huge_list": (1496610, "17f930ea1dc259c7"),
    "top_k_huge_string": (1496611, "cef0760806e50241"),
    "query_top_k_long": (784, "0c37ddc45244523c"),
    "query_top_k_unicode_digit": (784, "0c37ddc45244523c"),
    "query_unknown_keys": (784, "0c37ddc45244523c"),
    "long_path": (None, None),
    "long_content_type": (2, "44136fa355b3678a"),
    "chunked_over_the_limit": (1578192, "b8d963ac45489b83"),
    "content_length_over_the_limit": (1500001, "58f175280f3628fc"),
    "chunked_within_the_limit": (6272, "27e252c16d2f3c86"),
    "binary_not_a_multiple": (785, "451bd5d887fb164b"),
    "hostile_request_id": (1585, "91d6ede2fdc88343"),
    "spoofed_forwarded_for": (1585, "91d6ede2fdc88343"),
    "long_user_agent": (1585, "91d6ede2fdc88343"),
    "drift_reset_without_token": (0, "e3b0c44298fc1c14"),
    "drift_reset_as_a_form_post": (3, "c22fea5d7428e5cf"),
}
# name -> (instances, width, height, Pillow mode) for the PNG cases (Pillow's encoder: decoded, not hashed)
PNGS = {
    "png_16bit_4096x4096": (1, 4096, 4096, "I;16"),
    "png_16bit_4096x4096_x33": (33, 4096, 4096, "I;16"),
    "png_16bit_2048x2048_x8": (8, 2048, 2048, "I;16"),
    "png_16bit_1024x1024_x64": (64, 1024, 1024, "I;16"),
    "png_1x4096_x64": (64, 4096, 1, "L"),
}
pytestmark = pytest.mark.slow  # the corpus is built once (megabytes of JSON): 4 s quiet, 15 s at load 4
FOR_200 = {"hostile_request_id", "spoofed_forwarded_for", "long_user_agent", "chunked_within_the_limit"}


@pytest.fixture
def cases() -> dict[str, Hostile]:
    """The cases, bodies not built: each body test builds its own (some are megabytes), so a test that fails stops
    the run early. Each test's own: mutmut credits what a fixture reaches to the test that built it."""
    return {case.name: case for case in corpus()}


def test_the_corpus_is_these_cases_in_this_order(cases):
    invented = [f"invented_method_{i}" for i in range(40)]
    expected = [*list(BODIES)[:12], *list(PNGS), *list(BODIES)[12:14], "jpeg_4096x4096_filling_the_body"]
    expected += ["jpeg_many_scan_markers", *list(BODIES)[14:], *invented]
    assert list(cases) == expected


def test_each_request_line_headers_and_expected_statuses(cases):
    for name, case in cases.items():
        assert case.expect == (
            frozenset({200}) if name in FOR_200 else ALWAYS_4XX | {200} if name.startswith("jpeg_4096") else ALWAYS_4XX
        ), name
        assert case.chunked == name.startswith("chunked_"), name
        if name.startswith("invented_method_"):
            i = int(name.rsplit("_", 1)[1])
            assert (case.method, case.path, case.headers, case.body) == (
                "QX" + "".join(chr(65 + int(d)) for d in f"{i:03d}"),
                "/predict",
                {},
                None,
            )
    assert frozenset(range(400, 500)) == ALWAYS_4XX and 399 not in ALWAYS_4XX and 499 in ALWAYS_4XX
    assert (JSON, OCTET) == ({"Content-Type": "application/json"}, {"Content-Type": "application/octet-stream"})
    methods = {case.method for case in cases.values() if not case.method.startswith("QX")}
    assert methods == {"POST", "GET"} and cases["long_path"].method == "GET"
    assert cases["invented_method_0"].method == "QXAAA" and cases["invented_method_39"].method == "QXADJ"
    paths = {name: case.path for name, case in cases.items() if case.path != "/predict"}
    assert paths == {
        "query_top_k_long": "/predict?top_k=" + "9" * 3000,
        "query_top_k_unicode_digit": "/predict?top_k=%C2%B2",
        "query_unknown_keys": "/predict?" + "&".join(f"k{i}=1" for i in range(300)),
        "long_path": "/" + "a" * 3000,
        "drift_reset_without_token": "/monitoring/drift/reset",
        "drift_reset_as_a_form_post": "/monitoring/drift/reset",
    }
    headers = {name: case.headers for name, case in cases.items() if case.headers != JSON}
    octet = ["query_top_k_long", "query_top_k_unicode_digit", "query_unknown_keys", "chunked_over_the_limit"]
    octet += ["content_length_over_the_limit", "chunked_within_the_limit", "binary_not_a_multiple"]
    assert headers == {
        **dict.fromkeys(octet, OCTET),
        "long_path": {},
        "long_content_type": {"Content-Type": "x/" + "y" * 6000},
        "hostile_request_id": {**JSON, "X-Request-Id": "x" * 4000},
        "spoofed_forwarded_for": {**JSON, "X-Forwarded-For": "6.6.6.6, " * 500},
        "long_user_agent": {**JSON, "User-Agent": "u" * 7000},
        "drift_reset_without_token": {},
        "drift_reset_as_a_form_post": {"Content-Type": "application/x-www-form-urlencoded"},
        **{f"invented_method_{i}": {} for i in range(40)},
    }
    # each case's own headers: a shared default dict changed for one case would change them all
    assert len({id(case.headers) for case in cases.values()}) == len(cases)


@pytest.mark.parametrize("name", list(BODIES))
def test_each_body_is_the_same_bytes(cases, name):
    body = cases[name].body() if cases[name].body else None
    built = (None, None) if body is None else (len(body), hashlib.sha256(body).hexdigest()[:16])
    assert built == BODIES[name]


def _decoded(instance: dict[str, str]) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(instance["b64"])))


@pytest.mark.parametrize("name", list(PNGS))
def test_png_cases_decode_to_their_declared_size_and_depth(cases, name):
    count, width, height, mode = PNGS[name]
    instances = json.loads(cases[name].body())["instances"]
    assert len(instances) == count and all(instance == instances[0] for instance in instances)
    image = _decoded(instances[0])
    assert (image.format, image.size, image.mode) == ("PNG", (width, height), mode)


def test_png_header_only_declares_a_size_it_does_not_hold():
    raw = hostile_corpus.png_header_only(20000, 3000)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[8:16] == b"\x00\x00\x00\x0dIHDR"
    assert raw[16:29] == (20000).to_bytes(4, "big") + (3000).to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    assert raw[-12:] == b"\x00\x00\x00\x00IEND\xae\x42\x60\x82"
    image = Image.open(io.BytesIO(raw))  # Pillow reads the header (and its CRC) without decoding
    assert (image.size, image.mode) == ((20000, 3000), "L")
    with pytest.raises(OSError):
        image.load()


def test_the_jpeg_cases(cases):
    body = cases["jpeg_4096x4096_filling_the_body"].body()
    instances = json.loads(body)["instances"]
    size = len(instances[0]["b64"]) + 12
    room = 1_500_000 - 1000
    assert len(instances) == room // size and all(instance == instances[0] for instance in instances)
    image = _decoded(instances[0])
    assert (image.format, image.size, image.mode) == ("JPEG", (4096, 4096), "L")
    # quality 50: the standard tables unscaled (as a reference image saved at 50 holds them)
    reference = io.BytesIO()
    Image.new("L", (8, 8)).save(reference, format="JPEG", quality=50)
    assert image.quantization == Image.open(reference).quantization
    (scan,) = json.loads(cases["jpeg_many_scan_markers"].body())["instances"]
    raw = base64.b64decode(scan["b64"])
    assert raw[:6] == b"\xff\xd8\xff\xfe" + (402).to_bytes(2, "big") and raw[6:406] == b"\xff\xda" * 200
    plain = raw[:2] + raw[406:]
    gradient = np.asarray(Image.open(io.BytesIO(plain)))
    assert gradient.shape == (64, 64) and gradient[:, 0].max() < 8 and gradient[:, -1].min() > 247


def test_fill_with_fits_the_room_and_sends_at_least_one():
    instance = {"b64": "A" * 88}
    assert len(json.loads(hostile_corpus._fill_with(instance, 1000))["instances"]) == 10
    assert len(json.loads(hostile_corpus._fill_with(instance, 999))["instances"]) == 9
    assert len(json.loads(hostile_corpus._fill_with(instance, 5))["instances"]) == 1


def test_the_limits_follow_the_arguments():
    small = {case.name: case for case in corpus(max_body_bytes=20_000, max_instances=3)}
    assert len(small["content_length_over_the_limit"].body()) == 20_001
    assert len(json.loads(small["too_many_instances"].body())["instances"]) == 4
    assert len(json.loads(small["string_pixel_in_every_instance"].body())["instances"]) == 3
    assert len(small["chunked_over_the_limit"].body()) == 784 * (20_000 // 784 + 100)


def test_valid_64_is_64_images_of_random_pixels():
    body = valid_64(seed=3)
    assert (
        body
        == json.dumps(
            {"instances": np.random.default_rng(3).integers(0, 256, (64, 28, 28)).tolist()}, separators=(",", ":")
        ).encode()
    )
    assert valid_64() == valid_64(0) != body


class _Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, dict[str, str], bytes]] = []
    chunks: list[int] = []

    def _record(self) -> None:
        if self.headers.get("Transfer-Encoding") == "chunked":
            body = b""
            while size := int(self.rfile.readline().strip(), 16):
                self.chunks.append(size)
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append((self.command, self.path, dict(self.headers), body))
        reply = b'{"ok":1}'
        self.send_response(418)
        self.send_header("X-Seen", str(len(body)))
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_POST = do_GET = do_QXAAA = _record

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def recorder():
    _Recorder.seen, _Recorder.chunks = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], _Recorder
    server.shutdown()
    server.server_close()


def test_send_sends_the_case_and_returns_status_headers_and_body(recorder):
    port, recorded = recorder
    seen = recorded.seen
    body = bytes(range(256)) * 600  # 153,600 bytes: three chunks of 64 KiB at most
    status, headers, reply = send(port, Hostile("x", lambda: body, path="/p?q=1", headers=dict(OCTET), chunked=True))
    assert (status, headers["X-Seen"], reply) == (418, str(len(body)), b'{"ok":1}')
    ((method, path, sent, received),) = seen
    assert (method, path, sent["Transfer-Encoding"], received) == ("POST", "/p?q=1", "chunked", body)
    assert sent["Content-Type"] == "application/octet-stream" and "Content-Length" not in sent
    assert recorded.chunks == [65536, 65536, 22528]  # pieces of 64 KiB
    send(port, Hostile("y", lambda: b"abc", headers={"X-A": "1"}))
    assert seen[1][3] == b"abc" and seen[1][2]["Content-Length"] == "3" and seen[1][2]["X-A"] == "1"
    assert "Transfer-Encoding" not in seen[1][2]
    send(port, Hostile("z", None, method="QXAAA", headers={}, chunked=True))
    assert seen[2][:2] == ("QXAAA", "/predict") and seen[2][3] == b""
    assert "Transfer-Encoding" not in seen[2][2]


def test_png_draws_a_blank_image_grey_by_default():
    image = Image.open(io.BytesIO(hostile_corpus.png(5, 3)))
    assert (image.format, image.size, image.mode, image.getextrema()) == ("PNG", (5, 3), "L", (0, 0))
