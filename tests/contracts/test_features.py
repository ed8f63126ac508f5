"""The per-image feature function, the baseline's binning and PSI (contracts/features.py): known values, batch
consistency, the schema they follow, and a shift that PSI must see."""

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from contracts import feature_schema, features
from contracts.images import REPO_ROOT
from tests.conftest import make_images


def blank(n=1):
    return np.zeros((n, 28, 28), dtype=np.uint8)


def test_feature_names_and_types_follow_the_schema():
    out = features.compute_image_features(make_images(np.arange(7) % 10))
    assert tuple(out) == feature_schema.FEATURE_NAMES
    for values in out.values():
        assert values.dtype == np.float32 and values.shape == (7,)


def test_known_values_of_a_centred_rectangle():
    image = blank()
    image[0, 5:15, 10:18] = 255  # 10 rows x 8 columns, centred left-right
    f = {k: float(v[0]) for k, v in features.compute_image_features(image).items()}
    assert f["mean_intensity"] == pytest.approx(80 / 784)
    assert f["ink_fraction"] == pytest.approx(80 / 784)
    assert f["std_intensity"] == pytest.approx(np.sqrt(80 / 784 * (1 - 80 / 784)), rel=1e-5)
    assert (f["bbox_height"], f["bbox_width"]) == (10, 8)
    assert f["bbox_aspect"] == pytest.approx(0.8)
    assert f["lr_symmetry"] == pytest.approx(1.0)
    assert (f["centroid_row"], f["centroid_col"]) == (pytest.approx(9.5), pytest.approx(13.5))


def test_asymmetric_image_and_faint_pixels():
    image = blank()
    image[0, :, :4] = 200  # left edge only: mirrored it lands on empty columns
    image[0, 0, 27] = 20  # too faint to count as ink (threshold 25)
    f = {k: float(v[0]) for k, v in features.compute_image_features(image).items()}
    assert f["bbox_width"] == 4 and f["bbox_height"] == 28
    assert f["ink_fraction"] == pytest.approx(112 / 784)
    assert f["lr_symmetry"] == pytest.approx(1 - (2 * 112 * 200 - 2 * 20) / 784 / 255, rel=1e-5)
    assert f["centroid_col"] < 2


def test_blank_image_has_defined_values():
    f = {k: float(v[0]) for k, v in features.compute_image_features(blank()).items()}
    assert f == {
        "mean_intensity": 0,
        "std_intensity": 0,
        "ink_fraction": 0,
        "bbox_height": 0,
        "bbox_width": 0,
        "bbox_aspect": 0,
        "lr_symmetry": 1,
        "centroid_row": 13.5,
        "centroid_col": 13.5,
    }


def test_batch_equals_one_image_at_a_time():
    images = make_images(np.arange(40) % 10, seed=3)
    batch = features.compute_image_features(images)
    for i in (0, 17, 39):
        single = features.compute_image_features(images[i : i + 1])
        for name in feature_schema.FEATURE_NAMES:
            assert single[name][0] == pytest.approx(batch[name][i], rel=1e-6), name


def test_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"\[N, 28, 28\]"):
        features.compute_image_features(np.zeros((2, 784), dtype=np.uint8))


def test_schema_module_is_pure_python_and_bigquery_ready():
    code = (
        "import sys, contracts.feature_schema as s; assert 'numpy' not in sys.modules; print(len(s.bigquery_schema()))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    fields = feature_schema.bigquery_schema()
    assert int(proc.stdout) == len(fields)
    names = [f["name"] for f in fields]
    assert len(set(names)) == len(names) and names[0] == feature_schema.ENTITY_ID_COLUMN
    assert {f["type"] for f in fields} <= {"STRING", "INT64", "FLOAT64"}
    assert all(f["description"] for f in fields)


def test_feature_baseline_matches_the_contract_and_psi_detects_shift():
    labels = np.arange(2000) % 10
    values = features.compute_image_features(make_images(labels, seed=1))
    baseline = features.feature_baseline(values, labels)
    json.dumps(baseline)  # stored in metadata.json
    assert baseline["feature_function"] == feature_schema.FEATURE_FUNCTION_ID
    assert set(baseline["features"]) == set(feature_schema.FEATURE_NAMES)
    for block in baseline["features"].values():
        assert len(block["edges"]) == 9 and len(block["proportions"]) == 10
        assert sum(block["proportions"]) == pytest.approx(1)
        assert block["edges"] == sorted(block["edges"])
    assert baseline["classes"]["proportions"] == [pytest.approx(0.1)] * 10

    same = features.compute_image_features(make_images(labels, seed=2))
    brighter = features.compute_image_features(
        np.clip(make_images(labels, seed=2).astype(int) + 60, 0, 255).astype(np.uint8)
    )
    block = baseline["features"]["mean_intensity"]
    assert (
        features.population_stability_index(
            block["proportions"], features.bin_proportions(block["edges"], same["mean_intensity"])
        )
        < 0.1
    )
    assert (
        features.population_stability_index(
            block["proportions"], features.bin_proportions(block["edges"], brighter["mean_intensity"])
        )
        > 0.2
    )


@hypothesis_settings(max_examples=30, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 8), st.just(28), st.just(28))))
def test_generated_batches_equal_their_images_one_by_one(images):
    batch = features.compute_image_features(images)
    for i in range(len(images)):
        single = features.compute_image_features(images[i : i + 1])
        for name in feature_schema.FEATURE_NAMES:
            assert single[name][0] == pytest.approx(batch[name][i], rel=1e-5, abs=1e-6), name


def test_chunked_features_equal_one_call():
    images = make_images(np.arange(50) % 10, seed=4)
    whole, chunked = features.compute_image_features(images), features.compute_features_chunked(images, chunk=7)
    for name in feature_schema.FEATURE_NAMES:
        np.testing.assert_array_equal(whole[name], chunked[name])


def test_psi_is_zero_for_equal_distributions_and_clamps_empty_bins():
    assert features.population_stability_index([0.5, 0.5], [0.5, 0.5]) == 0
    assert features.population_stability_index([1.0, 0.0], [0.0, 1.0]) == pytest.approx(
        2 * (1 - 1e-4) * np.log((1 - 0) / 1e-4), rel=1e-3
    )
