"""Per-image features for drift monitoring: a copy of trainer/features.py's compute_image_features.

Why a copy: the service may not import the trainer package (it would pull in TensorFlow's dependency tree), and
the drift baseline in metadata.json was computed with the trainer's function. tests/service/test_feature_parity.py
asserts the two functions are textually identical and give identical values; bump FEATURE_FUNCTION_ID in both
places when the function changes.
"""
from __future__ import annotations

import numpy as np

FEATURE_FUNCTION_ID = "fmnist-image-features/v1"
FEATURE_NAMES = (
    "mean_intensity",
    "std_intensity",
    "ink_fraction",
    "bbox_height",
    "bbox_width",
    "bbox_aspect",
    "lr_symmetry",
    "centroid_row",
    "centroid_col",
)


def compute_image_features(images: np.ndarray) -> dict[str, np.ndarray]:
    # copied into service/features.py; tests/service/test_feature_parity.py keeps them identical
    """Features of uint8 images [N, 28, 28] (raw 0-255 pixels) -> {name: float32[N]}, names as FEATURE_NAMES."""
    x = np.asarray(images)
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise ValueError(f"expected images of shape [N, 28, 28], got {list(x.shape)}")
    x = x.astype(np.uint8, copy=False)
    n = x.shape[0]
    flat = x.reshape(n, 784).astype(np.float32)
    total = flat.sum(axis=1)
    mean = total / np.float32(784 * 255)
    std = flat.std(axis=1) / np.float32(255)

    ink = x > 25
    rows, cols = ink.any(axis=2), ink.any(axis=1)
    has_ink = rows.any(axis=1)
    height = np.where(has_ink, 28 - rows[:, ::-1].argmax(axis=1) - rows.argmax(axis=1), 0).astype(np.float32)
    width = np.where(has_ink, 28 - cols[:, ::-1].argmax(axis=1) - cols.argmax(axis=1), 0).astype(np.float32)
    aspect = np.where(height > 0, width / np.maximum(height, 1), 0).astype(np.float32)

    mirror_diff = np.abs(flat.reshape(n, 28, 28) - flat.reshape(n, 28, 28)[:, :, ::-1]).reshape(n, 784)
    symmetry = 1 - mirror_diff.mean(axis=1) / np.float32(255)

    positions = np.arange(28, dtype=np.float32)
    safe_total = np.where(total > 0, total, 1)
    centroid_row = np.where(total > 0, flat.reshape(n, 28, 28).sum(axis=2) @ positions / safe_total, 13.5)
    centroid_col = np.where(total > 0, flat.reshape(n, 28, 28).sum(axis=1) @ positions / safe_total, 13.5)

    values = {
        "mean_intensity": mean, "std_intensity": std, "ink_fraction": ink.reshape(n, 784).mean(axis=1),
        "bbox_height": height, "bbox_width": width, "bbox_aspect": aspect, "lr_symmetry": symmetry,
        "centroid_row": centroid_row, "centroid_col": centroid_col,
    }
    return {name: np.asarray(value, dtype=np.float32) for name, value in values.items()}
