"""What ingest stores, in full: the manifest's every field, the objects' content types on GCS, LATEST, the words it
prints, and how a damaged or foreign manifest is treated (rewritten, never trusted)."""

import gzip
import hashlib
import json
import sys
from pathlib import Path

import pytest

import storage
from contracts.dataset import CLASS_NAMES
from settings import load_config
from trainer.data import idx
from trainer.data.dataset import version_uri
from trainer.data.ingest import Source, ingest
from trainer.errors import CommandError


@pytest.fixture
def local(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    return load_config("local", environ={"FMNIST_STORAGE_ROOT": str(tmp_path / "mlops")})


def expected_manifest(idx_dir: Path, source: dict) -> dict:
    data = {role: (idx_dir / name).read_bytes() for role, name in idx.FILE_NAMES.items()}
    sha = {role: hashlib.sha256(blob).hexdigest() for role, blob in data.items()}
    dataset_hash = hashlib.sha256("".join(sha[r] for r in idx.ROLES).encode()).hexdigest()
    shapes = {"train_images": [600, 28, 28], "train_labels": [600], "test_images": [200, 28, 28], "test_labels": [200]}
    return {
        "dataset": "fashion-mnist",
        "version": "v-" + dataset_hash[:12],
        "hash": dataset_hash,
        "hash_method": "sha256 over the four files' sha256 hex digests: train images, train labels, test images, "
        "test labels",
        "source": source,
        "official": False,
        "warnings": [
            "not the published Fashion-MNIST files (checksums differ): "
            + ", ".join(str(idx_dir / idx.FILE_NAMES[r]) for r in idx.ROLES)
            + "; ingesting them as custom data",
            "counts {'train': 600, 'test': 200} differ from the official {'train': 60000, 'test': 10000}",
        ],
        "format": "gzipped IDX, uint8",
        "image_shape": [28, 28],
        "counts": {"train": 600, "test": 200},
        "class_names": list(CLASS_NAMES),
        "class_distribution": {"train": [60] * 10, "test": [20] * 10},
        "files": {
            role: {
                "name": idx.FILE_NAMES[role],
                "sha256": sha[role],
                "bytes": len(data[role]),
                "md5": hashlib.md5(data[role]).hexdigest(),
                "content_md5": hashlib.md5(gzip.decompress(data[role])).hexdigest(),
                "shape": shapes[role],
            }
            for role in idx.ROLES
        },
    }


def read_manifest(settings, version):
    return json.loads(storage.read_text(storage.join(version_uri(settings, version), "manifest.json")))


def test_the_manifest_in_full_and_what_ingest_prints(local, idx_dir, capsys):
    version = ingest(local, Source("directory", str(idx_dir)))
    manifest = read_manifest(local, version)
    created = manifest.pop("created_at")
    assert manifest == expected_manifest(idx_dir, {"kind": "directory", "location": str(idx_dir)})
    assert created.endswith("+00:00") and len(created) == len("2026-01-01T00:00:00+00:00")
    raw = storage.read_text(storage.join(version_uri(local, version), "manifest.json"))
    assert raw.endswith("}\n") and raw.startswith('{\n  "dataset"')  # indented, one trailing newline
    latest = storage.join(local.datasets_bucket, "fashion-mnist", "LATEST")
    assert storage.read_text(latest) == version + "\n"
    assert capsys.readouterr().out.splitlines() == [
        f"source: directory {idx_dir}",
        f"stored dataset version {version} at {version_uri(local, version)} (600 train / 200 test images, "
        f"custom data); LATEST -> {version}",
    ]


def test_a_newer_version_says_what_latest_was(local, idx_dir, tmp_path, capsys):
    from tests.conftest import make_idx_dir

    first = ingest(local, Source("directory", str(idx_dir)))
    second = ingest(local, Source("directory", str(make_idx_dir(tmp_path / "b", seed=3))))
    assert capsys.readouterr().out.splitlines()[-1].endswith(f"LATEST -> {second} (was {first})")


def test_on_gcs_the_objects_carry_their_content_types(gcs_settings, idx_dir):
    version = ingest(gcs_settings, Source("directory", str(idx_dir)))
    bucket = storage.gcs_client().bucket(gcs_settings.datasets_bucket[len("gs://") :])
    prefix = f"fashion-mnist/versions/{version}"
    assert bucket.get_blob(f"{prefix}/manifest.json").content_type == "application/json"
    for name in idx.FILE_NAMES.values():
        assert bucket.get_blob(f"{prefix}/{name}").content_type == "application/gzip"
    assert read_manifest(gcs_settings, version)["files"]["test_labels"]["name"] == idx.FILE_NAMES["test_labels"]


@pytest.mark.parametrize("damage", ["not json", "other files"])
def test_a_manifest_that_does_not_describe_these_files_is_rewritten(local, idx_dir, capsys, damage):
    version = ingest(local, Source("directory", str(idx_dir)))
    uri = storage.join(version_uri(local, version), "manifest.json")
    if damage == "not json":
        storage.write_text(uri, "{ half a manifest")
    else:
        manifest = json.loads(storage.read_text(uri))
        manifest["files"]["test_labels"]["sha256"] = "0" * 64
        storage.write_text(uri, json.dumps(manifest))
    capsys.readouterr()
    assert ingest(local, Source("directory", str(idx_dir))) == version
    assert "stored dataset version" in capsys.readouterr().out  # stored again, not "already stored"
    manifest = read_manifest(local, version)
    manifest.pop("created_at")
    assert manifest == expected_manifest(idx_dir, {"kind": "directory", "location": str(idx_dir)})


def test_reingest_of_the_same_files_says_so_and_keeps_latest(local, idx_dir, capsys):
    version = ingest(local, Source("directory", str(idx_dir)))
    capsys.readouterr()
    assert ingest(local, Source("directory", str(idx_dir))) == version
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"dataset version {version} is already stored at {version_uri(local, version)} (same four files): nothing to do"
    )


def test_a_write_that_fails_is_one_error_and_removes_the_partial_version(local, idx_dir, monkeypatch):
    real, calls = storage.write_bytes, []

    def fail_manifest(uri, data, **kwargs):
        calls.append(uri)
        if uri.endswith("manifest.json"):
            raise storage.StorageError(f"{uri}: quota exceeded")
        return real(uri, data, **kwargs)

    monkeypatch.setattr(storage, "write_bytes", fail_manifest)
    with pytest.raises(CommandError) as failed:
        ingest(local, Source("directory", str(idx_dir)))
    version = Path(calls[0]).parent.name
    assert str(failed.value) == (
        f"cannot write dataset version {version} to {version_uri(local, version)}: {calls[-1]}: quota exceeded"
    )
    assert storage.list_uris(version_uri(local, version)) == []
    assert len(calls) == 5  # four files, then the manifest


def test_reingest_after_latest_was_lost_points_it_back(local, idx_dir, capsys):
    version = ingest(local, Source("directory", str(idx_dir)))
    storage.delete(storage.join(local.datasets_bucket, "fashion-mnist", "LATEST"))
    capsys.readouterr()
    assert ingest(local, Source("directory", str(idx_dir))) == version
    assert capsys.readouterr().out.splitlines()[-1].endswith("nothing to do; LATEST now points to it (was None)")
    assert storage.read_text(storage.join(local.datasets_bucket, "fashion-mnist", "LATEST")) == version + "\n"
