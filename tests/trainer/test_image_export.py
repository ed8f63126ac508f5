"""export-images: PNGs decode to the original pixels, the import file follows Vertex AI's format and the custom
trainer's split, and a second export of the same version changes nothing."""

import json
from pathlib import Path

import numpy as np
import pytest

import storage
from contracts.dataset import CLASS_NAMES
from trainer.cli import main
from trainer.data.dataset import load_dataset
from trainer.data.export_images import ML_USE_LABEL, decode_png, export_images
from trainer.data.splits import validation_mask


@pytest.fixture
def ingested(settings, idx_dir, monkeypatch):
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", settings.storage_root)
    assert main(["ingest", "--source", str(idx_dir)]) == 0
    return settings


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_export_round_trips_pixels_and_labels(ingested):
    import_uri, summary, created = export_images(ingested, log=lambda *_: None)
    assert created
    dataset = load_dataset(ingested)
    lines = [json.loads(line) for line in storage.read_text(import_uri).splitlines()]
    assert len(lines) == len(dataset.y_train) + len(dataset.y_test)
    val = validation_mask(dataset.y_train, ingested.training.validation_fraction, ingested.training.seed)
    expected_use = {"training": int((~val).sum()), "validation": int(val.sum()), "test": len(dataset.y_test)}
    assert summary["counts"] == expected_use
    for line in lines:
        assert set(line) == {"imageGcsUri", "classificationAnnotation", "dataItemResourceLabels"}
        use = line["dataItemResourceLabels"][ML_USE_LABEL]
        name = Path(line["imageGcsUri"]).name
        split, index = name[:-4].split("-")
        images, labels = (dataset.x_train, dataset.y_train) if split == "train" else (dataset.x_test, dataset.y_test)
        index = int(index)
        assert np.array_equal(decode_png(storage.read_bytes(line["imageGcsUri"])), images[index])
        assert line["classificationAnnotation"]["displayName"] == CLASS_NAMES[labels[index]]
        if split == "train":
            assert use == ("validation" if val[index] else "training")
        else:
            assert use == "test"


def test_second_export_is_a_no_op_and_exports_are_byte_identical(ingested, tmp_path):
    import_uri, _, _ = export_images(ingested, log=lambda *_: None)
    root = Path(import_uri).parent
    first = _tree(root)
    messages = []
    _, _, created = export_images(ingested, log=messages.append)
    assert not created and "already exported" in messages[0]
    storage.delete_tree(str(root))
    export_images(ingested, log=lambda *_: None)
    assert _tree(root) == first
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".images-staging")]


@pytest.mark.slow
def test_export_to_gcs_emulator(gcs_settings, idx_dir, monkeypatch):
    monkeypatch.setenv("FMNIST_ENV", "dev")
    monkeypatch.setenv("FMNIST_BUCKET_PREFIX", gcs_settings.bucket_prefix)
    assert main(["ingest", "--source", str(idx_dir)]) == 0
    import_uri, summary, created = export_images(gcs_settings, log=lambda *_: None)
    assert created and import_uri.startswith("gs://")
    first = json.loads(storage.read_text(import_uri).splitlines()[0])
    assert first["imageGcsUri"].startswith(f"gs://{gcs_settings.bucket_prefix}-datasets/")
    assert decode_png(storage.read_bytes(first["imageGcsUri"])).shape == (28, 28)
    assert len(storage.list_uris(import_uri.rsplit("/", 1)[0])) == sum(summary["counts"].values()) + 2


def test_parallel_and_sequential_exports_are_identical(ingested, tmp_path):
    from trainer.data.export_images import build_export

    dataset = load_dataset(ingested)
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    assert build_export(dataset, ingested, one, workers=1) == build_export(dataset, ingested, two, workers=2)
    assert _tree(one) == _tree(two)
