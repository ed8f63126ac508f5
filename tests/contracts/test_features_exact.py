"""The feature function's edge cases, the baseline's binning and PSI by exact value (contracts/features.py): the
figures model metadata stores and the service's drift check compares, and the error a wrong shape gets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from contracts import features


def one_image(rows: slice, cols: slice, level: int) -> np.ndarray:
    image = np.zeros((1, 28, 28), np.uint8)
    image[0, rows, cols] = level
    return image


@pytest.mark.parametrize("shape", [(2, 28, 27), (2, 27, 28), (28, 28), (2, 784), (1, 1, 28, 28)])
def test_a_wrong_shape_is_refused_naming_the_expected_and_the_given_shape(shape):
    with pytest.raises(ValueError) as error:
        features.feature_matrix(np.zeros(shape, np.uint8))
    assert str(error.value) == f"expected images of shape [N, 28, 28], got {list(shape)}"


@pytest.mark.parametrize(
    "rows, cols, height, width, aspect, centroid",
    [
        (slice(3, 4), slice(2, 7), 1, 5, 5.0, (3.0, 4.0)),  # one row: the aspect divides by a height of 1
        (slice(20, 26), slice(27, 28), 6, 1, np.float32(1 / 6), (22.5, 27.0)),  # one column at the right edge
        (slice(0, 28), slice(0, 28), 28, 28, 1.0, (13.5, 13.5)),  # every pixel: the box is the whole image
    ],
)
def test_the_box_of_a_line_a_column_and_a_full_image(rows, cols, height, width, aspect, centroid):
    f = {k: v[0] for k, v in features.compute_image_features(one_image(rows, cols, 100)).items()}
    assert (f["bbox_height"], f["bbox_width"], f["bbox_aspect"]) == (height, width, aspect)
    assert (f["centroid_row"], f["centroid_col"]) == centroid
    assert f["ink_fraction"] == np.float32(height * width / 784)


def test_ink_is_a_pixel_above_25():
    f = features.compute_image_features(np.stack([one_image(slice(0, 1), slice(0, 1), v)[0] for v in (25, 26)]))
    assert f["ink_fraction"].tolist() == [0.0, np.float32(1 / 784)]
    assert f["bbox_height"].tolist() == [0.0, 1.0]


def test_chunks_of_any_size_give_every_image_once_in_order():
    images = np.stack([one_image(slice(0, 28), slice(0, k + 1), 255)[0] for k in range(5)])
    for chunk in (1, 2, 3, 5, 8192):
        widths = features.compute_features_chunked(images, chunk=chunk)["bbox_width"]
        assert widths.tolist() == [1, 2, 3, 4, 5], chunk
    assert features.compute_features_chunked(images)["bbox_width"].tolist() == [1, 2, 3, 4, 5]


def test_bins_count_the_edges_at_or_below_a_value():
    edges = [0.1, 0.2, 0.3]
    values = [0.05, 0.1, 0.15, 0.3, 0.9]
    assert features.bin_index(edges, values).tolist() == [0, 1, 1, 3, 3]
    matrix = features.bin_matrix(np.array([edges, [1.0, 2.0, 3.0]]), [values, [0, 1, 2.5, 3, 4]])
    assert matrix.tolist() == [[0, 1, 1, 3, 3], [0, 1, 2, 3, 3]]


def test_bin_proportions_are_shares_of_every_bin():
    assert features.bin_proportions([1.0, 2.0], [0, 1, 1, 5]).tolist() == [0.25, 0.5, 0.25]
    assert features.bin_proportions([1.0, 2.0], [1.5]).tolist() == [0.0, 1.0, 0.0]
    assert features.bin_proportions([1.0, 2.0], []).tolist() == [0.0, 0.0, 0.0]


def test_the_baseline_block_of_model_metadata():
    values = {name: np.arange(10.0) for name in features.FEATURE_NAMES}
    baseline = features.feature_baseline(values, [0, 0, 1, 3], n_bins=4)
    assert baseline["feature_function"] == "fmnist-image-features/v1"
    assert list(baseline["features"]) == list(features.FEATURE_NAMES)
    assert baseline["features"]["ink_fraction"] == {"edges": [2.25, 4.5, 6.75], "proportions": [0.3, 0.2, 0.2, 0.3]}
    assert baseline["classes"] == {"proportions": [0.5, 0.25, 0.0, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]}
    default = features.feature_baseline(values, np.arange(10))["features"]["centroid_col"]
    assert default["edges"] == pytest.approx([0.9, 1.8, 2.7, 3.6, 4.5, 5.4, 6.3, 7.2, 8.1], abs=1e-12)
    assert default["proportions"] == [0.1] * 10


def test_psi_by_its_formula_with_shares_below_the_floor_clamped():
    assert features.population_stability_index([0.5, 0.5], [0.25, 0.75]) == pytest.approx(
        -0.25 * math.log(0.5) + 0.25 * math.log(1.5), rel=1e-12
    )
    assert features.population_stability_index([0.00005, 0.99995], [0.00002, 0.99998]) == pytest.approx(
        0.00003 * math.log(0.99998 / 0.99995), rel=1e-9
    )
    assert features.population_stability_index([0.0, 1.0], [0.0001, 0.9999]) == pytest.approx(
        -0.0001 * math.log(0.9999), rel=1e-9
    )


def test_the_centroid_of_a_single_faint_pixel_is_that_pixel():
    f = features.compute_image_features(one_image(slice(2, 3), slice(3, 4), 1))
    assert (f["centroid_row"][0], f["centroid_col"][0]) == (2.0, 3.0)
    assert f["mean_intensity"][0] == np.float32(1 / (784 * 255))


def test_float32_features_get_float64_edges_as_the_baseline_stores_them():
    # compute_image_features returns float32: the quantiles are interpolated in float64 all the same
    values = {name: np.float32([0.1, 0.7, 0.3, 0.45]) for name in features.FEATURE_NAMES}
    block = features.feature_baseline(values, [0, 1, 2, 3], n_bins=4)["features"]["mean_intensity"]
    assert block["edges"] == [0.25000000931322575, 0.375, 0.512499988079071]  # float32's own: 0.2500000074505806


def test_psi_of_float32_shares_is_computed_in_float64_with_the_floor_at_1e_4():
    # float32 shares widen exactly; the floor must be float64's 1e-4, not float32's 9.99999974e-05
    expected, actual = np.float32([0.0, 0.3, 0.7]), np.float32([0.6, 0.4, 0.0])
    wide_e, wide_a = np.maximum(np.float64(expected), 1e-4), np.maximum(np.float64(actual), 1e-4)
    exact = float(np.sum((wide_a - wide_e) * np.log(wide_a / wide_e)))
    assert features.population_stability_index(expected, actual) == exact == 11.444287647368974
