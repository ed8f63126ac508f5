"""The two Keras patches multi-worker training needs (issue 27's keras-patches group), on the failures they fix.

In-process, on a real MultiWorkerMirroredStrategy of this one process, told that it is one worker of several (the
strategy's own `_in_multi_worker_mode`, which is what Keras asks): Keras 3.15 then reduces the scalar loss with axis
0 and fit() fails exactly as on a Vertex AI job with two replicas. The real two-process training is
tests/trainer/test_distributed.py (a subprocess per worker: slow, and out of mutmut's sight).
"""

from __future__ import annotations

import tomllib

import keras
import numpy as np
import pytest

from settings import REPO_ROOT

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.distribute is TensorFlow's")

X = np.random.default_rng(0).random((16, 4)).astype("float32")
Y = (X.sum(1) > 2).astype("int32")


@pytest.fixture(scope="module")
def strategy():
    import tensorflow as tf

    return tf.distribute.MultiWorkerMirroredStrategy()


@pytest.fixture
def several_workers(strategy, monkeypatch):
    """The strategy as one worker of several; Keras's reduction as it was before the test (the patch is global)."""
    from keras.src.backend.tensorflow import trainer as tf_trainer

    monkeypatch.setattr(tf_trainer, "reduce_per_replica", tf_trainer.reduce_per_replica)
    monkeypatch.setattr(strategy.extended, "_in_multi_worker_mode", lambda: True)
    return strategy


def compiled_model(strategy):
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, "softmax")])
        model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_the_version_check_names_this_file_and_the_fix():
    from trainer.training.keras_patches import PATCHED_FOR, check_keras_version

    assert PATCHED_FOR == keras.__version__ == "3.15.1"  # the import itself passed the check
    check_keras_version("3.15.1")
    with pytest.raises(ImportError) as caught:
        check_keras_version("3.16.0")
    assert str(caught.value) == (
        "trainer/training/keras_patches.py patches private internals of Keras 3.15.1, but Keras 3.16.0 is installed: "
        "re-check both patches in that file against the new Keras (or install keras==3.15.1), then update "
        "PATCHED_FOR and the pin in pyproject.toml"
    )
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert f"keras=={PATCHED_FOR}" in pyproject["project"]["optional-dependencies"]["trainer"]


@pytest.mark.slow  # two compilations of the training step (~6 s quiet)
def test_fit_fails_on_keras_own_reduction_and_trains_with_the_patch(several_workers):
    from trainer.training.keras_patches import patch_multi_worker_metric_reduction

    with pytest.raises(ValueError, match="Invalid reduction dimension 0 for input with 0 dimensions"):
        compiled_model(several_workers).fit(X, Y, batch_size=8, epochs=1, verbose=0)

    patch_multi_worker_metric_reduction()
    model = compiled_model(several_workers)
    history = model.fit(X, Y, batch_size=8, epochs=2, verbose=0).history
    assert sorted(history) == ["accuracy", "loss"] and all(len(v) == 2 for v in history.values())
    assert all(np.isfinite(v).all() for v in history.values())


def per_replica(value):
    import tensorflow as tf
    from tensorflow.python.distribute.values import PerReplica

    return PerReplica((tf.constant(value, dtype=tf.float32),))


def test_scalars_are_averaged_without_an_axis_and_the_rest_as_keras_does(several_workers, monkeypatch):
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer

    from trainer.training.keras_patches import patch_multi_worker_metric_reduction

    patch_multi_worker_metric_reduction()
    reduce = tf_trainer.reduce_per_replica
    step = tf.constant(5)
    for reduction in ("auto", "mean"):
        found = reduce(
            {"loss": per_replica(2.5), "sizes": per_replica([1.0, 3.0]), "step": step}, several_workers, reduction
        )
        assert found["step"] is step  # not a replica's value: as it is
        assert found["loss"].shape.rank == 0 and float(found["loss"]) == 2.5
        assert found["sizes"].shape.rank == 0 and float(found["sizes"]) == 2.0  # Keras's mean over axis 0
    for reduction in ("first", "concat"):  # Keras's own: the batch as it is
        assert reduce(per_replica([1.0, 3.0]), several_workers, reduction).numpy().tolist() == [1.0, 3.0]

    monkeypatch.setattr(several_workers.extended, "_in_multi_worker_mode", lambda: False)  # one worker: Keras's own
    assert reduce(per_replica([1.0, 3.0]), several_workers, "auto").numpy().tolist() == [1.0, 3.0]


def test_patching_twice_wraps_keras_once(several_workers):
    from keras.src.backend.tensorflow import trainer as tf_trainer

    from trainer.training.keras_patches import patch_multi_worker_metric_reduction

    original = tf_trainer.reduce_per_replica
    patch_multi_worker_metric_reduction()
    patched = tf_trainer.reduce_per_replica
    patch_multi_worker_metric_reduction()
    assert patched is not original and tf_trainer.reduce_per_replica is patched


def test_the_model_is_built_from_the_local_batch_not_the_distributed_one(strategy):
    from trainer.training.keras_patches import build_from_local_batch

    class DistributedBatches:
        """fit()'s epoch iterator: reducing its (x, y) batch is what MultiWorkerMirroredStrategy refuses."""

        def __iter__(self):
            raise AssertionError("the distributed batch was read")

    model = compiled_model(strategy)
    assert not model.optimizer.built and not model._compile_metrics.built
    build_from_local_batch(model, (X[:8], Y[:8]))
    model._maybe_symbolic_build(iterator=DistributedBatches())  # as fit() calls it
    assert model.optimizer.built and model._compile_metrics.built
    assert [v.name for v in model._compile_metrics.variables] == ["total", "count"]
