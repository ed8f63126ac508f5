"""The training and validation batches on TensorFlow: Keras's own in-memory pipeline, without its two faults there.

Why not hand the arrays to `fit()` as on JAX: Keras 3.15 turns them into a tf.data pipeline that
- shuffles every epoch in the *same* order once a global seed is set (its permutation is a stateful random op
  inside a dataset function, and each epoch's new iterator restarts it from the same seed), and
- is autotuned, and dropping an autotuned iterator joins tf.data's autotuning thread, which TensorFlow 2.21 does not
  wake: the join waits out the thread's sleep, about 30-45 s with both cores idle, at 2-5 of the full preset's 6
  epoch boundaries (py-spy and gdb: `RootDataset::Iterator::~Iterator` waiting on `Model::OptimizeLoop`'s timed wait).
Here the indices are shuffled by a seeded `shuffle` that draws a new order each epoch (deterministic per seed), each
batch is gathered from the arrays held once (as Keras does), and autotuning is off: nothing in this pipeline needs
it (one gather per batch), and no thread is left to join.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def tensorflow_batches(x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle_seed: int | None) -> Any:
    """A `tf.data.Dataset` of (images, one-hot labels) batches, the last one short; reshuffled every epoch when
    `shuffle_seed` is given, in the arrays' order otherwise (validation)."""
    import tensorflow as tf

    indices = tf.data.Dataset.range(len(x))
    if shuffle_seed is not None:
        indices = indices.shuffle(len(x), seed=shuffle_seed)  # a new order per iterator: tf.data's default
    arrays = tf.data.Dataset.from_tensors((tf.convert_to_tensor(x), tf.convert_to_tensor(y))).repeat()
    batches = tf.data.Dataset.zip((indices.batch(batch_size), arrays)).map(
        lambda rows, data: (tf.gather(data[0], rows), tf.gather(data[1], rows))
    )
    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_optimization.apply_default_optimizations = False  # as Keras: no graph rewrite to pay for
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA  # as Keras
    return batches.with_options(options).prefetch(2)
