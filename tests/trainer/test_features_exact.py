"""`trainer features` by exact value: the Parquet schema BigQuery loads (columns, types, modes, metadata), every
column of a small table, and the command as a user runs it against fake-gcs-server (the object, its content type,
its compression and the line it prints)."""

from __future__ import annotations

import argparse
import io
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest

import storage
from trainer.data import features, ingest
from trainer.data.dataset import Dataset, version_uri
from trainer.data.synthetic import make_idx_dir

F32 = np.float32


def test_the_parquet_schema_is_the_bigquery_columns_in_order_all_required():
    schema = features.arrow_schema("v-0123456789ab")
    assert [(f.name, str(f.type), f.nullable) for f in schema] == [
        ("image_id", "string", False),
        ("split", "string", False),
        ("label", "int64", False),
        ("dataset_version", "string", False),
        ("mean_intensity", "double", False),
        ("std_intensity", "double", False),
        ("ink_fraction", "double", False),
        ("bbox_height", "double", False),
        ("bbox_width", "double", False),
        ("bbox_aspect", "double", False),
        ("lr_symmetry", "double", False),
        ("centroid_row", "double", False),
        ("centroid_col", "double", False),
    ]
    assert schema.metadata == {b"feature_function": b"fmnist-image-features/v1", b"dataset_version": b"v-0123456789ab"}


def small_dataset() -> Dataset:
    """Two train images (blank; a 10 x 8 block of 255) and one test image (one row of five pixels of 100)."""
    x_train = np.zeros((2, 28, 28), np.uint8)
    x_train[1, 5:15, 10:18] = 255
    x_test = np.zeros((1, 28, 28), np.uint8)
    x_test[0, 3, 2:7] = 100
    labels_train, labels_test = np.array([9, 1], np.uint8), np.array([7], np.uint8)
    return Dataset(x_train, labels_train, x_test, labels_test, version="v-0123456789ab", manifest={})


def bernoulli_std(share: float, level: float) -> float:
    """The standard deviation of an image whose `share` of pixels are `level` and the rest 0."""
    return float(level * np.sqrt(share * (1 - share)))


def test_every_column_of_a_small_table():
    table = features.feature_table(small_dataset())
    assert table.schema.equals(features.arrow_schema("v-0123456789ab"), check_metadata=True)
    assert table.to_pydict() == {
        "image_id": ["train-00000", "train-00001", "test-00000"],
        "split": ["train", "train", "test"],
        "label": [9, 1, 7],
        "dataset_version": ["v-0123456789ab"] * 3,
        "mean_intensity": [0.0, float(F32(80 / 784)), float(F32(500) / F32(784 * 255))],
        "std_intensity": pytest.approx([0.0, bernoulli_std(80 / 784, 1), bernoulli_std(5 / 784, 100 / 255)]),
        "ink_fraction": [0.0, float(F32(80 / 784)), float(F32(5 / 784))],
        "bbox_height": [0.0, 10.0, 1.0],
        "bbox_width": [0.0, 8.0, 5.0],
        "bbox_aspect": [0.0, float(F32(0.8)), 5.0],
        "lr_symmetry": [1.0, 1.0, float(F32(1) - (F32(1000) / F32(784)) / F32(255))],
        "centroid_row": [13.5, 9.5, 3.0],
        "centroid_col": [13.5, 13.5, 4.0],
    }


def test_the_command_writes_one_zstd_parquet_object_with_its_content_type(gcs_settings, idx_dir, tmp_path, capsys):
    # two versions: --version names the older, smaller one (LATEST is the other)
    older = ingest.ingest(gcs_settings, ingest.Source("directory", str(make_idx_dir(tmp_path / "a", 30, 10, seed=5))))
    latest = ingest.ingest(gcs_settings, ingest.Source("directory", str(idx_dir)))
    assert older != latest
    capsys.readouterr()
    clock = iter([100.0, 102.5])  # the command's start and end
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(features, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
        assert features.run(argparse.Namespace(version=older), gcs_settings) == 0
    uri = storage.join(version_uri(gcs_settings, older), "features.parquet")
    assert capsys.readouterr().out == (
        f"wrote 40 rows x 13 columns (9 features, fmnist-image-features/v1) to {uri} in 2.5 s\n"
    )
    bucket, name = uri[len("gs://") :].split("/", 1)
    blob = storage.gcs_client().bucket(bucket).get_blob(name)
    assert blob.content_type == "application/vnd.apache.parquet"
    parquet = pq.ParquetFile(io.BytesIO(blob.download_as_bytes()))
    assert parquet.metadata.num_rows == 40
    assert {parquet.metadata.row_group(0).column(i).compression for i in range(13)} == {"ZSTD"}
    assert parquet.schema_arrow.equals(features.arrow_schema(older), check_metadata=True)
    assert not storage.exists(storage.join(version_uri(gcs_settings, latest), "features.parquet"))
