"""What the lifecycle's notebook support and batch scoring call in the trainer, besides the dataset and registry
APIs: one small public surface instead of reaching into the trainer's layers (import-linter holds them to it).

Why functions that import when called: a notebook that only evaluates, or a batch run that only reads IDX files,
must not pay TensorFlow's import (training) or the Vertex AI SDK's (batch prediction).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from trainer.data.idx import IdxError, gunzip, parse_idx
from trainer.errors import CommandError
from trainer.models.evaluate import Evaluation, classification_report

if TYPE_CHECKING:
    from trainer.cloud.batch_prediction import BatchPredictionRequest
    from trainer.data.dataset import Dataset

__all__ = [
    "CommandError",
    "Evaluation",
    "IdxError",
    "batch_prediction_request",
    "classification_report",
    "decode_idx_images",
    "index_key_environment",
    "onnx_probabilities",
    "send_batch_prediction",
    "train_preset",
]


def decode_idx_images(data: bytes, name: str) -> np.ndarray:
    """uint8 [N, 28, 28] from an IDX image file's bytes (gzipped or not); IdxError naming `name` if it is not one."""
    raw = gunzip(data, name) if data[:2] == b"\x1f\x8b" else data
    return parse_idx(raw, name, 3)


def train_preset(settings: Any, dataset: Dataset, preset: str, *, fresh: bool = True, verbose: int = 2) -> Any:
    """Train a preset in-process into a new run under the dev bucket; the TrainResult."""
    from trainer.training.train import PRESETS, OutputPaths, train

    return train(
        dataset.x_train,
        dataset.y_train,
        dataset.x_test,
        dataset.y_test,
        PRESETS[preset],
        OutputPaths(root=settings.dev_bucket),
        dataset={"version": dataset.version, "hash": dataset.hash},
        fresh=fresh,
        verbose=verbose,
    )


def onnx_probabilities(path: Any, images: np.ndarray) -> np.ndarray:
    """Class probabilities of an ONNX artifact (what the service runs) on uint8 images."""
    from trainer.models.model_dir import onnx_probabilities as probabilities

    return probabilities(path, images)


def batch_prediction_request(settings: Any, source: str, model: str, output: str) -> BatchPredictionRequest:
    """The Vertex AI batch prediction job for `source` on the registry's `model` (reads the buckets, sends nothing)."""
    from trainer.cloud import batch_prediction

    return batch_prediction.build_for_source(settings, source, model, output)


def send_batch_prediction(settings: Any, request: BatchPredictionRequest) -> Any:
    from trainer.cloud import batch_prediction

    return batch_prediction.send(settings, request)


def index_key_environment(settings: Any) -> dict[str, str]:
    """INDEX_PUBLIC_KEY for a service started here on this environment's registry, so it checks signatures."""
    from trainer.models.index_signing import service_environment

    return service_environment(settings)
