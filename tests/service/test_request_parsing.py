"""The request parser: every accepted body gives the right pixels, every rejected one a 4xx naming the problem."""

import base64
import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from service.errors import RequestError
from service.request_parsing import parse_binary, parse_json


def body(document) -> bytes:
    return json.dumps(document).encode()


def image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (28, 28), dtype=np.uint8)


def png_b64(pixels: np.ndarray, mode: str | None = None) -> str:
    img = Image.fromarray(pixels)
    if mode:
        img = img.convert(mode)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def rejects(raw: bytes, reason: str, instance=None, max_instances: int = 8) -> RequestError:
    with pytest.raises(RequestError) as caught:
        parse_json(raw, max_instances)
    assert caught.value.reason == reason, caught.value.detail
    assert caught.value.instance == instance
    assert 400 <= caught.value.status < 500
    return caught.value


def test_nested_flat_and_b64_instances_give_the_same_pixels():
    pixels = image()
    parsed = parse_json(
        body(
            {
                "instances": [pixels.tolist(), pixels.ravel().tolist(), {"b64": png_b64(pixels)}],
                "parameters": {"top_k": 3},
            }
        ),
        8,
    )
    assert parsed.pixels.shape == (3, 28, 28) and parsed.pixels.dtype == np.float32
    for row in parsed.pixels:
        np.testing.assert_array_equal(row, pixels)
    assert parsed.top_k == 3 and parsed.notes == []


def test_fast_path_keeps_float_values():
    values = np.full((2, 28, 28), 127.5)
    parsed = parse_json(body({"instances": values.tolist()}), 8)
    np.testing.assert_array_equal(parsed.pixels, values.astype(np.float32))


@pytest.mark.parametrize(
    "raw,reason",
    [
        (b"{not json", "malformed_json"),
        (b'{"instances": [[NaN]]}', "malformed_json"),
        (b"[1, 2]", "bad_request_shape"),
        (b'{"instances": [], "extra": 1}', "bad_request_shape"),
        (b'{"parameters": {}}', "missing_instances"),
        (b'{"instances": {"a": 1}}', "missing_instances"),
        (b'{"instances": []}', "empty_instances"),
        (b'{"instances": [[1]], "parameters": {"top_k": 11}}', "bad_parameters"),
        (b'{"instances": [[1]], "parameters": {"top_k": true}}', "bad_parameters"),
        (b'{"instances": [[1]], "parameters": {"topk": 3}}', "bad_parameters"),
        (b'{"instances": [[1]], "parameters": []}', "bad_parameters"),
    ],
)
def test_request_level_problems(raw, reason):
    rejects(raw, reason)


def test_too_many_instances_names_the_limit():
    error = rejects(body({"instances": [[0] * 784] * 9}), "too_many_instances")
    assert "limit is 8" in error.detail and "MAX_INSTANCES" in error.detail


def _with(bad, index=1):
    good = image().tolist()
    instances = [good, good, good]
    instances[index] = bad
    return body({"instances": instances})


@pytest.mark.parametrize(
    "bad,reason,fragment",
    [
        ([[0] * 27] * 28, "bad_shape", "shape [28, 27]"),
        ([0] * 783, "bad_shape", "shape [783]"),
        ([[0] * 28] * 27 + [[0] * 27], "bad_shape", "different lengths"),
        ([[0] * 28] * 27 + [[0] * 27 + ["x"]], "non_numeric", "str"),
        ([0] * 783 + [None], "non_numeric", "null"),
        ([0] * 783 + [True], "non_numeric", "bool"),
        ([0] * 783 + [256], "out_of_range", "value 256 at flat position 783"),
        ([0] * 10 + [-0.5] + [0] * 773, "out_of_range", "flat position 10"),
        ([0] * 783 + [2**70], "out_of_range", "1.1805916207174113e+21"),  # orjson reads huge ints as floats
        ("pixels", "bad_instance", "got a string"),
        ({"b64": "aGVsbG8=", "x": 1}, "bad_instance", "no other keys"),
        ({"b64": "not base64!"}, "bad_base64", "not valid base64"),
        ({"b64": base64.b64encode(b"hello").decode()}, "bad_image", "not a PNG or JPEG"),
        ({"b64": 12}, "bad_base64", "must be a string"),
    ],
)
def test_instance_problems_name_the_instance(bad, reason, fragment):
    error = rejects(_with(bad), reason, instance=1)
    assert error.detail.startswith("instance 1: ") and fragment in error.detail, error.detail


def test_truncated_png_is_a_bad_image():
    raw = base64.b64decode(png_b64(image()))
    rejects(body({"instances": [{"b64": base64.b64encode(raw[:60]).decode()}]}), "bad_image", instance=0)


def test_other_sizes_and_modes_are_converted_with_notes():
    big = np.zeros((40, 100, 3), np.uint8)
    big[10:30, 30:70] = 255
    parsed = parse_json(body({"instances": [{"b64": "data:image/png;base64," + png_b64(big)}]}), 8)
    assert parsed.pixels.shape == (1, 28, 28)
    assert any("RGB image converted to grayscale" in n for n in parsed.notes)
    assert any("100x40 image resized to 28x28" in n for n in parsed.notes)
    assert parsed.pixels[0, 14, 14] > 200 and parsed.pixels[0, 0, 0] == 0  # padded with the dark border


def test_jpeg_and_transparent_png_are_accepted():
    pixels = image(3)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    rgba = Image.fromarray(np.stack([pixels] * 3 + [np.full_like(pixels, 255)], axis=-1), "RGBA")
    buffer2 = io.BytesIO()
    rgba.save(buffer2, format="PNG")
    parsed = parse_json(
        body(
            {
                "instances": [
                    {"b64": base64.b64encode(buffer.getvalue()).decode()},
                    {"b64": base64.b64encode(buffer2.getvalue()).decode()},
                ]
            }
        ),
        8,
    )
    assert np.abs(parsed.pixels[0] - pixels).mean() < 8  # JPEG is lossy
    np.testing.assert_array_equal(parsed.pixels[1], pixels)
    assert any("transparency flattened" in n for n in parsed.notes)


def test_binary_path():
    pixels = np.stack([image(1), image(2)])
    parsed = parse_binary(pixels.tobytes(), 8, {"top_k": "2"})
    np.testing.assert_array_equal(parsed.pixels, pixels.astype(np.float32))
    assert parsed.top_k == 2 and parsed.encoding == "binary"
    for raw, query, reason in [
        (b"", {}, "empty_instances"),
        (b"\0" * 785, {}, "bad_shape"),
        (b"\0" * 784 * 9, {}, "too_many_instances"),
        (b"\0" * 784, {"top_k": "x"}, "bad_parameters"),
        (b"\0" * 784, {"k": "1"}, "bad_parameters"),
        (b"\0" * 784, {"top_k": "\u00b2"}, "bad_parameters"),  # a Unicode digit that int() refuses
        (b"\0" * 784, {"top_k": "9" * 5000}, "bad_parameters"),  # beyond int()'s digit limit
    ]:
        with pytest.raises(RequestError) as caught:
            parse_binary(raw, 8, query)
        assert caught.value.reason == reason and caught.value.status == 400


pixel_values = st.one_of(st.integers(0, 255), st.floats(0, 255, allow_nan=False))


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(pixel_values, min_size=784, max_size=784), min_size=1, max_size=3), st.booleans())
def test_any_valid_batch_is_parsed_exactly(instances, nested):
    expected = np.asarray(instances, dtype=np.float32).reshape(-1, 28, 28)
    document = {"instances": expected.tolist() if nested else [list(map(float, i)) for i in instances]}
    parsed = parse_json(body(document), 8)
    np.testing.assert_array_equal(parsed.pixels, expected)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-300, 300)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries({"instances": json_values}),
        st.fixed_dictionaries({"instances": st.lists(json_values, max_size=3), "parameters": json_values}),
    )
)
def test_arbitrary_json_is_parsed_or_rejected_with_a_4xx(document):
    try:
        parsed = parse_json(body(document), 8)
    except RequestError as error:
        assert 400 <= error.status < 500 and error.detail
        return
    assert parsed.pixels.shape[1:] == (28, 28)
    assert np.isfinite(parsed.pixels).all() and parsed.pixels.min() >= 0 and parsed.pixels.max() <= 255


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_never_escape_as_other_exceptions(raw):
    for parse in (lambda: parse_json(raw, 8), lambda: parse_binary(raw, 8, {})):
        try:
            parse()
        except RequestError as error:
            assert 400 <= error.status < 500
