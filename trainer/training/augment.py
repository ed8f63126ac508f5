"""Random shifts and horizontal flips written with `keras.ops`, so the compiled training step stays jit-compiled.

Why not Keras's RandomTranslation/RandomFlip: on JAX they make Keras drop `jit_compile`, and then not one epoch
finished in 5 minutes on an H200 (measured before this project started). The layer here is the identity at inference,
and it is only ever placed in the training wrapper (`training_model`), never in the saved or exported model.
"""

from __future__ import annotations

import keras
from keras import ops


def shift_matrices(shifts, size: int):
    """One [size,size] 0/1 matrix per shift d with M[i, j] = 1 iff j == i - d: M @ image moves rows down by d."""
    index = ops.arange(size)
    source = index[None, :, None] - ops.cast(shifts, "int32")[:, None, None]
    return ops.cast(ops.equal(index[None, None, :], source), "float32")


def shift_and_flip(images, max_shift: int, flip: bool, seed):
    """Per-image random shift by up to max_shift pixels (zero fill = background) and random left-right flip."""
    batch, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
    images = ops.cast(images, "float32")
    if flip:
        flipped = keras.random.uniform((batch,), seed=seed) < 0.5
        images = ops.where(flipped[:, None, None], ops.flip(images, axis=2), images)
    if max_shift:
        dy = keras.random.randint((batch,), -max_shift, max_shift + 1, seed=seed)
        dx = keras.random.randint((batch,), -max_shift, max_shift + 1, seed=seed)
        rows, cols = shift_matrices(dy, height), shift_matrices(dx, width)
        images = ops.matmul(ops.matmul(rows, images), ops.transpose(cols, (0, 2, 1)))
    return images


@keras.saving.register_keras_serializable(package="fmnist")
class RandomShiftFlip(keras.layers.Layer):
    """Augments raw [N,28,28] pixel batches during training; the identity otherwise."""

    def __init__(self, max_shift: int = 2, flip: bool = True, seed: int | None = None, **kwargs):
        kwargs.setdefault("dtype", "float32")  # integer pixel shifts stay exact whatever the mixed-precision policy
        super().__init__(**kwargs)
        self.max_shift, self.flip, self.seed = max_shift, flip, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        return shift_and_flip(images, self.max_shift, self.flip, self.seed_generator)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_shift": self.max_shift, "flip": self.flip, "seed": self.seed}


def training_model(model: keras.Model, max_shift: int = 2, flip: bool = True, seed: int | None = None) -> keras.Model:
    """Wrap `model` with augmentation in front; the wrapper shares the model's layers and weights."""
    pixels = keras.Input(shape=model.input_shape[1:], dtype="float32", name=model.inputs[0].name)
    augmented = RandomShiftFlip(max_shift=max_shift, flip=flip, seed=seed, name="augment")(pixels)
    return keras.Model(pixels, model(augmented), name=f"{model.name}_train")
