"""The request parser at its edges: the exact status, reason and sentence of every refusal, each limit at N and
N+1, each encoding's exact pixels and label, and the one-conversion fast path taken by every plain numeric body.

The sentences are asserted whole: they are what a client reads to fix its request, so a changed or lost word
(a position, a limit, the instance index) is a regression, not cosmetics."""

import base64
import io
import json
import math

import numpy as np
import pytest
from PIL import Image

import service.request_parsing as rp
from service.errors import RequestError
from service.images import DecodeBudget
from service.limits import echo
from service.request_parsing import parse_binary, parse_json, parse_query, parse_top_k

SHAPE_HINT = "expected 28x28 (nested list) or 784 (flat list)"
RANGE_HINT = "is outside 0..255 (send raw pixel values, not scaled ones)"


def dumps(document) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (28, 28), dtype=np.uint8)


def encoded(img: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def b64(raw: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(raw).decode()}


def refusal(call, *args) -> tuple[int, str, str, int | None]:
    with pytest.raises(RequestError) as caught:
        call(*args)
    error = caught.value
    return error.status, error.reason, error.detail, error.instance


# --- top_k, from the JSON parameters or the query string -------------------------------------------------------


@pytest.mark.parametrize(
    "value,where,expected",
    [
        (None, "parameters", None),
        (None, "query", None),
        (1, "parameters", 1),
        (10, "parameters", 10),
        ("1", "query", 1),
        ("10", "query", 10),
        ("00000007", "query", 7),  # 8 characters: the longest query value read
        (" 3 ", "query", 3),
    ],
)
def test_top_k_accepted_at_both_ends_of_its_range(value, where, expected):
    top_k = parse_top_k(value, where)
    assert top_k == expected and type(top_k) is type(expected)


@pytest.mark.parametrize(
    "value,shown",
    [
        (0, "0"),
        (11, "11"),
        (-1, "-1"),
        (True, "true"),
        (False, "false"),
        (2.0, "2.0"),
        ("3", "'3'"),
        ([3], "a list of 1"),
    ],
)
def test_top_k_outside_1_to_10_or_not_an_int_in_the_parameters(value, shown):
    assert refusal(parse_top_k, value, "parameters") == (
        400,
        "bad_parameters",
        f"parameters.top_k must be a whole number from 1 to 10, got {shown}",
        None,
    )


@pytest.mark.parametrize("value", ["000000003", "x", "", "-1", "3.0", "\u00b2", "9" * 5000])
def test_query_top_k_that_is_not_a_short_ascii_whole_number(value):
    status, reason, detail, instance = refusal(parse_top_k, value, "query")
    assert (status, reason, instance) == (400, "bad_parameters", None)
    assert detail == f"top_k={echo(value)} in the query string must be a whole number from 1 to 10"


@pytest.mark.parametrize("value,shown", [("0", "0"), ("11", "11"), ("00000000", "0")])
def test_query_top_k_out_of_range_names_the_query_string(value, shown):
    assert refusal(parse_top_k, value, "query") == (
        400,
        "bad_parameters",
        f"top_k in the query string must be a whole number from 1 to 10, got {shown}",
        None,
    )


def test_query_accepts_top_k_only():
    assert parse_query({}) is None
    assert parse_query({"top_k": "4"}) == 4
    assert refusal(parse_query, {"top_k": "2", "k": "1", "limit": "3"}) == (
        400,
        "bad_parameters",
        "unknown query parameter(s) 'k', 'limit'; the predict route accepts only top_k",
        None,
    )


# --- the binary path: N x 784 uint8 ------------------------------------------------------------------------------


def test_binary_at_the_instance_limit_is_exact_row_major_float32():
    raw = (np.arange(8 * 784) * 7 % 256).astype(np.uint8)
    parsed = parse_binary(raw.tobytes(), 8, {})
    assert parsed.pixels.dtype == np.float32 and parsed.pixels.shape == (8, 28, 28)
    np.testing.assert_array_equal(parsed.pixels, raw.reshape(8, 28, 28).astype(np.float32))
    assert parsed.pixels[1, 2, 3] == raw[784 + 2 * 28 + 3]  # row-major: byte i is row i // 28, column i % 28
    assert (parsed.top_k, parsed.notes, parsed.encoding) == (None, [], "binary")
    assert parse_binary(raw[:784].tobytes(), 1, {"top_k": "10"}).top_k == 10


@pytest.mark.parametrize(
    "size,reason,detail",
    [
        (0, "empty_instances", "the body is empty; send N x 784 uint8 pixels (N >= 1)"),
        (
            783,
            "bad_shape",
            "the body has 783 bytes, not a multiple of 784: send N whole 28x28 uint8 images, row-major, back to back",
        ),
        (
            2 * 784 + 1,
            "bad_shape",
            "the body has 1569 bytes, not a multiple of 784: send N whole 28x28 uint8 images, row-major, back to back",
        ),
        (
            9 * 784,
            "too_many_instances",
            "9 images in one request; the limit is 8 (MAX_INSTANCES): split the batch",
        ),
    ],
)
def test_binary_refusals(size, reason, detail):
    assert refusal(parse_binary, b"\x07" * size, 8, {}) == (400, reason, detail, None)


def test_binary_checks_the_query_before_the_body():
    assert refusal(parse_binary, b"", 8, {"top_k": "0"})[1] == "bad_parameters"


# --- request-level refusals of JSON bodies ----------------------------------------------------------------------

NOT_AN_OBJECT = 'the body must be a JSON object {"instances": [...]}, got '


@pytest.mark.parametrize(
    "raw,reason,detail",
    [
        (b"null", "bad_request_shape", NOT_AN_OBJECT + "null"),
        (b"[1,2]", "bad_request_shape", NOT_AN_OBJECT + "an array"),
        (b'"x"', "bad_request_shape", NOT_AN_OBJECT + "a string"),
        (b"3", "bad_request_shape", NOT_AN_OBJECT + "a number"),
        (
            b'{"instances":[],"extra":1,"more":2}',
            "bad_request_shape",
            "unknown key(s) 'extra', 'more'; the body accepts 'instances' and 'parameters'",
        ),
        (b'{"parameters":{}}', "missing_instances", "the body has no 'instances' list"),
        (b'{"instances":{"a":1}}', "missing_instances", "'instances' must be a list, got an object"),
        (b'{"instances":"x"}', "missing_instances", "'instances' must be a list, got a string"),
        (b'{"instances":null}', "missing_instances", "'instances' must be a list, got null"),
        (b'{"instances":true}', "missing_instances", "'instances' must be a list, got a boolean"),
        (b'{"instances":7}', "missing_instances", "'instances' must be a list, got a number"),
        (b'{"instances":7.5}', "missing_instances", "'instances' must be a list, got a number"),
        (b'{"instances":[]}', "empty_instances", "'instances' is empty; send at least one image"),
        (b'{"instances":[[1]],"parameters":[]}', "bad_parameters", "'parameters' must be an object, got an array"),
        (b'{"instances":[[1]],"parameters":3}', "bad_parameters", "'parameters' must be an object, got a number"),
        (
            b'{"instances":[[1]],"parameters":{"topk":3,"k":1}}',
            "bad_parameters",
            "unknown parameter(s) 'topk', 'k'; supported: top_k",
        ),
        (
            b'{"instances":[[1]],"parameters":{"top_k":"3"}}',
            "bad_parameters",
            "parameters.top_k must be a whole number from 1 to 10, got '3'",
        ),
    ],
)
def test_request_level_refusals(raw, reason, detail):
    assert refusal(parse_json, raw, 8) == (400, reason, detail, None)


@pytest.mark.parametrize("raw", [b"{not json", b'{"instances":[[NaN]]}', b'{"instances":[[1e999]]}', b""])
def test_invalid_json_says_why_and_that_nan_is_refused(raw):
    status, reason, detail, instance = refusal(parse_json, raw, 8)
    assert (status, reason, instance) == (400, "malformed_json", None)
    assert detail.startswith("the body is not valid JSON (") and len(detail) > 40
    assert detail.endswith("); NaN and Infinity are not JSON and are rejected too")


def test_json_instance_limit_is_exact():
    assert parse_json(dumps({"instances": [[0] * 784] * 8}), 8).pixels.shape == (8, 28, 28)
    assert refusal(parse_json, dumps({"instances": [[0] * 784] * 9}), 8) == (
        400,
        "too_many_instances",
        "9 instances in one request; the limit is 8 (MAX_INSTANCES): split the batch",
        None,
    )


def test_null_parameters_mean_none():
    parsed = parse_json(dumps({"instances": [[0] * 784], "parameters": None}), 8)
    assert parsed.top_k is None and parsed.pixels.shape == (1, 28, 28)
    assert parse_json(dumps({"instances": [[0] * 784], "parameters": {"top_k": None}}), 8).top_k is None


# --- the structure bound, counted on the raw bytes before parsing ------------------------------------------------


@pytest.mark.parametrize(
    "char,what,most",
    [("[", "lists", 2 * (29 * 3 + 4)), (",", "values", 2 * (784 * 3 + 4)), (":", "keys", 2 * (2 * 3 + 4))],
)
def test_structure_bound_is_exact(char, what, most):
    # at the bound the body is parsed (and refused as JSON); one more and it is refused unparsed
    assert refusal(parse_json, char.encode() * most, 3)[1] == "malformed_json"
    assert refusal(parse_json, char.encode() * (most + 1), 3) == (
        400,
        "bad_request_shape",
        f"the body holds far more {what} ({most + 1} {char!r}) than 3 images can "
        f"(MAX_INSTANCES=3; refused above {most}): split the batch, send 28x28 images",
        None,
    )


def test_valid_bodies_at_the_instance_limit_pass_the_structure_bound():
    nested = image(1).tolist()
    document = {"instances": [nested] * 3, "parameters": {"top_k": 2}}
    assert parse_json(dumps(document), 3).pixels.shape == (3, 28, 28)
    url = "data:image/png;base64," + b64(encoded(Image.fromarray(image(2))))["b64"]
    assert parse_json(dumps({"instances": [{"b64": url}] * 3, "parameters": {"top_k": 2}}), 3).encoding == "b64"


# --- instance-level refusals: which instance, where in it, and what was found ------------------------------------


def batch_with(bad, index: int = 1) -> bytes:
    instances = [image().tolist()] * 3
    instances[index] = bad
    return dumps({"instances": instances})


def nested_with(row: int, column: int, value) -> list:
    instance = [[0] * 28 for _ in range(28)]
    instance[row][column] = value
    return instance


def flat_with(position: int, value) -> list:
    instance = [0] * 784
    instance[position] = value
    return instance


DIFFERENT = (
    "rows have different lengths or mix lists and numbers; expected a 28x28 nested list or a flat list of 784 numbers"
)


@pytest.mark.parametrize(
    "bad,detail",
    [
        ([[0] * 27] * 28, f"shape [28, 27]; {SHAPE_HINT}"),
        ([[0] * 28] * 27, f"shape [27, 28]; {SHAPE_HINT}"),
        ([[0] * 784], f"shape [1, 784]; {SHAPE_HINT}"),
        ([0] * 783, f"shape [783]; {SHAPE_HINT}"),
        ([0] * 785, f"shape [785]; {SHAPE_HINT}"),
        ([0] * 28, f"shape [28]; {SHAPE_HINT}"),
        ([], f"shape [0]; {SHAPE_HINT}"),
        ([[0] * 28] * 27 + [[0] * 27], DIFFERENT),
        ([[0] * 28] * 27 + [5], DIFFERENT),
        ([[0] * 28] * 27 + [{"a": 1}], DIFFERENT),
        ([[0] * 28] + [0] * 783, DIFFERENT),  # 784 long, but a row first
    ],
)
def test_bad_shapes(bad, detail):
    assert refusal(parse_json, batch_with(bad), 8) == (400, "bad_shape", f"instance 1: {detail}", 1)


@pytest.mark.parametrize(
    "bad,detail",
    [
        ([0] * 783, f"shape [783]; {SHAPE_HINT}"),
        ([0] * 1568, f"shape [1568]; {SHAPE_HINT}"),  # two images' worth of numbers in one flat instance
        ([[0] * 27] * 28, f"shape [28, 27]; {SHAPE_HINT}"),
        ([[0] * 784] * 2, f"shape [2, 784]; {SHAPE_HINT}"),
    ],
)
def test_same_wrong_shape_in_every_instance(bad, detail):
    """One numpy array could hold the whole batch (and reshape it to images): none is accepted all the same."""
    assert refusal(parse_json, dumps({"instances": [bad, bad]}), 8) == (400, "bad_shape", f"instance 0: {detail}", 0)


def found(what: str, position: int) -> str:
    return f"every pixel must be a number in 0..255 (found {what} at flat position {position})"


@pytest.mark.parametrize(
    "bad,detail",
    [
        (nested_with(27, 27, "x"), found("str 'x'", 783)),
        (nested_with(1, 2, "x"), found("str 'x'", 30)),
        (nested_with(0, 3, [1]), found("a list where a number belongs", 3)),
        (flat_with(1, [0]), found("a list where a number belongs", 1)),
        (flat_with(783, "1"), found("str '1'", 783)),  # a numeric string is still not a number
        (flat_with(5, None), found("null", 5)),
        (flat_with(6, True), found("bool true", 6)),
        (flat_with(7, False), found("bool false", 7)),
        (flat_with(0, {"a": 1}), found("dict an object with 1 key(s)", 0)),
        (flat_with(9, "y" * 100), found(f"str {echo('y' * 100)}", 9)),  # a long string is shortened
    ],
)
def test_non_numeric_values_are_named_with_their_position(bad, detail):
    assert refusal(parse_json, batch_with(bad), 8) == (400, "non_numeric", f"instance 1: {detail}", 1)


@pytest.mark.parametrize(
    "value,what", [("1", "str '1'"), (" 2 ", "str ' 2 '"), (True, "bool true"), (False, "bool false")]
)
@pytest.mark.parametrize("nested", [True, False], ids=["nested", "flat"])
def test_non_numbers_numpy_would_convert_are_refused_in_a_same_shape_batch(value, what, nested):
    """numpy turns "1" and true into 1.0: the quick scan must send such a body to the per-instance walk."""
    bad = flat_with(40, value)
    if nested:
        bad = [bad[i : i + 28] for i in range(0, 784, 28)]
    body = dumps({"instances": [[[0] * 28] * 28 if nested else [0] * 784, bad], "parameters": {"top_k": 2}})
    assert refusal(parse_json, body, 8) == (400, "non_numeric", f"instance 1: {found(what, 40)}", 1)


@pytest.mark.parametrize(
    "bad,value,position",
    [
        (flat_with(783, 256), "256", 783),
        (flat_with(10, -0.5), "-0.5", 10),
        (flat_with(0, -1), "-1", 0),
        (flat_with(1, 255.5), "255.5", 1),  # just above the range: refused by the fast path's bound too
        (nested_with(2, 3, 300), "300", 59),
        (flat_with(2, 2**53 - 1), "9007199254740991", 2),  # the largest integer a float holds exactly
        (flat_with(3, 2**53), "9007199254740992.0", 3),
        (flat_with(4, -(2**60)), "-1.152921504606847e+18", 4),
        (flat_with(783, 2**70), "1.1805916207174113e+21", 783),  # orjson reads huge ints as floats
    ],
)
def test_out_of_range_values_are_shown_as_sent(bad, value, position):
    assert refusal(parse_json, batch_with(bad), 8) == (
        400,
        "out_of_range",
        f"instance 1: value {value} at flat position {position} {RANGE_HINT}",
        1,
    )


@pytest.mark.parametrize("value,position", [(255.5, 1), (256, 783), (-0.5, 0), (-1, 5)])
@pytest.mark.parametrize("nested", [True, False], ids=["nested", "flat"])
def test_values_just_outside_the_range_in_a_body_numpy_converts_at_once(value, position, nested):
    """All instances of one shape, numbers only: the one-call conversion sees the value and must refuse it too."""
    bad = flat_with(position, value)
    if nested:
        bad = [bad[i : i + 28] for i in range(0, 784, 28)]
    body = dumps({"instances": [[[0] * 28] * 28 if nested else [0] * 784, bad]})
    assert refusal(parse_json, body, 8) == (
        400,
        "out_of_range",
        f"instance 1: value {value} at flat position {position} {RANGE_HINT}",
        1,
    )


def test_non_finite_values_are_refused_before_range():
    """orjson refuses NaN and Infinity; the per-instance check refuses them too (defence in depth)."""
    flat = [0.0] * 783 + [math.inf]
    assert refusal(rp._list_instance, flat, 2) == (
        400,
        "not_finite",
        "instance 2: value at flat position 783 is not a finite number",
        2,
    )
    nested = nested_with(1, 0, math.nan)
    nested[0][0] = 300  # out of range, but earlier: the non-finite value is reported
    assert refusal(rp._list_instance, nested, 0) == (
        400,
        "not_finite",
        "instance 0: value at flat position 28 is not a finite number",
        0,
    )
    assert refusal(rp._list_instance, flat_with(5, -math.inf), 0)[2].endswith("flat position 5 is not a finite number")


@pytest.mark.parametrize(
    "bad,detail",
    [
        ("pixels", 'expected a list of pixels or {"b64": ...}, got a string'),
        (None, 'expected a list of pixels or {"b64": ...}, got null'),
        (5, 'expected a list of pixels or {"b64": ...}, got a number'),
        (1.5, 'expected a list of pixels or {"b64": ...}, got a number'),
        (True, 'expected a list of pixels or {"b64": ...}, got a boolean'),
        (
            {"b64": "aGVsbG8=", "x": 1},
            "an image instance must be {\"b64\": \"<base64 PNG or JPEG>\"} with no other keys, got keys 'b64', 'x'",
        ),
        (
            {"B64": "aGVsbG8="},
            'an image instance must be {"b64": "<base64 PNG or JPEG>"} with no other keys, got keys \'B64\'',
        ),
        ({}, 'an image instance must be {"b64": "<base64 PNG or JPEG>"} with no other keys, got keys '),
    ],
)
def test_instances_of_the_wrong_kind(bad, detail):
    assert refusal(parse_json, batch_with(bad), 8) == (400, "bad_instance", f"instance 1: {detail}", 1)


# --- accepted bodies: exact pixels, the encoding label, notes ----------------------------------------------------


@pytest.fixture
def slow_walk(monkeypatch):
    """Counts the per-instance walk: a plain numeric body must be converted in one call, without it."""
    calls = []
    walk = rp._instance

    def counted(instance, index, budget):
        calls.append(index)
        return walk(instance, index, budget)

    monkeypatch.setattr(rp, "_instance", counted)
    return calls


EDGES = np.array([0, 255, 254.5, 0.5, 1, 128], np.float32)


def edge_image() -> np.ndarray:
    pixels = image(4).astype(np.float32)
    pixels.ravel()[: EDGES.size] = EDGES
    return pixels


@pytest.mark.parametrize(
    "parameters,top_k",
    [(None, None), ({}, None), ({"top_k": 3}, 3)],
    ids=["no-parameters", "empty", "top_k"],
)
@pytest.mark.parametrize("nested", [True, False], ids=["nested", "flat"])
def test_plain_numeric_bodies_take_the_fast_path(slow_walk, parameters, top_k, nested):
    pixels = np.stack([edge_image(), image(5).astype(np.float32)])
    document = {"instances": [p.tolist() if nested else p.ravel().tolist() for p in pixels]}
    if parameters is not None:
        document["parameters"] = parameters
    parsed = parse_json(dumps(document), 8)
    assert slow_walk == []
    assert parsed.pixels.dtype == np.float32 and parsed.pixels.shape == (2, 28, 28)
    np.testing.assert_array_equal(parsed.pixels, pixels)
    assert (parsed.top_k, parsed.notes, parsed.encoding) == (top_k, [], "json")


def test_mixed_int_and_float_rows_on_the_per_instance_walk(slow_walk):
    """A nested and a flat instance in one batch are walked one by one; every edge value is kept."""
    first, second = edge_image(), image(6).astype(np.float32)
    nested = [[int(v) if v.is_integer() else float(v) for v in row] for row in first]
    parsed = parse_json(dumps({"instances": [nested, second.ravel().tolist()]}), 8)
    assert slow_walk == [0, 1]
    np.testing.assert_array_equal(parsed.pixels, np.stack([first, second]))
    assert (parsed.top_k, parsed.notes, parsed.encoding) == (None, [], "json")


def test_lists_beside_an_image_are_walked_with_their_edge_values(slow_walk):
    pixels = edge_image()
    parsed = parse_json(dumps({"instances": [pixels.tolist(), b64(encoded(Image.fromarray(image(7))))]}), 8)
    assert slow_walk == [0, 1] and parsed.encoding == "json"
    np.testing.assert_array_equal(parsed.pixels, np.stack([pixels, image(7).astype(np.float32)]))


def test_images_only_is_labelled_b64_with_exact_pixels_and_ordered_notes():
    png = image(8)
    jpeg = encoded(Image.fromarray(image(9)), "JPEG", quality=90)
    rgb = Image.fromarray(np.stack([image(10)] * 3, axis=-1), "RGB")
    wide = np.zeros((28, 56), np.uint8)
    document = {
        "instances": [
            b64(encoded(Image.fromarray(png))),
            b64(jpeg),
            b64(encoded(rgb)),
            b64(encoded(Image.fromarray(wide))),
        ],
        "parameters": {"top_k": 1},
    }
    parsed = parse_json(dumps(document), 8)
    assert parsed.encoding == "b64" and parsed.top_k == 1 and parsed.pixels.dtype == np.float32
    np.testing.assert_array_equal(parsed.pixels[0], png)
    np.testing.assert_array_equal(parsed.pixels[1], np.asarray(Image.open(io.BytesIO(jpeg))))  # the decoder's own
    np.testing.assert_array_equal(parsed.pixels[2], image(10))
    np.testing.assert_array_equal(parsed.pixels[3], np.zeros((28, 28)))
    assert parsed.notes == [
        "instance 2: RGB image converted to grayscale",
        "instance 3: 56x28 image resized to 28x28 (padded to a square first, aspect ratio kept)",
    ]


def test_the_pixel_budget_is_shared_by_all_images_of_a_request(monkeypatch):
    """Each image fits alone; together they exceed the request's budget (shrunk here from 4 Mpx to 1000 px)."""
    monkeypatch.setattr(rp, "DecodeBudget", lambda: DecodeBudget(pixels=1000, cpu_s=60.0))
    one = b64(encoded(Image.fromarray(image(11))))
    assert parse_json(dumps({"instances": [one]}), 8).encoding == "b64"
    status, reason, _, instance = refusal(parse_json, dumps({"instances": [one, one]}), 8)
    assert (status, reason, instance) == (413, "too_many_pixels", 1)
