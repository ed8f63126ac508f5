"""Multi-worker wiring from TF_CONFIG: with keras_patches, the only modules of the trainer touching `tensorflow`.

Why isolated: the model and the training step are backend-neutral Keras; only data-parallel training across
machines (a Vertex AI custom job with several replicas) needs tf.distribute, and importing TensorFlow must not
happen at all when KERAS_BACKEND=jax.
"""

from __future__ import annotations

import json
import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from trainer.errors import CommandError


@dataclass(frozen=True)
class ClusterRole:
    """This process's place in the cluster. Only the chief writes the model, checkpoints and run records."""

    task_type: str = "chief"
    task_index: int = 0
    num_workers: int = 1

    @property
    def is_chief(self) -> bool:
        return self.task_type == "chief"


def role_from_tf_config(raw: str | None) -> ClusterRole:
    """Parse TF_CONFIG. 'master' (older AI Platform) counts as chief; without either, worker 0 is the chief."""
    if not raw:
        return ClusterRole()
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        task_type, task_index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as exc:
        example = '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}'
        raise CommandError(f"TF_CONFIG is not valid ({exc!r}); expected {example}") from None
    workers = sum(len(cluster.get(kind, [])) for kind in ("chief", "master", "worker"))
    if task_type == "master" or (task_type == "worker" and not {"chief", "master"} & set(cluster) and task_index == 0):
        task_type = "chief"
    return ClusterRole(task_type=task_type, task_index=task_index, num_workers=max(workers, 1))


@dataclass
class Distribution:
    role: ClusterRole
    strategy: Any = None  # a tf.distribute strategy, or None for one process

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else nullcontext()

    def prepare(self, model, example_batch) -> None:
        """Build a compiled model's metrics and optimizer from a local example batch before fit().

        Keras 3.15's fit() builds them from the first *distributed* batch through strategy.reduce, which
        MultiWorkerMirroredStrategy rejects for an (x, y) tuple (keras-team/keras#20585).
        """
        if self.strategy is None:
            return
        from trainer.training.keras_patches import build_from_local_batch

        build_from_local_batch(model, example_batch)


def from_environment(environ=None) -> Distribution:
    """One process unless TF_CONFIG names several workers; then MultiWorkerMirroredStrategy (TensorFlow only).

    Must run before anything else starts the TensorFlow runtime.
    """
    environ = os.environ if environ is None else environ
    role = role_from_tf_config(environ.get("TF_CONFIG"))
    if role.num_workers <= 1:
        return Distribution(role)
    import keras

    if keras.backend.backend() != "tensorflow":
        raise CommandError(
            f"TF_CONFIG asks for {role.num_workers} workers, which needs KERAS_BACKEND=tensorflow "
            f"(now {keras.backend.backend()}); unset TF_CONFIG to train in one process"
        )
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    from trainer.training.keras_patches import patch_multi_worker_metric_reduction

    patch_multi_worker_metric_reduction()
    return Distribution(role, strategy)
