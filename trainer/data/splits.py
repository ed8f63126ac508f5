"""The one train/validation split every training path uses (custom trainer, AutoML export).

Why its own module: AutoML must validate and test on exactly the images the custom trainer does, or the registry
would compare models measured on different data. The test set is never part of model selection.
"""

from __future__ import annotations

import numpy as np


def validation_mask(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask over the training set: True marks a validation image. Stratified per class, deterministic."""
    labels = np.asarray(labels)
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        n_val = max(1, int(round(len(idx) * fraction))) if len(idx) > 1 else 0
        mask[rng.permutation(idx)[:n_val]] = True
    return mask
