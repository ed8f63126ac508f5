"""The one owner of a model directory: what train writes into it, and how the others read it back.

Why one module: train, evaluate, export and the tests all open the same directory; its file names are contracts
(contracts.layout.ModelFiles, because the service reads three of them), and saving, loading and predicting are
defined here once. `training.json` is written last, so a directory that has it is complete.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import storage
from contracts.layout import INPUT_NAME, OUTPUT_NAME, ModelFiles
from trainer.errors import ModelDirError


def save(model: Any, model_dir: str, info: dict[str, Any]) -> None:
    """model.keras + training.json into a local dir or gs:// prefix (training.json last: the dir is complete)."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / ModelFiles.KERAS
        model.save(local)
        storage.upload_file(local, storage.join(model_dir, ModelFiles.KERAS))
    write_json(model_dir, ModelFiles.TRAINING, info, indent=2, sort_keys=True)


def write_json(model_dir: str, name: str, data: Any, **dump_options: Any) -> str:
    uri = storage.join(model_dir, name)
    storage.write_text(uri, json.dumps(data, **dump_options), content_type="application/json")
    return uri


def read_training_info(model_dir: str) -> dict[str, Any]:
    """training.json: run id, config, dataset, history; ModelDirError if the directory is not one train wrote."""
    uri = storage.join(model_dir, ModelFiles.TRAINING)
    try:
        info: dict[str, Any] = json.loads(storage.read_text(uri))
    except storage.NotFound:
        raise ModelDirError(
            f"{uri} not found: {model_dir} is not a directory `python -m trainer train` wrote "
            "(it prints the model directory at the end)"
        ) from None
    return info


def file_digests(model_dir: str) -> dict[str, str]:
    """SHA-256 of every file of the directory, by name relative to it: what export records and loaders check."""
    prefix = str(model_dir).rstrip("/")
    return {
        uri[len(prefix) :].lstrip("/"): hashlib.sha256(storage.read_bytes(uri)).hexdigest()
        for uri in storage.list_uris(prefix)
    }


def verify_digests(model_dir: str, expected: dict[str, str]) -> None:
    """ModelDirError naming the first file whose bytes are not the ones recorded (or that is missing)."""
    found = file_digests(model_dir)
    for name, digest in sorted(expected.items()):
        if name not in found:
            raise ModelDirError(f"{storage.join(model_dir, name)} is missing; its record expects sha256 {digest}")
        if found[name] != digest:
            raise ModelDirError(
                f"{storage.join(model_dir, name)} was changed or damaged: sha256 {found[name]}, recorded {digest}. "
                "Nothing was loaded; restore the file or register the model again"
            )


def load_keras_model(model_dir: str) -> Any:
    import keras

    with tempfile.TemporaryDirectory() as tmp:
        local = storage.download_file(storage.join(model_dir, ModelFiles.KERAS), Path(tmp) / ModelFiles.KERAS)
        return keras.saving.load_model(local)


def onnx_session(path: Path, *, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session; threads=1 is how each service worker runs (None: ONNX Runtime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = options.inter_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_probabilities(
    path: Path, images: np.ndarray, batch_size: int = 1000, *, threads: int | None = None
) -> np.ndarray:
    """Class probabilities from an ONNX file (threads=1: how each service worker runs it)."""
    session = onnx_session(path, threads=threads)
    images = np.asarray(images, dtype=np.float32)
    return np.concatenate(
        [
            session.run([OUTPUT_NAME], {INPUT_NAME: images[i : i + batch_size]})[0]
            for i in range(0, len(images), batch_size)
        ]
    )


def predict_probabilities(model: Any, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Class probabilities [N,10] for raw pixel images; batches of 1000 divide the 10k test set (one XLA shape)."""
    return np.asarray(model.predict(np.asarray(images, dtype="float32"), batch_size=batch_size, verbose=0))
