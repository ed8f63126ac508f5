"""Decode `{"b64": ...}` instances: base64 PNG or JPEG -> uint8 [28, 28] grayscale, plus a note when converted.

Decision (documented in the OpenAPI description): images that are not 8-bit grayscale 28x28 are accepted and
converted, never silently: colour and alpha are flattened to grayscale (transparent areas become black, the
dataset's background), other sizes are padded to a square with the median border value (the aspect ratio is
kept) and resized to 28x28 with a Lanczos filter. Each conversion adds a note to the response's metadata.
The model still expects what Fashion-MNIST looks like: a light garment on a dark background.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import TYPE_CHECKING

import numpy as np

from service.errors import RequestError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

MAX_SIDE = 4096
MAX_ENCODED_CHARS = 2_000_000
_DATA_URL_PREFIX = "data:"


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
        wide = np.asarray(image, dtype=np.float64)
        scale = 257.0 if wide.max(initial=0) > 255 or mode.startswith("I;16") else 1.0
        return np.clip(np.rint(wide / scale), 0, 255).astype(np.uint8), f"{mode} image scaled to 8-bit grayscale"
    if "A" in mode or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flattened = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        flattened.alpha_composite(rgba)
        return np.asarray(
            flattened.convert("L"), dtype=np.uint8
        ), f"{mode} image with transparency flattened onto black and converted to grayscale"
    return np.asarray(image.convert("L"), dtype=np.uint8), f"{mode} image converted to grayscale"


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


def decode_image_instance(text: object, index: int) -> tuple[np.ndarray, list[str]]:
    """The pixels of one {"b64": ...} instance and the notes describing any conversion."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(text, str):
        raise RequestError(400, "bad_base64", f"'b64' must be a string, got {type(text).__name__}", index)
    raw = _decode_base64(text, index)
    try:
        image = Image.open(io.BytesIO(raw), formats=("PNG", "JPEG"))
    except UnidentifiedImageError:
        raise RequestError(400, "bad_image", "'b64' is not a PNG or JPEG image", index) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise RequestError(400, "bad_image", f"the image cannot be read ({exc})", index) from None
    width, height = image.size
    if width < 1 or height < 1 or width > MAX_SIDE or height > MAX_SIDE:
        raise RequestError(
            400, "bad_image", f"a {width}x{height} image is outside 1..{MAX_SIDE} pixels per side", index
        )
    try:
        if image.format == "JPEG" and min(width, height) > 112:
            image.draft("L", (56, 56))  # let the JPEG decoder downscale by 2-8x: big photos cost little CPU
        image.load()
        pixels, note = _grayscale(image, index)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise RequestError(400, "bad_image", f"the image is damaged or truncated ({exc})", index) from None
    notes = [f"instance {index}: {note}"] if note else []
    if pixels.shape != (28, 28):
        notes.append(
            f"instance {index}: {width}x{height} image resized to 28x28 (padded to a square first, aspect ratio kept)"
        )
        pixels = _to_28x28(pixels)
    return pixels, notes


def encode_png(pixels: np.ndarray) -> str:
    """uint8 [28,28] -> base64 PNG (the page's sample images travel this way)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
