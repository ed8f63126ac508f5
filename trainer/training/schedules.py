"""The learning-rate schedules a run can follow: a warm-up from a tenth of the peak, then a decay to zero.

Why two: Keras's cosine decay has been every preset's; a linear decay to zero is the one budget-limited training
studies found better for short schedules (Li, Yumer and Ramanan, "Budgeted Training", ICLR 2020), and the full
preset trains for only 8 epochs. Written with keras.ops only: the same schedule on TensorFlow and on JAX.
"""

from __future__ import annotations

import keras
from keras import ops

from trainer.errors import CommandError

DECAYS = ("cosine", "linear")


@keras.saving.register_keras_serializable(package="fmnist")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear from peak/10 to `peak` over `warmup_steps`, then linear to 0 at `total_steps` (and 0 after it)."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak, self.warmup_steps, self.total_steps = float(peak), int(warmup_steps), int(total_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        start = self.peak / 10
        warming = start + (self.peak - start) * step / max(self.warmup_steps, 1)
        remaining = ops.maximum(float(self.total_steps) - step, 0.0) / max(self.total_steps - self.warmup_steps, 1)
        return ops.where(step < self.warmup_steps, warming, self.peak * remaining)

    def get_config(self) -> dict:
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


def learning_rate_schedule(decay: str, peak: float, total_steps: int, warmup_fraction: float):
    """Warm-up over `warmup_fraction` of the steps, then `decay` ("cosine" or "linear") to zero."""
    total = max(total_steps, 1)
    warmup = int(total * warmup_fraction)
    if decay == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=peak / 10,
            decay_steps=max(total - warmup, 1),
            alpha=0.0,
            warmup_target=peak,
            warmup_steps=warmup,
        )
    if decay == "linear":
        return WarmupLinearDecay(peak, warmup, total)
    raise CommandError(f"decay {decay!r}: expected one of {', '.join(DECAYS)}")
