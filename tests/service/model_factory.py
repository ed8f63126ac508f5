"""Build a small model directory exactly as docs/CONTRACTS.md describes it (digests included), for the service's tests.

Why here and not trainer.models.export: the service's tests must run on their own, and the service only relies on the
contract (model.onnx with input "pixels", metadata.json, optional samples.npz). The Keras model is exported
with `model.export(format="onnx")`, the path the trainer uses; its drift baseline comes from
contracts.features.feature_baseline over generated images, so it is the baseline the trainer would write.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from contracts.dataset import CLASS_NAMES, NUM_CLASSES
from contracts.features import compute_image_features, feature_baseline
from tests.conftest import make_images


def generated_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    labels = (np.arange(n) % NUM_CLASSES).astype(np.uint8)
    return make_images(labels, seed), labels


def build_model_dir(directory: Path, version: str = "test-v1", epochs: int = 3) -> Path:
    """Train a tiny CNN on generated images for a few seconds and write a complete model version directory."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    pixels = keras.Input(shape=(28, 28), dtype="float32", name="pixels")
    x = layers.Reshape((28, 28, 1))(pixels)
    x = layers.Rescaling(1.0 / 255)(x)
    x = layers.Conv2D(8, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    probabilities = layers.Dense(10, activation="softmax", name="probabilities")(x)
    model = keras.Model(pixels, probabilities)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    train_x, train_y = generated_images(1000, seed=1)
    model.fit(train_x.astype(np.float32), train_y, epochs=epochs, batch_size=64, verbose=0)

    directory.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # tf2onnx probes np.object
        model.export(str(directory / "model.onnx"), format="onnx", verbose=False)
    baseline_x, _ = generated_images(2000, seed=2)
    predicted = np.asarray(model.predict_on_batch(baseline_x.astype(np.float32))).argmax(axis=1)
    test_x, test_y = generated_images(200, seed=3)
    accuracy = float((np.asarray(model.predict_on_batch(test_x.astype(np.float32))).argmax(1) == test_y).mean())
    metadata = {
        "model_version": version,
        "created_at": datetime.now(UTC).isoformat(),
        "code_version": "test",
        "framework": {"keras": keras.__version__, "backend": "tensorflow"},
        "class_names": list(CLASS_NAMES),
        "input": {"name": "pixels", "shape": [None, 28, 28], "dtype": "float32", "range": [0, 255]},
        "serving_artifact": "model.onnx",
        "metrics": {"accuracy": accuracy, "macro_precision": accuracy, "macro_recall": accuracy, "macro_f1": accuracy},
        "dataset": {"version": "v-generated", "hash": "0" * 64},
        "hyperparameters": {"epochs": epochs},
        "source": "custom",
        "feature_baseline": feature_baseline(compute_image_features(baseline_x), predicted),
    }
    (directory / "metadata.json").write_text(json.dumps(metadata, indent=2))
    np.savez(directory / "samples.npz", images=test_x[:20], labels=test_y[:20])
    digest_files(directory)  # metadata.json's `files`, as export writes them
    return directory


def build_registry(root: Path, model_dir: Path, version: str = "test-v1", alias: str = "champion") -> Path:
    """A models bucket with one registered version under `alias` (registry/index.json per the contract)."""
    version_dir = root / "registry" / "versions" / version
    shutil.copytree(model_dir, version_dir, dirs_exist_ok=True)
    index = {
        "versions": {
            version: {
                "path": f"registry/versions/{version}",
                "metrics": {},
                "source": "custom",
                "dataset_version": "v-generated",
                "created_at": "2026-11-26T00:00:00Z",
            }
        },
        "aliases": {alias: version},
        "history": {alias: [version]},
    }
    (root / "registry" / "index.json").write_text(json.dumps(index))
    return root


def upload_tree(local: Path, bucket_uri: str, prefix: str) -> None:
    """Copy a local directory into gs://bucket/prefix (the tests' GCS emulator)."""
    import storage

    bucket = storage.gcs_client().bucket(bucket_uri[len("gs://") :])
    for path in sorted(local.rglob("*")):
        if path.is_file():
            bucket.blob(f"{prefix}/{path.relative_to(local)}").upload_from_filename(str(path))


def digest_files(directory: Path) -> dict[str, str]:
    """SHA-256 of every file, as export records them: metadata.json's `files` gets all but itself, and the
    returned map (for the registry record) covers metadata.json too."""
    import hashlib

    def digests() -> dict[str, str]:
        return {
            str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*"))
            if p.is_file()
        }

    metadata = json.loads((directory / "metadata.json").read_text())
    metadata["files"] = {name: digest for name, digest in digests().items() if name != "metadata.json"}
    (directory / "metadata.json").write_text(json.dumps(metadata, indent=2))
    return digests()


def cached_model_dir(target: Path, shared: Path | None = None) -> Path:
    """`build_model_dir(target)`, trained once per cache directory and copied from there: TEST_MODEL_CACHE when set
    (`make mutate` runs a group's tests once per mutant: a model trained per run would cost each mutant ~25 s), else
    `shared` (the pytest-xdist workers of one run: the first one trains, the others wait for it on a lock)."""
    cache = os.environ.get("TEST_MODEL_CACHE") or (str(shared) if shared else "")
    if not cache:
        return build_model_dir(target)
    cached = Path(cache) / "test-v1"
    Path(cache).mkdir(parents=True, exist_ok=True)
    with open(Path(cache) / "test-v1.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the others wait for the one training instead of training too
        if not cached.is_dir():
            built = build_model_dir(Path(cache) / f"building-{os.getpid()}" / "test-v1")
            try:
                built.rename(cached)  # whole or not at all: a run killed mid-build leaves no half model behind
            except OSError:
                if not cached.is_dir():  # another run won the race only if its copy is there
                    raise
            shutil.rmtree(built.parent, ignore_errors=True)
    shutil.copytree(cached, target)
    return target


def make_version(
    source: Path,
    directory: Path,
    version: str,
    *,
    int8: bool = False,
    digests: bool = True,
    speed: dict | None = None,
) -> tuple[Path, dict[str, str] | None]:
    """A copy of a model directory as version `version` (its own metadata, so its own digests); with `int8` an
    int8 artifact quantized the way export does it, with `speed` the export's speed record (quantization.speed).
    Returns the directory and the registry record's files."""
    shutil.copytree(source, directory)
    metadata = json.loads((directory / "metadata.json").read_text())
    metadata["model_version"] = version
    metadata.pop("files", None)
    metadata["int8_artifact"] = None
    if int8:
        from trainer.models.quantize import quantize

        calibration, _ = generated_images(64, seed=5)
        quantize(directory / "model.onnx", calibration.astype(np.float32), directory / "model.int8.onnx")
        metadata["int8_artifact"] = "model.int8.onnx"
    if speed is not None:
        metadata["quantization"] = {**(metadata.get("quantization") or {}), "passed": int8, "speed": speed}
    (directory / "metadata.json").write_text(json.dumps(metadata, indent=2))
    return directory, digest_files(directory) if digests else None


def local_registry(root: Path):
    """The trainer's own registry on a local directory, with a gate every test model passes."""
    from trainer.models.registry import ModelRegistry

    return ModelRegistry(str(root), accuracy_floor=0.0, regression_tolerance=1.0)


def signed_registry(tmp_path: Path, model_dir: Path, versions=("v1", "v2"), root: str | None = None):
    """A registry whose promoter signs with a local key, every version in `versions` built (not registered) and
    the first registered and promoted: (registry, promoter key, {version: (directory, digests)})."""
    from trainer.models.index_signing import LocalKeySigner

    promoter = LocalKeySigner(tmp_path / "promoter")
    registry = local_registry(root or tmp_path / "models")
    registry.signer = promoter
    built = {v: make_version(model_dir, tmp_path / "build" / v, v) for v in versions}
    register(registry, built[versions[0]][0], versions[0], built[versions[0]][1])
    return registry, promoter, built


def register(registry, directory: Path, version: str, files: dict[str, str] | None, promote: bool = True) -> str:
    """Register a version directory the way export does (with its digests) and, by default, promote it."""
    extra = {"files": files} if files is not None else {}
    registry.register(
        str(directory), {"accuracy": 0.9}, "custom", dataset_version="v-generated", version=version, extra=extra
    )
    if promote:
        registry.promote(version)
    return version


def build_linear_model_dir(source: Path, directory: Path, version: str, seed: int = 0) -> Path:
    """A second, different real model: `source`'s metadata under another version, and a random linear softmax
    classifier as model.onnx (built with onnx.helper in milliseconds: no training), which disagrees with the CNN."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    weights = helper.make_tensor("w", TensorProto.FLOAT, [784, 10], rng.normal(0, 0.01, 7840).astype(np.float32))
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 784])
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["pixels", "shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "linear",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [None, 28, 28])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 10])],
        [weights, shape],
    )
    shutil.copytree(source, directory, dirs_exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(directory / "model.onnx"))
    metadata = json.loads((directory / "metadata.json").read_text())
    metadata["model_version"] = version
    metadata.pop("files", None)  # the copied digests are the CNN's
    (directory / "metadata.json").write_text(json.dumps(metadata, indent=2))
    return directory


def linear_softmax_onnx(weights: np.ndarray) -> bytes:
    """softmax(flatten(pixels) @ weights) as a serialized ONNX model with the serving contract's names: a classifier
    whose every probability a test can compute by hand (weights: float32 [784, 10])."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["pixels"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [None, 28, 28])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 10])],
        [numpy_helper.from_array(weights, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
