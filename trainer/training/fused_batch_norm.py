"""BatchNormalization whose training step on TensorFlow is one fused op: the presets' CPU time (issue 26).

Why: Keras 3 composes batch normalization from about ten reductions and elementwise ops (tf.nn.moments, then
tf.nn.batch_normalization) and differentiates through each; TensorFlow's FusedBatchNormV3 reads the activations
once forward and once backward (oneDNN on CPU, cuDNN on GPU). On a small CNN at 28x28 the normalization is memory
work of the same order as the convolutions. Same weights, same moving statistics (the batch variance differs by
Bessel's factor n/(n-1), n = batch x height x width: 1 + 1e-5 for the demo), so only training uses it: the model
that is saved and exported is rebuilt with plain BatchNormalization and the trained weights (train.float32_copy).
Mixed precision (the full preset's mixed_bfloat16): FusedBatchNormV3 takes bfloat16 or half activations with float32
scale, offset and statistics and computes in float32, as Keras's layer does after upcasting, so bf16 training uses
it too and its outputs are bf16 as Keras's are. Anywhere else (JAX, inference, masks, renorm, float64 inputs, not 4-D
channels-last) it is Keras's own layer.
"""

from __future__ import annotations

import keras
from keras import layers

# x dtypes of TensorFlow's FusedBatchNormV3 (its scale, offset and statistics are float32 for all of them)
FUSED_INPUT_DTYPES = ("float32", "bfloat16", "float16")


class FusedBatchNormalization(layers.BatchNormalization):
    """keras.layers.BatchNormalization, computed by tf.compat.v1.nn.fused_batch_norm while training on TensorFlow."""

    def _fusable(self, inputs, training, mask) -> bool:
        return bool(
            training
            and self.trainable
            and mask is None
            and not self.renorm
            and self.scale
            and self.center
            and keras.backend.backend() == "tensorflow"
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and keras.backend.standardize_dtype(inputs.dtype) in FUSED_INPUT_DTYPES
            and keras.backend.standardize_dtype(self.gamma.dtype) == "float32"
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, self.gamma.value, self.beta.value, epsilon=self.epsilon, data_format="NHWC", is_training=True
        )
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return outputs  # the inputs' dtype, which Keras cast to the compute dtype: bf16 in, bf16 out, as Keras's
