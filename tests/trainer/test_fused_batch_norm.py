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


def pair(channels: int = 8, spatial: tuple[int, ...] = (6, 6), dtype: str | None = None):
    # epsilon and moving mean not Keras's defaults (1e-3, zeros): an epsilon left out, or a moving mean divided
    # by the momentum, would still match
    plain = layers.BatchNormalization(momentum=0.9, epsilon=0.01, dtype=dtype)
    fused = FusedBatchNormalization(momentum=0.9, epsilon=0.01, dtype=dtype)
    for layer in (plain, fused):
        layer.build((None, *spatial, channels))
    rng = np.random.default_rng(0)
    weights = [
        rng.normal(1.0, 0.2, channels),
        rng.normal(0.0, 0.2, channels),
        rng.normal(1.0, 0.5, channels),
        np.ones(channels),
    ]
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


@pytest.mark.slow  # with the fused-op checks, over 10 s in all (TensorFlow's first graphs)
def test_training_outputs_gradients_and_moving_statistics_match_keras():
    plain, fused = pair()
    start = fused.get_weights()[2].copy()
    (y0, g0, w0), (y1, g1, w1) = train_step((plain, fused))
    y0, y1 = y0.numpy(), y1.numpy()
    np.testing.assert_allclose(y1, y0, atol=2e-4)
    for expected, got in zip(g0, g1, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=2e-3)
    # moving mean exactly as Keras; moving variance within Bessel's factor 576 / 575 for 16 x 6 x 6 values
    np.testing.assert_allclose(w1[2], w0[2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w1[3], w0[3], rtol=3e-3)
    assert not np.allclose(w1[2], start), "the moving mean must move"


def fused_ops(layer, shape, dtype="float32", training=True, mask=None) -> list[str]:
    """The fused batch-norm ops in the graph of one call: which computation the layer chose."""
    import tensorflow as tf

    def step(x):
        return layer(x, training=training, mask=mask)

    graph = tf.function(step, autograph=False).get_concrete_function(tf.TensorSpec(shape, dtype)).graph
    return sorted({op.type for op in graph.get_operations() if op.type.startswith("FusedBatchNorm")})


NHWC = (2, 4, 4, 3)


@pytest.mark.parametrize("axis", [-1, 3])
def test_training_on_four_dimensional_channels_last_float32_is_one_fused_op(axis):
    assert fused_ops(FusedBatchNormalization(axis=axis), NHWC) == ["FusedBatchNormV3"]


def frozen() -> FusedBatchNormalization:
    layer = FusedBatchNormalization()
    layer.trainable = False
    return layer


@pytest.mark.parametrize(
    ("make", "shape", "kwargs"),
    [
        (FusedBatchNormalization, NHWC, {"training": False}),
        (FusedBatchNormalization, NHWC, {"training": None}),
        (frozen, NHWC, {}),
        (FusedBatchNormalization, NHWC, {"mask": np.ones(NHWC[:3], bool)}),
        (lambda: FusedBatchNormalization(renorm=True), NHWC, {}),
        (lambda: FusedBatchNormalization(scale=False), NHWC, {}),
        (lambda: FusedBatchNormalization(center=False), NHWC, {}),
        (FusedBatchNormalization, (2, 3), {}),
        (lambda: FusedBatchNormalization(axis=1), (2, 3, 4, 4), {}),
        (lambda: FusedBatchNormalization(dtype="float64"), NHWC, {"dtype": "float64"}),
        (lambda: FusedBatchNormalization(dtype="float16"), NHWC, {"dtype": "float16"}),  # float16 weights
        (FusedBatchNormalization, NHWC, {"dtype": "int32"}),  # integers are not cast to the compute dtype
    ],
    ids=[
        "inference",
        "no-training-flag",
        "frozen",
        "mask",
        "renorm",
        "no-scale",
        "no-center",
        "2-d",
        "channels-first",
        "float64",
        "float16-weights",
        "integer-inputs",
    ],
)
def test_anything_else_is_keras_own_computation(make, shape, kwargs):
    assert fused_ops(make(), shape, **kwargs) == []


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


@pytest.mark.parametrize(("shape", "masked"), [((16, 8), False), ((4, 6, 6, 8), True)], ids=["dense-2-d", "masked-4-d"])
def test_training_where_it_cannot_fuse_is_keras_own_computation_with_the_batch_and_mask(shape, masked):
    plain, fused = pair(spatial=shape[1:-1])
    start = plain.moving_mean.numpy().copy()
    x = np.random.default_rng(4).normal(3.0, 2.0, shape).astype("float32")
    mask = np.random.default_rng(5).random(shape[:-1]) < 0.5 if masked else None  # half the positions left out
    np.testing.assert_array_equal(
        np.asarray(fused(x, training=True, mask=mask)), np.asarray(plain(x, training=True, mask=mask))
    )
    np.testing.assert_array_equal(fused.moving_mean.numpy(), plain.moving_mean.numpy())
    batch = x.reshape(-1, shape[-1])[mask.reshape(-1)] if masked else x  # the batch's moments, the mask's only
    np.testing.assert_allclose(plain.moving_mean.numpy(), 0.9 * start + 0.1 * batch.mean(axis=0), rtol=1e-5)


def fused_step_ops(layer, dtype: str) -> list[str]:
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


def test_mixed_bfloat16_training_matches_keras_within_bf16_rounding():
    # the full preset trains under mixed_bfloat16: bf16 activations in and out, float32 weights and statistics
    plain, fused = pair(dtype="mixed_bfloat16")
    start = fused.get_weights()[2].copy()
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
    assert not np.allclose(w1[2], start), "the moving mean must move"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_training_step_is_one_fused_op_forward_and_one_backward(dtype):
    _, fused = pair(dtype="mixed_bfloat16" if dtype == "bfloat16" else None)
    assert fused_step_ops(fused, dtype) == ["FusedBatchNormGradV3", "FusedBatchNormV3"]


def test_keras_layer_has_no_fused_op_so_the_graph_check_can_fail():
    plain, _ = pair(dtype="mixed_bfloat16")
    assert fused_step_ops(plain, "bfloat16") == []


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
