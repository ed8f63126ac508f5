"""Decode `{"b64": ...}` instances: base64 PNG or JPEG -> uint8 [28, 28] grayscale, plus a note when converted.

Decision (documented in the OpenAPI description): images that are not 8-bit grayscale 28x28 are accepted and
converted, never silently: colour and alpha are flattened to grayscale (transparent areas become black, the
dataset's background), other sizes are padded to a square with the median border value (the aspect ratio is
kept) and resized to 28x28 with a Lanczos filter. Each conversion adds a note to the response's metadata.
The model still expects what Fashion-MNIST looks like: a light garment on a dark background.
Why the bounds (service/limits.py): decoding is the one step whose cost is not proportional to the body's size
(a 32 KB PNG can declare 16 million pixels), so the header is checked before any pixel is decoded, each request
has a budget of decoded pixels and of decoding CPU time, and no conversion makes a float copy of an image.
"""

from __future__ import annotations

import base64
import binascii
import io
import time
from typing import TYPE_CHECKING

import numpy as np

from service.errors import RequestError
from service.limits import (
    DECODE_CPU_BUDGET_S,
    MAX_ENCODED_CHARS,
    MAX_IMAGE_PIXELS,
    MAX_JPEG_SCANS,
    MAX_REQUEST_PIXELS,
    MAX_SIDE,
    shorten,
)

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

_DATA_URL_PREFIX = "data:"
_JPEG_START_OF_SCAN = b"\xff\xda"  # entropy-coded data escapes 0xFF as FF 00, so this pair is always a marker


class DecodeBudget:
    """What the images of one request may still cost: decoded pixels, and CPU seconds of this thread."""

    def __init__(self, pixels: int = MAX_REQUEST_PIXELS, cpu_s: float = DECODE_CPU_BUDGET_S) -> None:
        self.pixels_left = pixels
        self._cpu_deadline = time.thread_time() + cpu_s
        self._cpu_s = cpu_s

    def take_pixels(self, pixels: int, index: int) -> None:
        if pixels > self.pixels_left:
            raise RequestError(
                413,
                "too_many_pixels",
                f"the images of this request decode to more than {MAX_REQUEST_PIXELS} pixels together: "
                "send smaller images (the model sees 28x28) or fewer per request",
                index,
            )
        self.pixels_left -= pixels

    def check_time(self, index: int) -> None:
        if time.thread_time() > self._cpu_deadline:
            raise RequestError(
                413,
                "decode_budget_exceeded",
                f"decoding this request's images took more than {self._cpu_s} s of CPU: "
                "send smaller images (the model sees 28x28) or fewer per request",
                index,
            )


def _decode_base64(text: str, index: int) -> bytes:
    if text.startswith(_DATA_URL_PREFIX):
        head, sep, text = text.partition(",")
        if not sep or not head.endswith(";base64"):
            raise RequestError(
                400, "bad_base64", "a data: URL must be base64-encoded (data:image/png;base64,...)", index
            )
    if len(text) > MAX_ENCODED_CHARS:
        raise RequestError(400, "bad_image", "the base64 string is too long", index)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(400, "bad_base64", f"'b64' is not valid base64 ({exc})", index) from None
    if not raw:
        raise RequestError(400, "bad_base64", "'b64' decodes to zero bytes", index)
    return raw


def _grayscale(image: PILImage, index: int) -> tuple[np.ndarray, str | None]:
    """8-bit grayscale pixels; a note naming the conversion when the image was not 8-bit grayscale."""
    from PIL import Image

    mode = image.mode
    if mode == "L":
        return np.asarray(image, dtype=np.uint8), None
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        return _narrow_to_8_bit(np.asarray(image), mode), f"{mode} image scaled to 8-bit grayscale"
    if "A" in mode or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flattened = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        flattened.alpha_composite(rgba)
        return np.asarray(
            flattened.convert("L"), dtype=np.uint8
        ), f"{mode} image with transparency flattened onto black and converted to grayscale"
    return np.asarray(image.convert("L"), dtype=np.uint8), f"{mode} image converted to grayscale"


def _narrow_to_8_bit(wide: np.ndarray, mode: str) -> np.ndarray:
    """16/32-bit grey -> uint8 in integer arithmetic, row block by row block: never a float copy of the image.

    16-bit values (and 32-bit ones above 255) are divided by 257 with rounding, (x + 128) // 257, which equals
    rint(x / 257) for integers; negative values become 0, larger ones 255."""
    scale = 257 if mode.startswith("I;16") or wide.max(initial=0) > 255 else 1
    out = np.empty(wide.shape, np.uint8)
    rows = max(1, 65536 // max(1, wide.shape[1]))
    for top in range(0, wide.shape[0], rows):
        block = wide[top : top + rows].astype(np.int64)
        if scale != 1:
            block = (block + 128) // scale
        out[top : top + rows] = np.clip(block, 0, 255)
    return out


def _to_28x28(pixels: np.ndarray) -> np.ndarray:
    from PIL import Image

    height, width = pixels.shape
    side = max(height, width)
    if height != width:
        border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
        square = np.full((side, side), int(np.median(border)), np.uint8)
        top, left = (side - height) // 2, (side - width) // 2
        square[top : top + height, left : left + width] = pixels
        pixels = square
    return np.asarray(Image.fromarray(pixels).resize((28, 28), Image.Resampling.LANCZOS), dtype=np.uint8)


def _open(raw: bytes, index: int) -> PILImage:
    """The image with only its header read; refused before decoding when its declared size is out of bounds."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(raw), formats=("PNG", "JPEG"))
    except UnidentifiedImageError:
        raise RequestError(400, "bad_image", "'b64' is not a PNG or JPEG image", index) from None
    except Image.DecompressionBombError:
        raise RequestError(
            400, "bad_image", f"the image declares more than {MAX_SIDE} pixels per side", index
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise RequestError(400, "bad_image", f"the image cannot be read ({shorten(str(exc), 200)})", index) from None
    width, height = image.size
    if width < 1 or height < 1 or width > MAX_SIDE or height > MAX_SIDE:
        raise RequestError(
            400, "bad_image", f"a {width}x{height} image is outside 1..{MAX_SIDE} pixels per side", index
        )
    if image.format == "JPEG" and raw.count(_JPEG_START_OF_SCAN) > MAX_JPEG_SCANS:
        raise RequestError(
            400, "bad_image", f"the JPEG has more than {MAX_JPEG_SCANS} scans; re-encode it as a baseline JPEG", index
        )
    return image


def decode_image_instance(text: object, index: int, budget: DecodeBudget | None = None) -> tuple[np.ndarray, list[str]]:
    """The pixels of one {"b64": ...} instance and the notes describing any conversion."""
    from PIL import Image

    budget = budget or DecodeBudget()
    if not isinstance(text, str):
        raise RequestError(400, "bad_base64", f"'b64' must be a string, got {type(text).__name__}", index)
    raw = _decode_base64(text, index)
    image = _open(raw, index)
    width, height = image.size
    if image.format == "JPEG" and min(width, height) > 112:
        image.draft("L", (56, 56))  # let the JPEG decoder downscale by 2-8x: big photos cost little CPU
    # What the conversion handles: the decoded size (after a JPEG's draft scaling), padded to a square.
    decoded = max(image.size) ** 2
    if decoded > MAX_IMAGE_PIXELS:
        raise RequestError(
            413,
            "too_many_pixels",
            f"a {width}x{height} image decodes to {decoded} pixels (padded to a square); the limit is "
            f"{MAX_IMAGE_PIXELS} per image: send it smaller (the model sees 28x28)",
            index,
        )
    budget.take_pixels(decoded, index)
    try:
        image.load()
        pixels, note = _grayscale(image, index)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        detail = f"the image is damaged or truncated ({shorten(str(exc), 200)})"
        raise RequestError(400, "bad_image", detail, index) from None
    notes = [f"instance {index}: {note}"] if note else []
    if pixels.shape != (28, 28):
        notes.append(
            f"instance {index}: {width}x{height} image resized to 28x28 (padded to a square first, aspect ratio kept)"
        )
        pixels = _to_28x28(pixels)
    budget.check_time(index)
    return pixels, notes


def encode_png(pixels: np.ndarray) -> str:
    """uint8 [28,28] -> base64 PNG (the page's sample images travel this way)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
