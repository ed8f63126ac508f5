"""ingest -> analyze -> features end to end on generated data, every bucket on the GCS emulator, via the real CLI."""

import io
import json
import sys

import pyarrow.parquet as pq

import storage
from trainer import cli
from trainer.data import idx
from trainer.data.dataset import load_dataset


def run_cli(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


def test_ingest_analyze_features_through_the_gcs_emulator(gcs_settings, gcs_bucket, idx_dir, capsys, monkeypatch):
    prefix = gcs_settings.bucket_prefix
    monkeypatch.setenv("FMNIST_ENV", "dev")
    monkeypatch.setenv("FMNIST_BUCKET_PREFIX", prefix)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    for name in idx.FILE_NAMES.values():
        storage.upload_file(idx_dir / name, f"{gcs_bucket}/upload/{name}")

    run_cli(capsys, "ingest", "--source", f"{gcs_bucket}/upload")
    assert "already stored" in run_cli(capsys, "ingest", "--source", f"{gcs_bucket}/upload")
    run_cli(capsys, "analyze")
    run_cli(capsys, "features")

    dataset = load_dataset(gcs_settings)
    version = dataset.version
    assert dataset.x_train.shape == (600, 28, 28) and dataset.x_test.shape == (200, 28, 28)
    datasets_root = f"gs://{prefix}-datasets/fashion-mnist"
    assert storage.read_text(f"{datasets_root}/LATEST").strip() == version
    assert sorted(u.rsplit("/", 1)[-1] for u in storage.list_uris(f"{datasets_root}/versions/{version}")) == sorted(
        [*idx.FILE_NAMES.values(), "manifest.json", "features.parquet"]
    )

    report = json.loads(storage.read_text(f"gs://{prefix}-dev/analysis/{version}/report.json"))
    assert report["counts"] == {"train": 600, "test": 200}
    assert len(storage.list_uris(f"gs://{prefix}-dev/analysis/{version}/figures")) == 4

    table = pq.read_table(io.BytesIO(storage.read_bytes(f"{datasets_root}/versions/{version}/features.parquet")))
    assert table.num_rows == 800 and table.column_names[0] == "image_id"
