"""`python -m trainer export`: the serving artifact (ONNX), metadata.json, a verification, and registration.

Why verify before registering: the service runs ONNX Runtime, not Keras. If the exported graph disagrees with the
Keras model on any test image, the metrics in the registry would describe a model nobody serves; such an export
is refused (argmax must agree on 100% of the test set, probabilities within registry.max_probability_diff).
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import storage
from contracts.dataset import CLASS_NAMES, IMAGE_SHAPE
from contracts.features import compute_features_chunked, feature_baseline
from contracts.layout import INPUT_NAME, OUTPUT_NAME, ModelFiles
from trainer.clock import utc_now
from trainer.errors import CommandError
from trainer.models import quantize, registry
from trainer.models.evaluate import evaluate_model_dir
from trainer.models.model_dir import (
    file_digests,
    onnx_probabilities,
    predict_probabilities,
    read_training_info,
    write_json,
)

ONNX_FILE, METADATA_FILE, SAMPLES_FILE = ModelFiles.ONNX, ModelFiles.METADATA, ModelFiles.SAMPLES


@dataclass
class Verification:
    images: int
    argmax_agreement: float
    max_probability_diff: float
    limit: float

    @property
    def passed(self) -> bool:
        return self.argmax_agreement == 1.0 and self.max_probability_diff <= self.limit

    def to_dict(self) -> dict:
        return {
            "images": self.images,
            "argmax_agreement": self.argmax_agreement,
            "max_probability_diff": self.max_probability_diff,
            "limit": self.limit,
            "passed": self.passed,
        }


def export_onnx(model, path: Path) -> Path:
    """Keras -> ONNX with input 'pixels' float32 [N,28,28] and output 'probabilities' [N,10]."""
    import keras
    import onnx

    signature = [keras.InputSpec(shape=(None, *IMAGE_SHAPE), dtype="float32", name=INPUT_NAME)]
    model.export(str(path), format="onnx", verbose=False, input_signature=signature)
    graph = onnx.load(str(path))
    old = graph.graph.output[0].name
    for node in graph.graph.node:
        node.output[:] = [OUTPUT_NAME if name == old else name for name in node.output]
    graph.graph.output[0].name = OUTPUT_NAME
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))
    return path


def verify(keras_probabilities: np.ndarray, serving_probabilities: np.ndarray, limit: float) -> Verification:
    agreement = float(np.mean(keras_probabilities.argmax(axis=1) == serving_probabilities.argmax(axis=1)))
    diff = float(np.max(np.abs(keras_probabilities - serving_probabilities)))
    return Verification(len(keras_probabilities), agreement, diff, limit)


def build_metadata(
    *,
    model_version: str,
    created_at: str,
    training: dict,
    metrics: dict,
    feature_baseline: dict,
    source: str = "custom",
    quantization: dict | None = None,
) -> dict:
    """metadata.json exactly as docs/CONTRACTS.md ("Model version directory") lists it."""
    return {
        "model_version": model_version,
        "created_at": created_at,
        "code_version": training.get("code_version", "unknown"),
        "framework": {"keras": training["keras"], "backend": training["backend"]},
        "class_names": list(CLASS_NAMES),
        "input": {"name": INPUT_NAME, "shape": [None, *IMAGE_SHAPE], "dtype": "float32", "range": [0, 255]},
        "serving_artifact": ONNX_FILE,
        # the int8 quantization beside it, when it passed its gate (trainer/models/quantize.py); else None
        "int8_artifact": ModelFiles.ONNX_INT8 if quantization and quantization["passed"] else None,
        "quantization": quantization,
        "metrics": {k: metrics[k] for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1")},
        "dataset": {"version": training["dataset"]["version"], "hash": training["dataset"]["hash"]},
        "hyperparameters": training["config"],
        "source": source,
        "feature_baseline": feature_baseline,
    }


def training_feature_baseline(model, x_train: np.ndarray) -> dict:
    """Feature bins from the training images; class shares from the model's predictions on them, because the
    service compares its predicted-class distribution with this."""
    predicted = predict_probabilities(model, x_train).argmax(axis=1)
    return feature_baseline(compute_features_chunked(x_train), predicted)


def sample_images(images: np.ndarray, labels: np.ndarray, per_class: int = 10) -> bytes:
    """samples.npz: a few test images per class with their labels, so the service's page can offer a random real
    image where it has no access to the data set (Cloud Run)."""
    picked = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)])
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images[picked].astype(np.uint8), labels=labels[picked].astype(np.uint8))
    return buffer.getvalue()


def export_model_dir(settings, model_dir: str, *, register: bool = True) -> dict:
    """Evaluate, export, verify, write metadata; register as candidate. Returns a summary dict."""
    training = read_training_info(model_dir)
    already = _registered_version(settings, training["run_id"]) if register else None
    if already:
        return {"model_version": already, "registered": False, "already_registered": True}
    evaluated = evaluate_model_dir(settings, model_dir, training["dataset"]["version"])
    data, model, evaluation = evaluated.data, evaluated.model, evaluated.evaluation
    keras_probabilities = evaluated.probabilities

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, Path(tmp) / ONNX_FILE)
        serving_probabilities = onnx_probabilities(onnx_path, data.x_test)
        check = verify(keras_probabilities, serving_probabilities, settings.registry.max_probability_diff)
        if not check.passed:
            raise CommandError(
                f"refusing to register: the ONNX export disagrees with the Keras model on the test set "
                f"(argmax agreement {check.argmax_agreement:.4%}, need 100%; max probability difference "
                f"{check.max_probability_diff:.2e}, limit {check.limit:.0e}). Nothing was registered; "
                f"check the model for layers ONNX converts inexactly"
            )
        storage.upload_file(onnx_path, storage.join(model_dir, ONNX_FILE))
        int8_path = Path(tmp) / ModelFiles.ONNX_INT8
        int8 = quantize.quantize_and_check(
            onnx_path, int8_path, data.x_train, data.x_test, data.y_test, serving_probabilities
        )
        quantization = int8.to_dict()
        if int8.passed:
            storage.upload_file(int8_path, storage.join(model_dir, ModelFiles.ONNX_INT8))
            # which file a service with MODEL_ARTIFACT=auto serves on this CPU (contracts/artifact_speed.py)
            quantization["speed"] = quantize.compare_speed(onnx_path, int8_path, data.x_test).to_dict()
        else:  # never leave an earlier export's int8 file beside a float model it was not checked against
            storage.delete(storage.join(model_dir, ModelFiles.ONNX_INT8))

    storage.write_bytes(storage.join(model_dir, SAMPLES_FILE), sample_images(data.x_test, data.y_test))
    version = registry.new_version_id()
    metadata = build_metadata(
        model_version=version,
        created_at=utc_now(),
        training=training,
        metrics=evaluation.metrics,
        feature_baseline=training_feature_baseline(model, data.x_train),
        quantization=quantization,
    )
    # every other file, as written: loaders verify what they read against it
    metadata["files"] = {name: digest for name, digest in file_digests(model_dir).items() if name != METADATA_FILE}
    write_json(model_dir, METADATA_FILE, metadata, indent=2)
    files = file_digests(model_dir)  # now with metadata.json: the registry record checks that too
    summary = {
        "model_version": version,
        "metrics": evaluation.metrics,
        "verification": check.to_dict(),
        "quantization": quantization,
        "model_dir": model_dir,
        "registered": False,
        "evaluation": ModelFiles.EVALUATION,
    }
    if register:
        try:
            registry.register_version(
                settings,
                model_dir,
                evaluation.metrics,
                "custom",
                dataset_version=data.version,
                model_version=version,
                extra={
                    "run_id": training["run_id"],
                    "dataset_hash": data.hash,
                    "verification": check.to_dict(),
                    "code_version": metadata["code_version"],
                    "hyperparameters": training["config"],
                    "files": files,
                },
            )
        except storage.StorageError as exc:
            raise CommandError(
                f"cannot register {model_dir}: {exc}. Nothing was registered (a registry entry is written only "
                "after all its files); run the same export again"
            ) from None
        summary["registered"] = True
    return summary


def _registered_version(settings, run_id: str):
    for version, record in registry.ModelRegistry.from_settings(settings).read_index().versions.items():
        if record.extra.get("run_id") == run_id:
            return version
    return None


def add_arguments(parser) -> None:
    parser.add_argument("--model-dir", required=True, help="a directory `python -m trainer train` wrote")
    parser.add_argument("--no-register", action="store_true", help="write and verify the artifacts only")


def run(args, settings) -> int:
    summary = export_model_dir(settings, args.model_dir, register=not args.no_register)
    if summary.get("already_registered"):
        print(f"{args.model_dir} is already registered as {summary['model_version']}; nothing to do")
        return 0
    check, metrics = summary["verification"], summary["metrics"]
    print(
        f"ONNX verified on {check['images']:,} test images: argmax agreement {check['argmax_agreement']:.2%}, "
        f"max probability difference {check['max_probability_diff']:.1e}"
    )
    print(
        f"accuracy {metrics['accuracy']:.4f}, macro precision {metrics['macro_precision']:.4f}, "
        f"macro recall {metrics['macro_recall']:.4f}, macro F1 {metrics['macro_f1']:.4f}"
    )
    if summary["registered"]:
        print(
            f"registered {summary['model_version']} as candidate; promote it with "
            f"`python -m trainer registry promote {summary['model_version']}`"
        )
    else:
        print(f"wrote {ONNX_FILE} and {METADATA_FILE} to {args.model_dir} (not registered)")
    return 0
