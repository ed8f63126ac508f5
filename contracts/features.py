"""The per-image feature function, the baseline's binning and the population stability index (PSI).

Why one definition: the trainer computes the feature table (Parquet -> BigQuery -> Vertex AI Feature Online Store)
and the drift baseline stored in model metadata with it, and the service computes live features and PSI against
that baseline with it. Columns are declared in contracts/feature_schema.py; bump FEATURE_FUNCTION_ID there when
the function changes meaning, so a service refuses baselines it would misread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from contracts.dataset import IMAGE_SHAPE, NUM_CLASSES, PIXELS_PER_IMAGE
from contracts.feature_schema import FEATURE_FUNCTION_ID, FEATURE_NAMES

N_BINS = 10
PROPORTION_FLOOR = 1e-4
CHUNK = 8192  # images per compute_image_features call in batch jobs: bounds memory to ~40 MB of float32

FloatArray = npt.NDArray[np.float32]
SIDE = IMAGE_SHAPE[0]
INK_LEVEL = 25  # a pixel above this counts as ink
_ROW = {name: row for row, name in enumerate(FEATURE_NAMES)}
_PIXEL_ROW = np.repeat(np.arange(SIDE), SIDE)
_PIXEL_COL = np.tile(np.arange(SIDE), SIDE)
# [784, 3]: per image, its pixel sum and its sums weighted by row and by column index (the centroids' numerators)
_MOMENTS = np.stack([np.ones(PIXELS_PER_IMAGE), _PIXEL_ROW, _PIXEL_COL], axis=1).astype(np.float32)
# [784, 57]: per image, its ink pixels in each row, in each column, and in all
_INK_LINES = np.concatenate(
    [_PIXEL_ROW[:, None] == np.arange(SIDE), _PIXEL_COL[:, None] == np.arange(SIDE), np.ones((PIXELS_PER_IMAGE, 1))],
    axis=1,
).astype(np.float32)
_ONES = np.ones(PIXELS_PER_IMAGE, np.float32)


def feature_matrix(images: npt.ArrayLike) -> FloatArray:
    """Features of uint8 images [N, 28, 28] (raw 0-255 pixels; floats are truncated like astype(uint8)) as float32
    [len(FEATURE_NAMES), N], rows in FEATURE_NAMES order.

    Why this shape of computation: the service computes features on a few sampled images per request, where numpy's
    per-call cost, not the arithmetic, is the price (a reduction over a 28-pixel axis costs ~8 us for 8 images).
    Sums go through three small matrix products instead. They are exact, so the values are bit for bit those of the
    direct formulas (tests/contracts/test_features.py pins them against the old implementation): every sum is of
    integers below 2**24, exact in float32 in any order, and each division is of exact operands, so correctly
    rounded. Only the standard deviation sums non-integers, so it repeats numpy's own `std` steps (mean, centre,
    square, pairwise `add.reduce` over the row, divide, sqrt) on the same float32 [N, 784] array."""
    x = np.asarray(images)
    if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"expected images of shape [N, 28, 28], got {list(x.shape)}")
    n = x.shape[0]
    flat = x.astype(np.uint8, copy=False).reshape(n, PIXELS_PER_IMAGE).astype(np.float32)
    out = np.empty((len(FEATURE_NAMES), n), np.float32)

    moments = flat @ _MOMENTS
    total = moments[:, 0]
    out[_ROW["mean_intensity"]] = total / np.float32(PIXELS_PER_IMAGE * 255)
    centred = flat - (total / np.float32(PIXELS_PER_IMAGE))[:, None]
    np.multiply(centred, centred, out=centred)
    variance = np.add.reduce(centred, axis=1) / np.float32(PIXELS_PER_IMAGE)
    out[_ROW["std_intensity"]] = np.sqrt(variance) / np.float32(255)

    lines = np.greater(flat, INK_LEVEL).astype(np.float32) @ _INK_LINES
    ink = lines[:, -1]
    out[_ROW["ink_fraction"]] = ink.astype(np.float64) / PIXELS_PER_IMAGE
    inked = lines[:, : 2 * SIDE].reshape(n, 2, SIDE) > 0  # [N, rows | columns, 28]: the lines holding ink
    extent = SIDE - inked[:, :, ::-1].argmax(axis=2) - inked.argmax(axis=2)  # from the first to the last inked line
    extent[ink == 0] = 0
    height, width = out[_ROW["bbox_height"]], out[_ROW["bbox_width"]]
    height[:], width[:] = extent[:, 0], extent[:, 1]
    out[_ROW["bbox_aspect"]] = np.where(height > 0, width / np.maximum(height, 1), 0)

    # sum |x - mirror(x)| = 2 (sum x - sum min(x, mirror(x))): one elementwise pass and an exact sum
    square = flat.reshape(n, SIDE, SIDE)
    common = np.minimum(square, square[:, :, ::-1]).reshape(n, PIXELS_PER_IMAGE) @ _ONES
    mirror_mean = (total - common) * 2 / np.float32(PIXELS_PER_IMAGE)
    out[_ROW["lr_symmetry"]] = 1 - mirror_mean / np.float32(255)

    safe_total = np.where(total > 0, total, 1)
    out[_ROW["centroid_row"]] = np.where(total > 0, moments[:, 1] / safe_total, 13.5)
    out[_ROW["centroid_col"]] = np.where(total > 0, moments[:, 2] / safe_total, 13.5)
    return out


def compute_image_features(images: npt.ArrayLike) -> dict[str, FloatArray]:
    """Features of uint8 images [N, 28, 28] (raw 0-255 pixels) -> {name: float32[N]}, names as FEATURE_NAMES."""
    return dict(zip(FEATURE_NAMES, feature_matrix(images), strict=True))


def compute_features_chunked(images: npt.NDArray[Any], chunk: int = CHUNK) -> dict[str, FloatArray]:
    """compute_image_features over a large array in chunks (same values, bounded memory)."""
    parts = [compute_image_features(images[i : i + chunk]) for i in range(0, len(images), chunk)]
    return {name: np.concatenate([p[name] for p in parts]) for name in FEATURE_NAMES}


def bin_index(edges: npt.ArrayLike, values: npt.ArrayLike) -> npt.NDArray[np.intp]:
    """The baseline's bins: `searchsorted(edges, value, side="right")`, so len(edges) + 1 bins."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64), np.asarray(values, dtype=np.float64), side="right")


def bin_matrix(edges: npt.NDArray[np.float64], values: npt.ArrayLike) -> npt.NDArray[np.intp]:
    """bin_index for every feature at once: edges [F, B-1] in ascending order, values [F, N] -> bins [F, N].
    For ascending edges, `searchsorted(side="right")` is the number of edges at or below the value: one comparison
    and one sum instead of a call per feature (service/drift.py checks the baseline's edges are ascending)."""
    wide = np.asarray(values, dtype=np.float64)
    counted: npt.NDArray[np.intp] = np.greater_equal(wide[:, :, None], edges[:, None, :]).sum(axis=2, dtype=np.intp)
    return counted


def bin_proportions(edges: Sequence[float], values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Share of values per bin, binned like feature_baseline."""
    bins = bin_index(edges, values)
    counts: npt.NDArray[np.float64] = np.bincount(bins, minlength=len(edges) + 1) / max(len(bins), 1)
    return counts


def feature_baseline(
    features: Mapping[str, npt.ArrayLike], predicted_or_labels: npt.ArrayLike, n_bins: int = N_BINS
) -> dict[str, Any]:
    """The `feature_baseline` block of model metadata (docs/CONTRACTS.md): per feature, n_bins-1 quantile cut
    points and the share of images in each of the n_bins bins, plus the class proportions the service compares
    its predicted-class distribution with."""
    quantiles = np.linspace(0, 1, n_bins + 1)[1:-1]
    out = {}
    for name in FEATURE_NAMES:
        values = np.asarray(features[name], dtype=np.float64)
        edges = np.quantile(values, quantiles)
        proportions = np.bincount(bin_index(edges, values), minlength=n_bins) / len(values)
        out[name] = {"edges": [float(e) for e in edges], "proportions": [float(p) for p in proportions]}
    labels = np.asarray(predicted_or_labels).astype(np.int64)
    classes = np.bincount(labels, minlength=NUM_CLASSES) / len(labels)
    return {
        "feature_function": FEATURE_FUNCTION_ID,
        "features": out,
        "classes": {"proportions": [float(p) for p in classes]},
    }


def population_stability_index(expected: npt.ArrayLike, actual: npt.ArrayLike) -> float:
    """PSI as docs/CONTRACTS.md defines it: proportions clamped to >= 1e-4, sum((a - e) * ln(a / e))."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), PROPORTION_FLOOR)
    a = np.maximum(np.asarray(actual, dtype=np.float64), PROPORTION_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))
