"""The Fashion-MNIST classifier: a small VGG-style CNN, written against Keras 3 only (no backend calls).

Why backend-neutral: the same builder trains under TensorFlow on CPU (the trainer image) and under JAX on a GPU.
Why scaling inside the model: serving sends raw 0-255 pixels, so training and serving cannot disagree on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
from keras import layers

from contracts.dataset import IMAGE_SHAPE, NUM_CLASSES
from contracts.layout import INPUT_NAME, OUTPUT_NAME

# Training-set pixel statistics on the 0..1 scale; the Rescaling layer maps raw pixels to zero mean, unit variance.
PIXEL_MEAN, PIXEL_STD = 0.2860, 0.3530


@dataclass(frozen=True)
class ModelSpec:
    """Architecture knobs; stored in metadata.json as hyperparameters."""

    width: int = 32  # filters of the first block; each later block doubles them
    blocks: int = 3  # conv blocks; all but the last end in 2x2 max pooling
    convs_per_block: int = 2
    dense_units: int = 0  # 0 = global max pooling straight into the classifier
    dropout: float = 0.2
    pool_last: bool = False  # also pool after the last block: a dense head on a quarter of the positions
    head_channels: int = 0  # > 0: a 1x1 convolution to this many channels before the dense head (a cheaper head)
    separable: bool = False  # convolutions after the first block depthwise-separable: about 1/8 of their multiply-adds
    block_dropout: float = 0.0  # > 0: dropout after each pooled block; training only, the served graph is the same
    first_block_convs: int = 0  # > 0: this many convolutions in the first, full-resolution block (the costliest)
    residual: bool = False  # each block adds its input (1x1-projected if channels differ) before its last ReLU
    norm_last_only: bool = False  # batch normalization after each block's last convolution only, biases before it
    first_width: int = 0  # > 0: the first block's filters instead of `width` (later blocks keep width * 2**block)

    def to_dict(self) -> dict:
        return asdict(self)


def conv_bn_relu(x, filters: int, separable: bool, batch_norm, relu: bool, normalize: bool):
    """A 3x3 convolution, batch normalization (or, without `normalize`, the convolution's own bias) and a ReLU."""
    conv = layers.SeparableConv2D if separable else layers.Conv2D
    x = conv(filters, 3, padding="same", use_bias=not normalize)(x)
    if normalize:
        x = batch_norm()(x)
    return layers.Activation("relu")(x) if relu else x


def conv_block(x, filters: int, convs: int, separable: bool, batch_norm, residual: bool, norm_last_only: bool):
    """`convs` conv-BN-ReLU layers; with `residual`, the block's input is added before the last ReLU (ResNet's basic
    block: an easier path for the gradient at the cost of one add, and a 1x1 projection where the channels change).
    With `norm_last_only`, only the last convolution is normalized: batch normalization is about a third of a
    training step's CPU on TensorFlow (bench/bench_train_step.py)."""
    shortcut = x
    for index in range(convs):
        last = index == convs - 1
        x = conv_bn_relu(
            x, filters, separable, batch_norm, relu=not (residual and last), normalize=last or not norm_last_only
        )
    if not residual:
        return x
    if shortcut.shape[-1] != filters:
        shortcut = batch_norm()(layers.Conv2D(filters, 1, use_bias=False)(shortcut))
    return layers.Activation("relu")(layers.Add()([x, shortcut]))


def build_model(spec: ModelSpec = ModelSpec(), batch_norm=None) -> keras.Model:
    """Raw pixels float32 [N,28,28] in 0..255 -> class probabilities float32 [N,10]. `batch_norm`: the layer class
    (default Keras's; training may pass one with the same weights that computes faster on TensorFlow,
    fused_batch_norm.py)."""
    batch_norm = batch_norm or layers.BatchNormalization
    pixels = keras.Input(shape=IMAGE_SHAPE, dtype="float32", name=INPUT_NAME)
    x = layers.Reshape((*IMAGE_SHAPE, 1))(pixels)
    x = layers.Rescaling(1.0 / (255.0 * PIXEL_STD), offset=-PIXEL_MEAN / PIXEL_STD)(x)
    for block in range(spec.blocks):
        convs = spec.first_block_convs if block == 0 and spec.first_block_convs else spec.convs_per_block
        filters = spec.first_width if block == 0 and spec.first_width else spec.width * 2**block
        separable = spec.separable and block > 0
        x = conv_block(x, filters, convs, separable, batch_norm, spec.residual, spec.norm_last_only)
        if block < spec.blocks - 1 or spec.pool_last:
            x = layers.MaxPooling2D(2)(x)
            if spec.block_dropout:
                x = layers.Dropout(spec.block_dropout)(x)
    if spec.dense_units:
        if spec.head_channels:
            x = layers.Conv2D(spec.head_channels, 1, use_bias=False)(x)
            x = batch_norm()(x)
            x = layers.Activation("relu")(x)
        x = layers.Flatten()(x)
        x = layers.Dropout(spec.dropout)(x)
        x = layers.Dense(spec.dense_units, activation="relu")(x)
    else:
        x = layers.GlobalMaxPooling2D()(x)
    x = layers.Dropout(spec.dropout)(x)
    # float32 output even under mixed precision: softmax in bf16 loses the probability resolution export checks.
    probabilities = layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name=OUTPUT_NAME)(x)
    return keras.Model(pixels, probabilities, name="fmnist_cnn")
