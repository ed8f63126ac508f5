"""Small generated IDX data sets: class-dependent 28x28 images a short training can learn, in the four official
files. Why here: the tests, the benches and anyone trying a command without the real data set need the same
generator; benches must not import the test suite.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from contracts.dataset import IDX_FILE_NAMES as IDX_NAMES


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 array as a gzipped IDX file (magic 0x0000080N, big-endian dims)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(header + array.tobytes())
    return path


def make_images(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Class-dependent synthetic 28x28 images: learnable, so short trainings can be asserted to beat chance."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    images = rng.integers(0, 40, size=(n, 28, 28), dtype=np.int32)
    for i, label in enumerate(labels):
        row = 2 + int(label) * 2
        images[i, row : row + 4, 3:25] += 180
        images[i, 4:24, 2 + int(label) * 2] += 60
    return np.clip(images, 0, 255).astype(np.uint8)


def make_idx_dir(directory: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """Four small, valid IDX files with balanced labels."""
    directory.mkdir(parents=True, exist_ok=True)
    y_train = (np.arange(n_train) % 10).astype(np.uint8)
    y_test = (np.arange(n_test) % 10).astype(np.uint8)
    write_idx(directory / IDX_NAMES["train_images"], make_images(y_train, seed))
    write_idx(directory / IDX_NAMES["train_labels"], y_train)
    write_idx(directory / IDX_NAMES["test_images"], make_images(y_test, seed + 1))
    write_idx(directory / IDX_NAMES["test_labels"], y_test)
    return directory
