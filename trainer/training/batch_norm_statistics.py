"""Batch normalization statistics measured again for the weights a run ends with.

Why: weight averaging (`ema_momentum`) writes averaged weights into the model after training, but the moving means
and variances of batch normalization are not weights: they still describe the activations of the last weights.
With decoupled weight decay the weights shrink during training, so the average (older, larger weights) feeds
batch normalization activations on another scale than its statistics: the full preset with SGD and
`ema_momentum` 0.999 scored 66.94 % (README "Eleventh session"). Measuring the statistics again over training
batches with the final weights is the usual cure (stochastic weight averaging's `bn_update`, "precise BN").

Backend-neutral: the model is called in training mode, which is how Keras's (and our fused) layer update their
moving statistics; each layer's momentum is set so that the moving value becomes the batches' mean, weighted by
their images.
"""

from __future__ import annotations

import numpy as np
from keras import layers

RECALIBRATION_IMAGES = 10_000  # enough for stable means and variances; a tenth of an epoch's forward passes
RECALIBRATION_BATCH = 500


def batch_norm_layers(model) -> list:
    return [layer for layer in model._flatten_layers() if isinstance(layer, layers.BatchNormalization)]


def recalibrate(model, images: np.ndarray, *, limit: int = RECALIBRATION_IMAGES, batch: int = RECALIBRATION_BATCH):
    """Replace every batch normalization layer's moving mean and variance by their mean over batches of `images`
    (the first `limit`, in order: the caller passes training images), computed with the model's current weights and
    weighted by each batch's size.
    Returns how many batches were measured. The layers' own momentum is restored afterwards."""
    norms = batch_norm_layers(model)
    if not norms:
        return 0
    images = images[:limit]
    momenta = [layer.momentum for layer in norms]
    measured = seen = 0
    try:
        for start in range(0, len(images), batch):
            part = images[start : start + batch]
            # momentum seen/(seen+n): the moving value becomes the mean of the batches' values, weighted by their images
            for layer in norms:
                layer.momentum = seen / (seen + len(part))
            model(part, training=True)
            measured, seen = measured + 1, seen + len(part)
    finally:
        for layer, momentum in zip(norms, momenta, strict=True):
            layer.momentum = momentum
    return measured
