"""Turn a request body into a float32 [N,28,28] batch, or a RequestError that names the instance at fault.

Two encodings reach the predict route:
- application/json, Vertex AI style: {"instances": [...], "parameters": {"top_k": k}}; an instance is a 28x28
  nested list or a flat list of 784 numbers in 0..255, or {"b64": "<base64 PNG or JPEG>"} (see images.py);
- application/octet-stream: N x 784 raw uint8 pixels, row-major, `?top_k=k` in the query string.
Why a fast path: converting 64 well-formed images with one numpy call is ~10x cheaper than checking each value in
Python; only a failed fast path pays for the per-instance walk that locates the problem.
Why every step is bounded: nothing is converted to an array before its shape and element types are known (a
string among the pixels would make numpy build a string array of the longest string's size per element), and
each walk is one pass over at most two list levels, so a hostile body costs time and memory linear in its size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import orjson

from service.errors import RequestError
from service.images import DecodeBudget, decode_image_instance
from service.limits import echo, echo_names

PIXELS = 784
IMAGE_SHAPES = ((28, 28), (PIXELS,))
N_CLASSES = 10
_TOP_LEVEL_KEYS = {"instances", "parameters"}
_PARAMETER_KEYS = {"top_k"}
_NUMBER_TYPES = {int, float}
_NUMBER_BYTES = b"0123456789+-. \t\r\n"  # digits, signs, points and the spaces between values


@dataclass
class ParsedRequest:
    """A validated batch and what the response needs to know about it."""

    pixels: np.ndarray  # float32 [N, 28, 28], values in 0..255
    top_k: int | None = None
    notes: list[str] = field(default_factory=list)
    encoding: str = "json"  # json | b64 | binary: labels the instances metric


def parse_top_k(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and where == "query":
        if not (len(value) <= 8 and value.strip().isascii() and value.strip().isdigit()):
            raise RequestError(
                400,
                "bad_parameters",
                f"top_k={echo(value)} in the query string must be a whole number from 1 to {N_CLASSES}",
            )
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= N_CLASSES:
        name = "top_k in the query string" if where == "query" else "parameters.top_k"
        raise RequestError(
            400, "bad_parameters", f"{name} must be a whole number from 1 to {N_CLASSES}, got {echo(value)}"
        )
    return value


def parse_query(query: Mapping[str, str]) -> int | None:
    """The query string may carry top_k (and nothing else) on either path."""
    unknown = [key for key in query if key not in _PARAMETER_KEYS]
    if unknown:
        raise RequestError(
            400,
            "bad_parameters",
            f"unknown query parameter(s) {echo_names(unknown)}; the predict route accepts only top_k",
        )
    return parse_top_k(query.get("top_k"), "query")


def parse_binary(body: bytes, max_instances: int, query: Mapping[str, str]) -> ParsedRequest:
    """N x 784 uint8 bytes -> batch. Every byte is a valid pixel, so only the length can be wrong."""
    top_k = parse_query(query)
    if not body:
        raise RequestError(400, "empty_instances", "the body is empty; send N x 784 uint8 pixels (N >= 1)")
    if len(body) % PIXELS:
        raise RequestError(
            400,
            "bad_shape",
            f"the body has {len(body)} bytes, not a multiple of 784: send N whole "
            "28x28 uint8 images, row-major, back to back",
        )
    n = len(body) // PIXELS
    if n > max_instances:
        raise RequestError(
            400,
            "too_many_instances",
            f"{n} images in one request; the limit is {max_instances} (MAX_INSTANCES): split the batch",
        )
    raw = np.frombuffer(body, np.uint8).reshape(n, 28, 28)
    return ParsedRequest(raw.astype(np.float32), top_k, [], "binary")


def _check_values(array: np.ndarray, index: int) -> None:
    """Raise for the first non-finite or out-of-range value of one instance, naming its position."""
    bad = ~np.isfinite(array)
    if bad.any():
        position = int(np.flatnonzero(bad.ravel())[0])
        raise RequestError(400, "not_finite", f"value at flat position {position} is not a finite number", index)
    outside = (array < 0) | (array > 255)
    if outside.any():
        position = int(np.flatnonzero(outside.ravel())[0])
        value = array.ravel()[position].item()
        if value.is_integer() and abs(value) < 2**53:
            value = int(value)  # shown as the client wrote it (pixels are converted to floats first)
        raise RequestError(
            400,
            "out_of_range",
            f"value {value!r} at flat position {position} is outside 0..255 (send raw pixel values, not scaled ones)",
            index,
        )


def _json_type(value: object) -> str:
    """The JSON name of a decoded value's type: what a client wrote, not Python's name for it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _kind(value: object) -> str:
    """What a non-number is, in a few words (never more than MAX_ECHO_CHARS of the client's text)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"bool {echo(value)}"
    if isinstance(value, str):
        return f"str {echo(value)}"
    if isinstance(value, list):
        return "a list where a number belongs"
    return f"{type(value).__name__} {echo(value)}"


def _rows(instance: list[object], index: int) -> list[list[object]]:
    """The instance's rows of numbers-to-be, after checking its shape from the top two levels only (linear)."""
    if len(instance) == PIXELS and type(instance[0]) is not list:
        return [instance]
    if len(instance) == 28:
        rows = [row for row in instance if type(row) is list and len(row) == 28]
        if len(rows) == 28:
            return rows
    lengths = {len(row) if isinstance(row, list) else -1 for row in instance}
    if lengths <= {-1}:
        shape = f"[{len(instance)}]"
    elif len(lengths) == 1:
        shape = f"[{len(instance)}, {lengths.pop()}]"
    else:
        raise RequestError(
            400,
            "bad_shape",
            "rows have different lengths or mix lists and numbers; expected a "
            "28x28 nested list or a flat list of 784 numbers",
            index,
        )
    raise RequestError(400, "bad_shape", f"shape {shape}; expected 28x28 (nested list) or 784 (flat list)", index)


def _list_instance(instance: list[object], index: int) -> np.ndarray:
    """One list instance -> float32 [28, 28]: shape first, then every element's type, then one conversion."""
    rows = _rows(instance, index)
    for r, row in enumerate(rows):
        if not set(map(type, row)) <= _NUMBER_TYPES:
            column = next(j for j, value in enumerate(row) if type(value) not in _NUMBER_TYPES)
            position = r * len(row) + column if len(rows) > 1 else column
            raise RequestError(
                400,
                "non_numeric",
                f"every pixel must be a number in 0..255 (found {_kind(row[column])} at flat position {position})",
                index,
            )
    array = np.array(rows, dtype=np.float64).reshape(28, 28)
    _check_values(array, index)
    return array.astype(np.float32)


def _instance(instance: object, index: int, budget: DecodeBudget) -> tuple[np.ndarray, list[str]]:
    if type(instance) is list:
        return _list_instance(instance, index), []
    if isinstance(instance, dict):
        if set(instance) != {"b64"}:
            raise RequestError(
                400,
                "bad_instance",
                'an image instance must be {"b64": "<base64 PNG or JPEG>"} '
                f"with no other keys, got keys {echo_names(list(instance))}",
                index,
            )
        pixels, notes = decode_image_instance(instance["b64"], index, budget)
        return pixels.astype(np.float32), notes
    raise RequestError(
        400,
        "bad_instance",
        f'expected a list of pixels or {{"b64": ...}}, got {_json_type(instance)}',
        index,
    )


def _structure(body: bytes) -> bytes:
    """The body without digits, signs, points and spaces (never a letter of `true`, `false` or `null`: `e` and `E`
    stay): its commas, brackets, colons, quotes, keys and literals. One C-speed pass; on the common path about a
    quarter of the body, so the checks below count on it rather than on the whole body (~5 us less per 1-image
    JSON request than four scans of the body)."""
    return body.translate(None, _NUMBER_BYTES)


def _only_numbers_and_lists(structure: bytes, keys: int) -> bool:
    """True when the document holds no strings, booleans or nulls beyond its `keys` known keys.

    Why from the bytes: every JSON string starts and ends with an unescaped quote, so a quote count equal to
    that of the known keys proves there is no other string, and then `true`, `false` and `null` can only be
    literals. Scans of the body's _structure without its commas and brackets (the keys, braces, colons) replace
    a type check of every pixel on the common path."""
    rest = structure.translate(None, b",[]")
    return rest.count(b'"') == 2 * keys and b"true" not in rest and b"false" not in rest and b"null" not in rest


def _fast_batch(instances: list[object]) -> np.ndarray | None:
    """Numbers-only, same-shape, in-range list instances in one conversion; None when anything needs a closer look.

    Only called when the body holds nothing but numbers and lists, so the float64 array has one element per
    number in the body: its size is bounded by the body's."""
    try:
        array = np.array(instances, dtype=np.float64)
    except (ValueError, TypeError):
        return None
    if array.shape[1:] not in IMAGE_SHAPES:
        return None
    if not (array.min(initial=0) >= 0 and array.max(initial=0) <= 255):  # also False for NaN (it propagates)
        return None
    return array.reshape(-1, 28, 28).astype(np.float32)


def _check_structure_size(structure: bytes, max_instances: int) -> None:
    """Refuse, before parsing, a body with more lists, values or keys than `max_instances` images can have.

    Why: parsing costs per JSON value, so a body of a million `[0],` costs ~10x a valid request of the same size.
    A valid request has at most 29 `[` per instance (28x28 nested), 784 `,` per instance (783 inside, one
    between instances) and 2 `:` per instance ("b64" and a data: URL), plus a few for the top-level keys; base64
    holds none of these characters, so counting bytes bounds the parse without misjudging any valid body (counted in
    the body's _structure, which keeps every one of them). The bound is twice that, so a batch slightly over
    MAX_INSTANCES still gets the plainer too_many_instances."""
    bounds = ((b"[", 29, "lists"), (b",", 784, "values"), (b":", 2, "keys"))
    for char, per_instance, what in bounds:
        found, most = structure.count(char), 2 * (per_instance * max_instances + 4)
        if found > most:
            raise RequestError(
                400,
                "bad_request_shape",
                f"the body holds far more {what} ({found} {char.decode()!r}) than {max_instances} images can "
                f"(MAX_INSTANCES={max_instances}; refused above {most}): split the batch, send 28x28 images",
            )


def parse_json(body: bytes, max_instances: int) -> ParsedRequest:
    """A Vertex AI style JSON body -> batch."""
    structure = _structure(body)
    _check_structure_size(structure, max_instances)
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(
            400,
            "malformed_json",
            f"the body is not valid JSON ({exc}); NaN and Infinity are not JSON and are rejected too",
        ) from None
    if not isinstance(document, dict):
        raise RequestError(
            400,
            "bad_request_shape",
            f'the body must be a JSON object {{"instances": [...]}}, got {_json_type(document)}',
        )
    unknown = [key for key in document if key not in _TOP_LEVEL_KEYS]
    if unknown:
        raise RequestError(
            400,
            "bad_request_shape",
            f"unknown key(s) {echo_names(unknown)}; the body accepts 'instances' and 'parameters'",
        )
    if "instances" not in document:
        raise RequestError(400, "missing_instances", "the body has no 'instances' list")
    instances = document["instances"]
    if not isinstance(instances, list):
        raise RequestError(400, "missing_instances", f"'instances' must be a list, got {_json_type(instances)}")
    if not instances:
        raise RequestError(400, "empty_instances", "'instances' is empty; send at least one image")
    if len(instances) > max_instances:
        raise RequestError(
            400,
            "too_many_instances",
            f"{len(instances)} instances in one request; the limit is {max_instances} (MAX_INSTANCES): split the batch",
        )
    parameters = document.get("parameters")
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise RequestError(400, "bad_parameters", f"'parameters' must be an object, got {_json_type(parameters)}")
    unknown = [key for key in parameters if key not in _PARAMETER_KEYS]
    if unknown:
        raise RequestError(400, "bad_parameters", f"unknown parameter(s) {echo_names(unknown)}; supported: top_k")
    top_k = parse_top_k(parameters.get("top_k"), "parameters")

    if all(type(i) is list for i in instances) and _only_numbers_and_lists(structure, len(document) + len(parameters)):
        fast = _fast_batch(instances)
        if fast is not None:
            return ParsedRequest(fast, top_k, [], "json")
    batch = np.empty((len(instances), 28, 28), np.float32)
    notes: list[str] = []
    encodings = set()
    budget = DecodeBudget()
    for index, instance in enumerate(instances):
        batch[index], instance_notes = _instance(instance, index, budget)
        notes.extend(instance_notes)
        encodings.add("b64" if isinstance(instance, dict) else "json")
    return ParsedRequest(batch, top_k, notes, "b64" if encodings == {"b64"} else "json")
