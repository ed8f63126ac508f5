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


def compute_image_features(images: npt.ArrayLike) -> dict[str, FloatArray]:
    """Features of uint8 images [N, 28, 28] (raw 0-255 pixels) -> {name: float32[N]}, names as FEATURE_NAMES."""
    x = np.asarray(images)
    if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"expected images of shape [N, 28, 28], got {list(x.shape)}")
    x = x.astype(np.uint8, copy=False)
    n = x.shape[0]
    flat = x.reshape(n, PIXELS_PER_IMAGE).astype(np.float32)
    total = flat.sum(axis=1)
    mean = total / np.float32(PIXELS_PER_IMAGE * 255)
    std = flat.std(axis=1) / np.float32(255)

    ink: npt.NDArray[np.bool_] = np.greater(x, 25)
    rows: npt.NDArray[np.bool_] = np.any(ink, axis=2)  # [N, 28]: rows holding ink
    cols: npt.NDArray[np.bool_] = np.any(ink, axis=1)
    has_ink = np.any(rows, axis=1)
    height = np.where(has_ink, 28 - rows[:, ::-1].argmax(axis=1) - rows.argmax(axis=1), 0).astype(np.float32)
    width = np.where(has_ink, 28 - cols[:, ::-1].argmax(axis=1) - cols.argmax(axis=1), 0).astype(np.float32)
    aspect = np.where(height > 0, width / np.maximum(height, 1), 0).astype(np.float32)

    square = flat.reshape(n, 28, 28)
    mirror_diff = np.abs(square - square[:, :, ::-1]).reshape(n, PIXELS_PER_IMAGE)
    symmetry = 1 - mirror_diff.mean(axis=1) / np.float32(255)

    positions = np.arange(28, dtype=np.float32)
    safe_total = np.where(total > 0, total, 1)
    centroid_row = np.where(total > 0, square.sum(axis=2) @ positions / safe_total, 13.5)
    centroid_col = np.where(total > 0, square.sum(axis=1) @ positions / safe_total, 13.5)

    values = {
        "mean_intensity": mean,
        "std_intensity": std,
        "ink_fraction": ink.reshape(n, PIXELS_PER_IMAGE).mean(axis=1),
        "bbox_height": height,
        "bbox_width": width,
        "bbox_aspect": aspect,
        "lr_symmetry": symmetry,
        "centroid_row": centroid_row,
        "centroid_col": centroid_col,
    }
    return {name: np.asarray(value, dtype=np.float32) for name, value in values.items()}


def compute_features_chunked(images: npt.NDArray[Any], chunk: int = CHUNK) -> dict[str, FloatArray]:
    """compute_image_features over a large array in chunks (same values, bounded memory)."""
    parts = [compute_image_features(images[i : i + chunk]) for i in range(0, len(images), chunk)]
    return {name: np.concatenate([p[name] for p in parts]) for name in FEATURE_NAMES}


def bin_index(edges: npt.ArrayLike, values: npt.ArrayLike) -> npt.NDArray[np.intp]:
    """The baseline's bins: `searchsorted(edges, value, side="right")`, so len(edges) + 1 bins."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64), np.asarray(values, dtype=np.float64), side="right")


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
