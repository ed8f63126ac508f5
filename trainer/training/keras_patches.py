"""Two patches of private Keras internals that multi-worker training needs, checked against the Keras they fit.

Why a version check at import: both reach into `keras.src` (keras-team/keras#20585), which changes without notice
between releases; pyproject.toml pins Keras to PATCHED_FOR exactly, and a different Keras stops here with the
name of this file instead of failing somewhere inside a multi-worker job. Imported only when TF_CONFIG names
several workers: single-process training uses no private API.
"""

from __future__ import annotations

from typing import Any

import keras

PATCHED_FOR = "3.15.1"


def check_keras_version(installed: str = keras.__version__) -> None:
    if installed != PATCHED_FOR:
        raise ImportError(
            f"trainer/training/keras_patches.py patches private internals of Keras {PATCHED_FOR}, but Keras "
            f"{installed} is installed: re-check both patches in that file against the new Keras (or install "
            f"keras=={PATCHED_FOR}), then update PATCHED_FOR and the pin in pyproject.toml"
        )


check_keras_version()


def build_from_local_batch(model: Any, example_batch: Any) -> None:
    """Build a compiled model's metrics and optimizer from a local example batch before fit().

    Keras 3.15's fit() builds them from the first *distributed* batch through strategy.reduce, which
    MultiWorkerMirroredStrategy rejects for an (x, y) tuple (keras-team/keras#20585).
    """
    build = model._maybe_symbolic_build
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: build(data_batch=example_batch)


def patch_multi_worker_metric_reduction() -> None:
    """Keras 3.15 averages each step's metrics across workers with `strategy.reduce(..., axis=0)`, which fails for
    the scalar loss and accuracy under MultiWorkerMirroredStrategy (keras-team/keras#20585). Reduce scalars with
    axis=None instead; everything else keeps Keras's own reduction."""
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica
    if getattr(original, "_fmnist_patched", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not tf_trainer._collective_all_reduce_multi_worker(strategy):
            return original(values, strategy, reduction)

        def mean(value):
            if not tf_trainer._is_per_replica_instance(value):
                return value
            rank = strategy.experimental_local_results(value)[0].shape.rank
            return strategy.reduce("MEAN", value, axis=None if rank == 0 else 0)

        return tree.map_structure(mean, values)

    reduce_per_replica._fmnist_patched = True
    tf_trainer.reduce_per_replica = reduce_per_replica
