"""The fused BatchNormalization computes what Keras's does (outputs, gradients, moving statistics), so training with
it changes speed, not the model; the saved model has Keras's own layer."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

from trainer.training.fused_batch_norm import FusedBatchNormalization
from trainer.training.model import ModelSpec, build_model
from trainer.training.train import PRESETS, float32_copy, precision_policy

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the fused op is TensorFlow's")


def pair(channels: int = 8, dtype: str | None = None):
    plain = layers.BatchNormalization(momentum=0.9, dtype=dtype)
    fused = FusedBatchNormalization(momentum=0.9, dtype=dtype)
    for layer in (plain, fused):
        layer.build((None, 6, 6, channels))
    rng = np.random.default_rng(0)
    weights = [rng.normal(1.0, 0.2, channels), rng.normal(0.0, 0.2, channels), np.zeros(channels), np.ones(channels)]
    for layer in (plain, fused):
        layer.set_weights([w.astype("float32") for w in weights])
    return plain, fused


def train_step(layers_: tuple, dtype: str = "float32"):
    """Each layer's training output, gradients (inputs, gamma, beta) and weights after one step on the same batch."""
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(1).normal(3.0, 2.0, (16, 6, 6, 8)).astype("float32"), dtype=dtype)
    upstream = tf.constant(np.random.default_rng(2).normal(size=(16, 6, 6, 8)).astype("float32"))
    results = []
    for layer in layers_:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, "float32") * upstream)
        grads = tape.gradient(loss, [x, layer.gamma.value, layer.beta.value])
        results.append((y, [np.asarray(g, "float32") for g in grads], [w.copy() for w in layer.get_weights()]))
    return results


def fused_ops(layer, dtype: str) -> list[str]:
    """The FusedBatchNorm ops in the graph of one training step (forward and gradient) on `dtype` inputs."""
    import tensorflow as tf

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, "float32") * tf.range(8, dtype="float32"))  # sum(y) alone has no gradient
        return tape.gradient(loss, x)

    graph = step.get_concrete_function(tf.TensorSpec((4, 6, 6, 8), dtype)).graph
    return sorted({op.type for op in graph.get_operations() if op.type.startswith("FusedBatchNorm")})


def test_training_outputs_gradients_and_moving_statistics_match_keras():
    (y0, g0, w0), (y1, g1, w1) = train_step(pair())
    y0, y1 = y0.numpy(), y1.numpy()
    np.testing.assert_allclose(y1, y0, atol=2e-4)
    for expected, got in zip(g0, g1, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=2e-3)
    # moving mean exactly as Keras; moving variance within Bessel's factor 576 / 575 for 16 x 6 x 6 values
    np.testing.assert_allclose(w1[2], w0[2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w1[3], w0[3], rtol=3e-3)
    assert not np.allclose(w1[2], 0.0), "the moving mean must move"


def test_inference_is_keras_own_computation():
    plain, fused = pair()
    x = np.random.default_rng(3).normal(size=(4, 6, 6, 8)).astype("float32")
    np.testing.assert_array_equal(np.asarray(fused(x, training=False)), np.asarray(plain(x, training=False)))


def test_the_saved_copy_of_a_fused_model_has_keras_batch_normalization_and_the_same_weights():
    spec = PRESETS["smoke"].model
    trained = build_model(spec, FusedBatchNormalization)
    assert sum(isinstance(layer, FusedBatchNormalization) for layer in trained.layers) == spec.blocks
    copy = float32_copy(trained, spec)
    assert not any(isinstance(layer, FusedBatchNormalization) for layer in copy.layers)
    assert all(np.array_equal(a, b) for a, b in zip(copy.get_weights(), trained.get_weights(), strict=True))


def test_plain_build_has_no_fused_layer():
    model = build_model(ModelSpec(width=4, blocks=2, convs_per_block=1))
    assert not any(isinstance(layer, FusedBatchNormalization) for layer in model.layers)


def test_mixed_bfloat16_training_matches_keras_within_bf16_rounding():
    # the full preset trains under mixed_bfloat16: bf16 activations in and out, float32 weights and statistics
    plain, fused = pair(dtype="mixed_bfloat16")
    (y0, g0, w0), (y1, g1, w1) = train_step((plain, fused), "bfloat16")
    assert y0.dtype == y1.dtype == "bfloat16"
    assert fused.gamma.dtype == fused.moving_mean.dtype == "float32"
    y0, y1 = np.asarray(y0, "float32"), np.asarray(y1, "float32")
    # both compute in float32 and round once to bf16 (8 bits of mantissa): at most one bf16 step apart
    np.testing.assert_allclose(y1, y0, rtol=2**-7, atol=2**-7)
    assert np.mean(y1 == y0) > 0.9, "nearly every output rounds to the same bf16 value"
    (dx0, dgamma0, dbeta0), (dx1, dgamma1, dbeta1) = g0, g1
    np.testing.assert_allclose(dx1, dx0, rtol=2**-6, atol=2**-6 * np.abs(dx0).max())
    # gamma's and beta's gradients reduce 576 values: bf16 outputs' rounding, summed, stays within a few tenths of a %
    np.testing.assert_allclose(dgamma1, dgamma0, rtol=1e-2, atol=1e-2 * np.abs(dgamma0).max())
    np.testing.assert_allclose(dbeta1, dbeta0, rtol=1e-2, atol=1e-2 * np.abs(dbeta0).max())
    # statistics from the same bf16 inputs in float32: the mean as Keras's, the variance within Bessel's 576 / 575
    np.testing.assert_allclose(w1[2], w0[2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w1[3], w0[3], rtol=3e-3)
    assert not np.allclose(w1[2], 0.0), "the moving mean must move"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_training_step_is_one_fused_op_forward_and_one_backward(dtype):
    _, fused = pair(dtype="mixed_bfloat16" if dtype == "bfloat16" else None)
    assert fused_ops(fused, dtype) == ["FusedBatchNormGradV3", "FusedBatchNormV3"]


def test_keras_layer_has_no_fused_op_so_the_graph_check_can_fail():
    plain, _ = pair(dtype="mixed_bfloat16")
    assert fused_ops(plain, "bfloat16") == []


def test_float64_inputs_fall_back_to_keras_layer():
    # FusedBatchNormV3 has no float64 kernel: the layer must compute it the composed way, not fail
    _, fused = pair(dtype="float64")
    assert fused_ops(fused, "float64") == []


def test_a_bf16_trained_model_is_saved_float32_with_keras_batch_normalization():
    spec = PRESETS["smoke"].model
    with precision_policy(True):
        trained = build_model(spec, FusedBatchNormalization)
    assert {layer.dtype_policy.name for layer in trained.layers if isinstance(layer, FusedBatchNormalization)} == {
        "mixed_bfloat16"
    }
    copy = float32_copy(trained, spec)
    assert not any(isinstance(layer, FusedBatchNormalization) for layer in copy.layers)
    assert {layer.dtype_policy.name for layer in copy.layers} == {"float32"}
    assert all(np.array_equal(a, b) for a, b in zip(copy.get_weights(), trained.get_weights(), strict=True))
