"""Batch normalization statistics measured again for the final weights (trainer/training/batch_norm_statistics.py)."""

import numpy as np
import pytest

from trainer.training.batch_norm_statistics import batch_norm_layers, recalibrate


def small_model(batch_norm=None):
    import keras
    from keras import layers

    inputs = keras.Input(shape=(6, 6, 1))
    x = layers.Conv2D(3, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = (batch_norm or layers.BatchNormalization)(name="norm")(x)
    outputs = layers.Activation("relu")(x)
    return keras.Model(inputs, outputs)


def conv_outputs(model, images):
    import keras

    return keras.ops.convert_to_numpy(model.get_layer("conv")(images)).reshape(-1, 3)


def test_statistics_become_the_image_weighted_mean_of_the_batches_and_momentum_is_restored():
    model = small_model()
    images = np.random.default_rng(0).normal(2.0, 3.0, size=(23, 6, 6, 1)).astype("float32")
    measured = recalibrate(model, images, batch=10)
    assert measured == 3  # 10 + 10 + 3 images
    norm = model.get_layer("norm")
    assert norm.momentum == 0.99
    parts = [conv_outputs(model, images[start : start + 10]) for start in (0, 10, 20)]
    sizes = np.array([10, 10, 3])
    mean = sum(n * p.mean(axis=0) for n, p in zip(sizes, parts, strict=True)) / sizes.sum()
    variance = sum(n * p.var(axis=0) for n, p in zip(sizes, parts, strict=True)) / sizes.sum()
    assert np.allclose(np.asarray(norm.moving_mean), mean, rtol=1e-4, atol=1e-5)
    assert np.allclose(np.asarray(norm.moving_variance), variance, rtol=1e-3, atol=1e-5)


def test_only_the_first_images_up_to_the_limit_are_measured():
    model = small_model()
    rng = np.random.default_rng(1)
    images = np.concatenate([rng.normal(0, 1, (8, 6, 6, 1)), rng.normal(50, 1, (8, 6, 6, 1))]).astype("float32")
    assert recalibrate(model, images, limit=8, batch=4) == 2
    expected = conv_outputs(model, images[:8]).mean(axis=0)
    assert np.allclose(np.asarray(model.get_layer("norm").moving_mean), expected, rtol=1e-4, atol=1e-5)


def test_weights_on_another_scale_get_statistics_that_normalise_them():
    """What weight averaging leaves behind: kernels on another scale than the one the statistics were gathered with.
    Before, inference normalised with the old statistics; after, inference matches training-mode normalisation."""
    import keras

    model = small_model()
    images = np.random.default_rng(2).normal(0, 1, (64, 6, 6, 1)).astype("float32")
    recalibrate(model, images)
    kernel = model.get_layer("conv").kernel
    kernel.assign(keras.ops.convert_to_numpy(kernel) * 4.0)
    training_mode = keras.ops.convert_to_numpy(model(images, training=True))
    stale = keras.ops.convert_to_numpy(model(images, training=False))
    assert np.abs(stale - training_mode).max() > 1.0
    recalibrate(model, images)
    fresh = keras.ops.convert_to_numpy(model(images, training=False))
    assert np.abs(fresh - training_mode).max() < 1e-2


def test_the_fused_training_layer_is_recalibrated_too():
    from trainer.training.fused_batch_norm import FusedBatchNormalization

    model = small_model(FusedBatchNormalization)
    assert [type(layer) for layer in batch_norm_layers(model)] == [FusedBatchNormalization]
    images = np.random.default_rng(3).normal(1, 2, (20, 6, 6, 1)).astype("float32")
    recalibrate(model, images, batch=20)
    expected = conv_outputs(model, images).mean(axis=0)
    assert np.allclose(np.asarray(model.get_layer("norm").moving_mean), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("images", [np.zeros((0, 6, 6, 1), "float32")])
def test_nothing_to_measure_changes_nothing(images):
    model = small_model()
    before = [np.asarray(v).copy() for v in model.get_layer("norm").non_trainable_weights]
    assert recalibrate(model, images) == 0
    after = [np.asarray(v) for v in model.get_layer("norm").non_trainable_weights]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_a_model_without_batch_normalization_is_not_run():
    import keras

    calls = []

    class Counting(keras.layers.Layer):
        def call(self, inputs):
            calls.append(1)
            return inputs

    inputs = keras.Input(shape=(4,))
    model = keras.Model(inputs, Counting()(keras.layers.Dense(2)(inputs)))
    calls.clear()
    assert recalibrate(model, np.ones((8, 4), "float32")) == 0 and calls == []
