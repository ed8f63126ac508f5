"""The TensorFlow training batches: every row once per epoch, a new order each epoch, deterministic per seed, and no
autotuning thread to join when an epoch's iterator is dropped (input_pipeline.py says why each matters)."""

import numpy as np
import pytest

from trainer.training.input_pipeline import tensorflow_batches

tf = pytest.importorskip("tensorflow")


def rows(count: int = 10):
    x = np.arange(count * 4, dtype="float32").reshape(count, 2, 2)  # row i holds 4i .. 4i+3
    y = np.eye(count, dtype="float32")  # row i's label is one-hot i
    return x, y


def epoch(dataset) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(images.numpy(), labels.numpy()) for images, labels in dataset]


def order(batches) -> list[int]:
    return [int(row) for _, labels in batches for row in labels.argmax(axis=1)]


def test_every_row_once_per_epoch_with_its_own_label_and_a_short_last_batch():
    x, y = rows()
    batches = epoch(tensorflow_batches(x, y, 4, shuffle_seed=7))
    assert [len(images) for images, _ in batches] == [4, 4, 2]
    assert sorted(order(batches)) == list(range(10))
    for images, labels in batches:
        np.testing.assert_array_equal(images, x[labels.argmax(axis=1)])


def test_each_epoch_draws_a_new_order_and_a_seed_repeats_the_whole_sequence():
    x, y = rows(64)
    dataset = tensorflow_batches(x, y, 16, shuffle_seed=3)
    first, second = order(epoch(dataset)), order(epoch(dataset))
    assert first != second and first != list(range(64))  # Keras 3.15's own pipeline repeats one order per seed
    again = tensorflow_batches(x, y, 16, shuffle_seed=3)
    assert [order(epoch(again)), order(epoch(again))] == [first, second]
    assert order(epoch(tensorflow_batches(x, y, 16, shuffle_seed=4))) != first


def test_without_a_seed_the_rows_keep_their_order():
    x, y = rows()
    assert order(epoch(tensorflow_batches(x, y, 3, shuffle_seed=None))) == list(range(10))


def test_autotuning_is_off_so_no_thread_outlives_an_epoch():
    x, y = rows()
    options = tensorflow_batches(x, y, 4, shuffle_seed=1).options()
    assert options.autotune.enabled is False
    assert options.experimental_optimization.apply_default_optimizations is False
    assert options.experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA
