"""The model builder and the keras.ops augmentation: contract shapes, scaling inside, jit-compatible, TF-free on JAX."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras import layers, ops

from contracts.dataset import CLASS_NAMES
from contracts.layout import INPUT_NAME, OUTPUT_NAME
from settings import REPO_ROOT
from trainer.training.augment import RandomShiftFlip, shift_and_flip, shift_matrices, training_model
from trainer.training.model import PIXEL_MEAN, PIXEL_STD, ModelSpec, build_model

SMALL = ModelSpec(width=4, blocks=2, convs_per_block=1)


def test_model_takes_raw_pixels_and_returns_probabilities():
    model = build_model(SMALL)
    assert model.inputs[0].name == INPUT_NAME and tuple(model.input_shape) == (None, 28, 28)
    assert any(isinstance(layer, layers.Rescaling) for layer in model.layers), "scaling must live inside the model"
    pixels = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype("float32")
    probabilities = np.asarray(model(pixels))
    assert probabilities.shape == (5, len(CLASS_NAMES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_output_stays_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_model(SMALL)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.layers[-1].dtype_policy.compute_dtype == "float32"
    assert keras.backend.standardize_dtype(model(np.zeros((1, 28, 28), "float32")).dtype) == "float32"


def test_builder_knobs_change_the_architecture():
    dense = build_model(ModelSpec(width=8, blocks=2, convs_per_block=1, dense_units=16))
    deep = build_model(ModelSpec(width=8, blocks=3, convs_per_block=2))

    def conv_count(model):
        return sum(isinstance(layer, layers.Conv2D) for layer in model.layers)

    assert conv_count(dense) == 2 and conv_count(deep) == 6
    assert any(isinstance(layer, layers.Dense) and layer.units == 16 for layer in dense.layers)


def test_pool_last_puts_the_dense_head_on_a_quarter_of_the_positions():
    def head_inputs(pool_last: bool) -> int:
        model = build_model(ModelSpec(width=8, blocks=2, convs_per_block=1, dense_units=16, pool_last=pool_last))
        return next(layer for layer in model.layers if isinstance(layer, layers.Dense)).kernel.shape[0]

    assert head_inputs(False) == 14 * 14 * 16 and head_inputs(True) == 7 * 7 * 16


def test_head_channels_narrow_the_dense_heads_input_with_a_1x1_convolution():
    def head(channels: int) -> tuple[int, list[int]]:
        model = build_model(ModelSpec(width=8, blocks=2, convs_per_block=1, dense_units=16, head_channels=channels))
        dense = next(layer for layer in model.layers if isinstance(layer, layers.Dense))
        kernels = [layer.kernel_size[0] for layer in model.layers if isinstance(layer, layers.Conv2D)]
        return dense.kernel.shape[0], kernels

    assert head(0) == (14 * 14 * 16, [3, 3])
    assert head(4) == (14 * 14 * 4, [3, 3, 1])


def test_separable_makes_every_convolution_after_the_first_block_depthwise_separable():
    def convolutions(separable: bool) -> list[str]:
        model = build_model(ModelSpec(width=8, blocks=3, convs_per_block=1, dense_units=16, separable=separable))
        return [type(layer).__name__ for layer in model.layers if "Conv" in type(layer).__name__]

    assert convolutions(False) == ["Conv2D"] * 3
    assert convolutions(True) == ["Conv2D", "SeparableConv2D", "SeparableConv2D"]


def test_block_dropout_follows_each_pooling_and_changes_nothing_at_inference():
    spec = ModelSpec(width=4, blocks=3, convs_per_block=1, dense_units=8, dropout=0.0)
    plain, dropped = build_model(spec), build_model(ModelSpec(**{**spec.to_dict(), "block_dropout": 0.25}))
    after_pooling = [
        type(later).__name__
        for layer, later in zip(dropped.layers[:-1], dropped.layers[1:], strict=True)
        if isinstance(layer, layers.MaxPooling2D)
    ]
    assert after_pooling == ["Dropout", "Dropout"]
    assert sorted(layer.rate for layer in dropped.layers if isinstance(layer, layers.Dropout)) == [0.0, 0.0, 0.25, 0.25]
    dropped.set_weights(plain.get_weights())  # the same weights: dropout adds none
    images = np.random.default_rng(5).integers(0, 256, (3, 28, 28)).astype("float32")
    np.testing.assert_allclose(np.asarray(dropped(images)), np.asarray(plain(images)), rtol=1e-6)
    training = np.asarray(plain(images, training=True))  # batch statistics; the head's dropout is 0: deterministic
    np.testing.assert_allclose(np.asarray(plain(images, training=True)), training, rtol=1e-6)
    assert not np.allclose(np.asarray(dropped(images, training=True)), training, rtol=1e-3)


def test_first_block_convs_sets_the_full_resolution_blocks_depth_alone():
    def conv_widths(first: int) -> list[int]:
        model = build_model(ModelSpec(width=4, blocks=3, convs_per_block=2, dense_units=8, first_block_convs=first))
        return [layer.filters for layer in model.layers if isinstance(layer, layers.Conv2D)]

    assert conv_widths(0) == [4, 4, 8, 8, 16, 16]
    assert conv_widths(1) == [4, 8, 8, 16, 16]
    assert conv_widths(3) == [4, 4, 4, 8, 8, 16, 16]


def test_residual_blocks_add_their_input_through_a_projection_where_the_channels_change():
    spec = ModelSpec(width=4, blocks=3, convs_per_block=2, dense_units=8)
    plain, residual = build_model(spec), build_model(ModelSpec(**{**spec.to_dict(), "residual": True}))
    assert not [layer for layer in plain.layers if isinstance(layer, layers.Add)]
    adds = [layer for layer in residual.layers if isinstance(layer, layers.Add)]
    assert len(adds) == 3
    # every block changes the channels here (1 -> 4 -> 8 -> 16): a 1x1 projection with its own batch normalization
    projections = [
        layer for layer in residual.layers if isinstance(layer, layers.Conv2D) and layer.kernel_size == (1, 1)
    ]
    assert [layer.filters for layer in projections] == [4, 8, 16]
    norms = [layer for layer in residual.layers if isinstance(layer, layers.BatchNormalization)]
    assert len(norms) == 6 + 3
    # the add comes before the block's last ReLU: the block's output is the ReLU of the sum
    for add in adds:
        [consumer] = [layer for layer in residual.layers if add.output in _inputs_of(layer)]
        assert isinstance(consumer, layers.Activation) and consumer.get_config()["activation"] == "relu"
    x = np.random.default_rng(0).uniform(0, 255, (3, 28, 28)).astype("float32")
    probabilities = ops.convert_to_numpy(residual(x))
    assert probabilities.shape == (3, 10) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_a_residual_block_keeping_its_channels_adds_its_input_unprojected():
    # width 1: the first block keeps the image's one channel (no projection), the second goes 1 -> 2 (projected)
    model = build_model(ModelSpec(width=1, blocks=2, convs_per_block=2, dense_units=8, residual=True))
    assert [layer.filters for layer in _projections(model)] == [2]
    assert len([layer for layer in model.layers if isinstance(layer, layers.Add)]) == 2


def _projections(model) -> list:
    return [layer for layer in model.layers if isinstance(layer, layers.Conv2D) and layer.kernel_size == (1, 1)]


def _inputs_of(layer) -> list:
    node_inputs = []
    for node in layer._inbound_nodes:
        node_inputs.extend(node.input_tensors)
    return node_inputs


def test_every_layer_is_configured_as_the_architecture_says():
    """Bias-free, same-padded convolutions each followed by batch normalization and a ReLU; a ReLU dense head; a
    float32 softmax under the contract's output name; raw pixels scaled to the training set's mean and deviation."""
    model = build_model(ModelSpec(width=4, blocks=2, convs_per_block=2, dense_units=8, head_channels=3))
    assert model.name == "fmnist_cnn" and model.inputs[0].name == INPUT_NAME
    assert keras.backend.standardize_dtype(model.inputs[0].dtype) == "float32"
    convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    assert len(convs) == 5 and all(not conv.use_bias for conv in convs)
    assert [conv.padding for conv in convs if conv.kernel_size == (3, 3)] == ["same"] * 4  # the head's 1x1: any
    for conv in convs:
        [norm] = _consumers(model, conv)
        assert isinstance(norm, layers.BatchNormalization)
        assert [_activation(layer) for layer in _consumers(model, norm)] == ["relu"]
    hidden, output = [layer for layer in model.layers if isinstance(layer, layers.Dense)]
    assert _activation(hidden) == "relu" and _activation(output) == "softmax"
    assert output.name == OUTPUT_NAME and output.dtype_policy.compute_dtype == "float32"
    [scaling] = [layer for layer in model.layers if isinstance(layer, layers.Rescaling)]
    raw = np.array([PIXEL_MEAN * 255, (PIXEL_MEAN + PIXEL_STD) * 255], "float32")
    assert ops.convert_to_numpy(scaling(raw)) == pytest.approx([0.0, 1.0], abs=1e-5)


def test_in_a_residual_block_the_last_normalization_and_the_projection_meet_in_the_add():
    from trainer.training.fused_batch_norm import FusedBatchNormalization

    spec = ModelSpec(width=4, blocks=2, convs_per_block=3, dense_units=8, residual=True)
    model = build_model(spec, FusedBatchNormalization)
    norms = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    assert len(norms) == 2 * 3 + 2 and all(isinstance(norm, FusedBatchNormalization) for norm in norms)
    assert all(not conv.use_bias for conv in _projections(model))
    feeds = [_consumers(model, norm)[0] for norm in norms]
    # per block: two normalizations into a ReLU, the third into the add, then the projection's into the add
    assert [type(layer).__name__ for layer in feeds] == ["Activation", "Activation", "Add", "Add"] * 2
    assert all(_activation(layer) == "relu" for layer in feeds if isinstance(layer, layers.Activation))


def test_norm_last_only_normalizes_each_blocks_last_convolution_and_gives_the_others_a_bias():
    """Batch normalization is about a third of a training step's CPU: `norm_last_only` keeps it after each block's
    last convolution only; the convolutions before it carry their own bias and go straight into a ReLU."""
    spec = ModelSpec(width=4, blocks=2, convs_per_block=3, dense_units=8, norm_last_only=True)
    model = build_model(spec)
    convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    assert [conv.use_bias for conv in convs] == [True, True, False] * 2
    for conv in convs:
        [consumer] = _consumers(model, conv)
        if conv.use_bias:
            assert _activation(consumer) == "relu"
        else:
            assert isinstance(consumer, layers.BatchNormalization)
            assert [_activation(layer) for layer in _consumers(model, consumer)] == ["relu"]
    assert len([layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]) == 2
    x = np.random.default_rng(0).uniform(0, 255, (3, 28, 28)).astype("float32")
    assert np.allclose(ops.convert_to_numpy(model(x)).sum(axis=1), 1, atol=1e-5)


def test_norm_last_only_with_residual_blocks_adds_after_the_last_normalization():
    spec = ModelSpec(width=4, blocks=2, convs_per_block=2, dense_units=8, residual=True, norm_last_only=True)
    model = build_model(spec)
    norms = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    # per block: the last convolution's normalization and the projection's, both into the add
    assert [type(_consumers(model, norm)[0]).__name__ for norm in norms] == ["Add", "Add"] * 2


def test_first_width_sets_the_full_resolution_blocks_filters_alone():
    """The first block works on 28x28 positions, four times the second's: `first_width` narrows it alone."""
    model = build_model(ModelSpec(width=6, blocks=3, convs_per_block=2, dense_units=8, first_width=4))
    convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    assert [conv.filters for conv in convs] == [4, 4, 12, 12, 24, 24]
    default = build_model(ModelSpec(width=6, blocks=2))
    assert [conv.filters for conv in default.layers if isinstance(conv, layers.Conv2D)] == [6, 6, 12, 12]


def _consumers(model, producer) -> list:
    return [layer for layer in model.layers if any(tensor is producer.output for tensor in _inputs_of(layer))]


def _activation(layer) -> str:
    return layer.get_config()["activation"]


def test_shift_matrix_moves_rows_and_fills_with_background():
    image = np.arange(28 * 28, dtype="float32").reshape(1, 28, 28)
    down = np.asarray(ops.matmul(shift_matrices(np.array([2]), 28), image))
    up = np.asarray(ops.matmul(shift_matrices(np.array([-1]), 28), image))
    np.testing.assert_array_equal(down[0, 2:], image[0, :-2])
    np.testing.assert_array_equal(down[0, :2], 0)
    np.testing.assert_array_equal(up[0, :-1], image[0, 1:])
    np.testing.assert_array_equal(up[0, -1], 0)


def test_flip_only_mirrors_and_shift_only_moves():
    rng = np.random.default_rng(1)
    images = rng.integers(1, 256, (64, 28, 28)).astype("float32")
    flipped = np.asarray(shift_and_flip(images, 0, True, keras.random.SeedGenerator(3)))
    mirrored = (flipped == images[:, :, ::-1]).all(axis=(1, 2))
    unchanged = (flipped == images).all(axis=(1, 2))
    assert (mirrored | unchanged).all() and 10 < mirrored.sum() < 54
    shifted = np.asarray(shift_and_flip(images, 2, False, keras.random.SeedGenerator(4)))
    zero_rows = (shifted == 0).all(axis=2).sum(axis=1)  # images have no zero pixels: only shifts make zeros
    assert zero_rows.max() <= 2 and (zero_rows > 0).any()


def test_augmentation_is_identity_at_inference_and_not_in_the_saved_model():
    model = build_model(SMALL)
    wrapper = training_model(model, seed=0)
    images = np.random.default_rng(2).integers(0, 256, (4, 28, 28)).astype("float32")
    np.testing.assert_allclose(np.asarray(wrapper(images, training=False)), np.asarray(model(images)), rtol=1e-6)
    assert not any(isinstance(layer, RandomShiftFlip) for layer in model.layers)
    assert wrapper.get_layer("augment").trainable_weights == []


def test_training_wrapper_keeps_jit_compile_where_keras_layers_would_drop_it():
    """Keras turns jit_compile off for models with layers that do not support XLA (RandomTranslation, ...);
    with our layer it stays on, which is what made JAX training on a GPU usable."""
    ours = training_model(build_model(SMALL))
    ours.compile(optimizer="adam", loss="categorical_crossentropy", jit_compile=True)
    assert ours.jit_compile is True
    pixels = keras.Input((28, 28))
    theirs = keras.Model(
        pixels,
        build_model(SMALL)(
            layers.Reshape((28, 28))(layers.RandomTranslation(0.1, 0.1)(layers.Reshape((28, 28, 1))(pixels)))
        ),
    )
    with pytest.warns(UserWarning):
        theirs.compile(optimizer="adam", loss="categorical_crossentropy", jit_compile=True)
    assert theirs.jit_compile is False


def test_training_code_does_not_import_tensorflow_under_jax():
    pytest.importorskip("jax", reason="jax is not installed here (the GPU machine has it)")
    code = textwrap.dedent("""
        import sys
        import trainer.training.train, trainer.training.model, trainer.training.augment
        import trainer.training.checkpoint, trainer.models.evaluate
        from trainer.training.train import PRESETS, OutputPaths, train
        import numpy as np, tempfile
        y = (np.arange(200) % 10).astype("uint8"); x = np.random.default_rng(0).integers(0, 255, (200, 28, 28))
        train(x.astype("uint8"), y, x[:50].astype("uint8"), y[:50], PRESETS["smoke"],
              OutputPaths(tempfile.mkdtemp()), fresh=True, verbose=0)
        assert "tensorflow" not in sys.modules, "tensorflow was imported"
    """)
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("TF_CONFIG", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
