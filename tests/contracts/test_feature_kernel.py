"""contracts.features' matrix kernel gives, bit for bit, what the direct per-feature formulas gave (the baselines
stored in every exported model were computed with them), and bin_matrix bins like searchsorted(side="right").

The reference below is the implementation the kernel replaced, kept verbatim: a drift histogram moves only when a
value crosses a bin edge, so equality must be exact, not approximate."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from contracts import features
from contracts.feature_schema import FEATURE_NAMES
from tests.conftest import make_images


def reference_features(images: np.ndarray) -> dict[str, np.ndarray]:
    """The direct formulas (contracts/features.py before the matrix kernel)."""
    x = np.asarray(images).astype(np.uint8, copy=False)
    n = x.shape[0]
    flat = x.reshape(n, 784).astype(np.float32)
    total = flat.sum(axis=1)
    mean = total / np.float32(784 * 255)
    std = flat.std(axis=1) / np.float32(255)
    ink = np.greater(x, 25)
    rows = np.any(ink, axis=2)
    cols = np.any(ink, axis=1)
    has_ink = np.any(rows, axis=1)
    height = np.where(has_ink, 28 - rows[:, ::-1].argmax(axis=1) - rows.argmax(axis=1), 0).astype(np.float32)
    width = np.where(has_ink, 28 - cols[:, ::-1].argmax(axis=1) - cols.argmax(axis=1), 0).astype(np.float32)
    aspect = np.where(height > 0, width / np.maximum(height, 1), 0).astype(np.float32)
    square = flat.reshape(n, 28, 28)
    mirror_diff = np.abs(square - square[:, :, ::-1]).reshape(n, 784)
    symmetry = 1 - mirror_diff.mean(axis=1) / np.float32(255)
    positions = np.arange(28, dtype=np.float32)
    safe_total = np.where(total > 0, total, 1)
    centroid_row = np.where(total > 0, square.sum(axis=2) @ positions / safe_total, 13.5)
    centroid_col = np.where(total > 0, square.sum(axis=1) @ positions / safe_total, 13.5)
    values = {
        "mean_intensity": mean,
        "std_intensity": std,
        "ink_fraction": ink.reshape(n, 784).mean(axis=1),
        "bbox_height": height,
        "bbox_width": width,
        "bbox_aspect": aspect,
        "lr_symmetry": symmetry,
        "centroid_row": centroid_row,
        "centroid_col": centroid_col,
    }
    return {name: np.asarray(value, dtype=np.float32) for name, value in values.items()}


def assert_same_bits(images: np.ndarray) -> None:
    expected = reference_features(images)
    matrix = features.feature_matrix(images)
    assert matrix.dtype == np.float32 and matrix.shape == (len(FEATURE_NAMES), len(images))
    for row, name in enumerate(FEATURE_NAMES):
        # equal bit patterns, not only equal values (a -0.0 or another NaN would not bin the same in every path)
        assert matrix[row].view(np.uint32).tolist() == expected[name].view(np.uint32).tolist(), name


def random_batches() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    dense = [rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for n in (1, 7, 8, 9, 64, 257)]
    sparse = (rng.integers(0, 256, (300, 28, 28)) * (rng.random((300, 28, 28)) < 0.04)).astype(np.uint8)
    faint = rng.integers(0, 27, (50, 28, 28), dtype=np.uint8)  # around the ink threshold only
    edges = np.zeros((4, 28, 28), np.uint8)
    edges[0, 0, 0] = edges[1, 27, 27] = edges[2, :, 0] = edges[3, 13, :] = 255  # one-line and corner extents
    return [*dense, sparse, faint, edges, np.zeros((3, 28, 28), np.uint8), np.full((2, 28, 28), 255, np.uint8)]


@pytest.mark.parametrize("batch", random_batches(), ids=lambda b: f"{len(b)}x{int(b.mean())}")
def test_the_kernel_equals_the_direct_formulas_bit_for_bit(batch):
    assert_same_bits(batch)


def test_fashion_like_images_and_their_inverse_give_the_same_bits():
    images = make_images(np.arange(500) % 10, seed=5)
    assert_same_bits(images)
    assert_same_bits(255 - images)  # the demo's drift check sends inverted images


def test_float_pixels_are_truncated_like_the_direct_formulas():
    """The service passes float32 pixels (JSON may carry fractions): both truncate to uint8 first."""
    pixels = np.random.default_rng(3).uniform(0, 255.99, (40, 28, 28)).astype(np.float32)
    assert_same_bits(pixels)


@hypothesis_settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 12), st.just(28), st.just(28))))
def test_generated_images_give_the_same_bits(images):
    assert_same_bits(images)


def test_the_dictionary_form_is_the_matrix_by_name():
    images = make_images(np.arange(20) % 10, seed=6)
    matrix = features.feature_matrix(images)
    named = features.compute_image_features(images)
    assert tuple(named) == FEATURE_NAMES
    for row, name in enumerate(FEATURE_NAMES):
        np.testing.assert_array_equal(named[name], matrix[row])


def test_bin_matrix_equals_searchsorted_right_on_every_row_ties_and_edges_included():
    rng = np.random.default_rng(11)
    edges = np.sort(rng.uniform(0, 1, (9, 9)), axis=1)
    edges[3] = [0.2, 0.2, 0.2, 0.5, 0.5, 0.7, 0.9, 0.9, 0.9]  # repeated quantiles (a discrete feature)
    values = rng.uniform(-0.1, 1.1, (9, 500)).astype(np.float32)
    values[:, :9] = edges.astype(np.float32)  # values on an edge, after float32 rounding
    values[:, 9:18] = edges  # ... and exactly on it where float32 holds it
    values[3, 18:21] = [0.2, 0.5, 0.9]
    bins = features.bin_matrix(edges, values)
    assert bins.shape == values.shape
    for row in range(9):
        np.testing.assert_array_equal(bins[row], features.bin_index(edges[row], values[row]))


def test_bin_matrix_on_a_real_baseline_gives_the_baselines_own_bins():
    images = make_images(np.arange(2000) % 10, seed=8)
    named = features.compute_image_features(images)
    baseline = features.feature_baseline(named, np.arange(2000) % 10)
    edges = np.array([baseline["features"][name]["edges"] for name in FEATURE_NAMES])
    bins = features.bin_matrix(edges, features.feature_matrix(images))
    for row, name in enumerate(FEATURE_NAMES):
        proportions = np.bincount(bins[row], minlength=features.N_BINS) / len(images)
        np.testing.assert_array_equal(proportions, baseline["features"][name]["proportions"])
