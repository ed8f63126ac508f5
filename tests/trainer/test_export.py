"""`python -m trainer export`: ONNX + metadata exactly per docs/CONTRACTS.md, verified before it is registered."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from trainer import cli
from trainer.models import export
from trainer.models.registry import ModelRegistry

CONTRACT_KEYS = {
    "model_version",
    "created_at",
    "code_version",
    "framework",
    "class_names",
    "input",
    "serving_artifact",
    "files",
    "int8_artifact",
    "quantization",
    "metrics",
    "dataset",
    "hyperparameters",
    "source",
    "feature_baseline",
}


def test_export_writes_verified_onnx_and_contract_metadata_and_registers_a_candidate(cli_env, model_dir, capsys):
    assert cli.main(["export", "--model-dir", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert "argmax agreement 100.00%" in out and "registered v" in out

    session = ort.InferenceSession(str(model_dir / "model.onnx"))
    assert [i.name for i in session.get_inputs()] == ["pixels"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    raw = np.random.default_rng(0).integers(0, 256, (3, 28, 28)).astype("float32")
    np.testing.assert_allclose(session.run(None, {"pixels": raw})[0].sum(axis=1), 1.0, rtol=1e-5)

    metadata = json.loads((model_dir / "metadata.json").read_text())
    assert set(metadata) == CONTRACT_KEYS
    assert metadata["input"] == {"name": "pixels", "shape": [None, 28, 28], "dtype": "float32", "range": [0, 255]}
    assert metadata["serving_artifact"] == "model.onnx" and metadata["source"] == "custom"
    assert metadata["framework"]["backend"] == "tensorflow" and metadata["framework"]["keras"].startswith("3.")
    assert metadata["class_names"][0] == "T-shirt/top" and len(metadata["class_names"]) == 10
    assert set(metadata["metrics"]) == {"accuracy", "macro_precision", "macro_recall", "macro_f1"}
    assert metadata["dataset"]["version"] == cli_env.dataset_version and len(metadata["dataset"]["hash"]) == 64
    baseline = metadata["feature_baseline"]
    assert baseline["feature_function"] == "fmnist-image-features/v1"
    for feature in baseline["features"].values():
        assert len(feature["edges"]) == 9 and sum(feature["proportions"]) == pytest.approx(1.0)
    assert len(baseline["classes"]["proportions"]) == 10
    # the int8 file is there exactly when its gate passed, and the metadata says which
    quantization = metadata["quantization"]
    assert set(quantization) >= {"agreement", "float_accuracy", "int8_accuracy", "passed"}
    assert (model_dir / "model.int8.onnx").is_file() == quantization["passed"]
    assert metadata["int8_artifact"] == ("model.int8.onnx" if quantization["passed"] else None)

    registry = ModelRegistry.from_settings(cli_env.settings)
    index = registry.read_index().to_json()
    version = metadata["model_version"]
    assert index["aliases"] == {"candidate": version}
    record = index["versions"][version]
    assert record["path"] == f"registry/versions/{version}" and record["source"] == "custom"
    assert record["metrics"] == metadata["metrics"] and record["dataset_version"] == cli_env.dataset_version
    assert record["verification"]["passed"] and record["verification"]["images"] == 300
    stored = cli_env.root / "models" / record["path"]
    assert {
        "model.keras",
        "model.onnx",
        "metadata.json",
        "evaluation.json",
        "confusion_matrix.png",
        "confusion_matrix.json",
        "training.json",
    } <= {p.name for p in stored.iterdir()}

    assert cli.main(["export", "--model-dir", str(model_dir)]) == 0
    assert f"already registered as {version}" in capsys.readouterr().out
    assert len(registry.read_index().to_json()["versions"]) == 1


def test_an_export_that_disagrees_with_keras_is_refused_and_nothing_registered(cli_env, model_dir, monkeypatch, capsys):
    real = export.onnx_probabilities
    monkeypatch.setattr(export, "onnx_probabilities", lambda path, images: real(path, images) + 5e-4)
    assert cli.main(["export", "--model-dir", str(model_dir)]) == 1
    err = capsys.readouterr().err
    assert "refusing to register" in err and "max probability difference 5.00e-04" in err
    assert ModelRegistry.from_settings(cli_env.settings).read_index().to_json()["versions"] == {}
    assert not (model_dir / "model.onnx").exists() and not (model_dir / "metadata.json").exists()


def test_verify_needs_full_argmax_agreement():
    keras_p = np.array([[0.6, 0.4], [0.4, 0.6]])
    assert export.verify(keras_p, keras_p + 1e-6, 1e-4).passed
    swapped = export.verify(keras_p, keras_p[:, ::-1], 1.0)
    assert swapped.argmax_agreement == 0.0 and not swapped.passed


def test_no_register_writes_artifacts_only(cli_env, model_dir, capsys):
    assert cli.main(["export", "--model-dir", str(model_dir), "--no-register"]) == 0
    assert "not registered" in capsys.readouterr().out
    assert (model_dir / "model.onnx").exists() and (model_dir / "metadata.json").exists()
    assert ModelRegistry.from_settings(cli_env.settings).read_index().to_json()["versions"] == {}


def test_export_records_every_file_digest_and_deploy_refuses_a_damaged_file(cli_env, model_dir, capsys):
    import hashlib

    assert cli.main(["export", "--model-dir", str(model_dir)]) == 0
    metadata = json.loads((model_dir / "metadata.json").read_text())
    on_disk = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in model_dir.iterdir() if p.is_file()}
    assert metadata["files"] == {k: v for k, v in on_disk.items() if k != "metadata.json"}
    registry = ModelRegistry.from_settings(cli_env.settings)
    version = metadata["model_version"]
    record = registry.read_index().to_json()["versions"][version]
    assert record["files"] == on_disk  # metadata.json included

    registered = registry.version_uri(version)
    assert cli.main(["deploy-model", version, "--dry-run"]) == 0
    capsys.readouterr()
    onnx_file = f"{registered}/model.onnx"
    with open(onnx_file, "r+b") as fh:
        fh.truncate(100)
    truncated = hashlib.sha256(Path(onnx_file).read_bytes()).hexdigest()
    assert cli.main(["deploy-model", version, "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "model.onnx was changed or damaged" in err and truncated in err and on_disk["model.onnx"] in err


def test_registration_refuses_a_copy_that_differs(cli_env, model_dir, monkeypatch):
    import storage
    from trainer.errors import RegistryError

    real_copy = storage.copy_tree

    def damaging_copy(src, dest):
        written = real_copy(src, dest)
        with open(f"{dest}/model.keras", "ab") as fh:
            fh.write(b"\0")
        return written

    monkeypatch.setattr(storage, "copy_tree", damaging_copy)
    registry = ModelRegistry.from_settings(cli_env.settings)
    files = {p.name: __import__("hashlib").sha256(p.read_bytes()).hexdigest() for p in model_dir.iterdir()}
    with pytest.raises(RegistryError, match="model.keras was changed or damaged"):
        registry.register(str(model_dir), {"accuracy": 0.9}, "custom", dataset_version="v-1", extra={"files": files})
    assert registry.read_index().to_json()["versions"] == {}
    assert not any(p.is_file() for p in Path(registry.root, "registry", "versions").rglob("*"))
