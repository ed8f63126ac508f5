"""service/features.py is a copy of trainer/features.py's compute_image_features: same text, same values."""
import inspect

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

trainer_features = pytest.importorskip("trainer.features", reason="trainer/features.py is not in this checkout")
trainer_schema = pytest.importorskip("trainer.feature_schema")

from service import features as service_features  # noqa: E402


def test_the_function_is_a_textual_copy():
    assert inspect.getsource(service_features.compute_image_features) == \
        inspect.getsource(trainer_features.compute_image_features)


def test_identity_and_names_match():
    assert service_features.FEATURE_FUNCTION_ID == trainer_schema.FEATURE_FUNCTION_ID
    assert service_features.FEATURE_NAMES == trainer_schema.FEATURE_NAMES


def _assert_identical(images):
    ours = service_features.compute_image_features(images)
    theirs = trainer_features.compute_image_features(images)
    assert list(ours) == list(theirs)
    for name in ours:
        assert ours[name].dtype == theirs[name].dtype == np.float32
        np.testing.assert_array_equal(ours[name], theirs[name])


def test_identical_on_random_blank_and_saturated_images():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 28, 28), dtype=np.uint8)
    images[0] = 0
    images[1] = 255
    images[2] = (rng.random((28, 28)) > 0.97) * 255
    _assert_identical(images)


@settings(max_examples=30, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 8), st.just(28), st.just(28))))
def test_identical_on_generated_images(images):
    _assert_identical(images)
