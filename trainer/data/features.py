"""`python -m trainer features`: the per-image feature table of a dataset version, as Parquet beside it.

The feature function, its columns and the baseline binning are contracts (contracts.features,
contracts.feature_schema): the service computes the same features live for drift, and infra/ declares the
BigQuery table behind the Vertex AI Feature Online Store from the same columns.
"""

from __future__ import annotations

import io
import time

import numpy as np

import storage
from contracts.feature_schema import COLUMNS, FEATURE_FUNCTION_ID, FEATURE_NAMES
from contracts.features import compute_features_chunked
from contracts.layout import FEATURES_FILE

_ARROW_TYPES = {"STRING": "string", "INT64": "int64", "FLOAT64": "float64"}


def arrow_schema(dataset_version: str):
    """The Parquet schema, derived from feature_schema.COLUMNS (float64 so BigQuery loads FLOAT64 as declared)."""
    import pyarrow as pa

    fields = [
        pa.field(c.name, getattr(pa, _ARROW_TYPES[c.bigquery_type])(), nullable=c.mode != "REQUIRED") for c in COLUMNS
    ]
    return pa.schema(fields, metadata={"feature_function": FEATURE_FUNCTION_ID, "dataset_version": dataset_version})


def feature_table(dataset):
    """One row per image of both splits, columns as feature_schema.COLUMNS."""
    import pyarrow as pa

    columns: dict[str, list] = {c.name: [] for c in COLUMNS}
    for split, images, labels in (
        ("train", dataset.x_train, dataset.y_train),
        ("test", dataset.x_test, dataset.y_test),
    ):
        n = len(labels)
        columns["image_id"].append(np.char.add(f"{split}-", np.char.zfill(np.arange(n).astype(str), 5)))
        columns["split"].append(np.full(n, split))
        columns["label"].append(labels.astype(np.int64))
        columns["dataset_version"].append(np.full(n, dataset.version))
        for name, values in compute_features_chunked(images).items():
            columns[name].append(values.astype(np.float64))
    schema = arrow_schema(dataset.version)
    arrays = [pa.array(np.concatenate(columns[f.name]), type=f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def add_arguments(parser) -> None:
    parser.add_argument("--version", help="dataset version (default: LATEST in the datasets bucket)")


def run(args, settings) -> int:
    import pyarrow.parquet as pq

    from trainer.data.dataset import load_dataset, version_uri

    start = time.perf_counter()
    dataset = load_dataset(settings, args.version)
    table = feature_table(dataset)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    uri = storage.join(version_uri(settings, dataset.version), FEATURES_FILE)
    storage.write_bytes(uri, buffer.getvalue(), content_type="application/vnd.apache.parquet")
    print(
        f"wrote {table.num_rows:,} rows x {table.num_columns} columns ({len(FEATURE_NAMES)} features, "
        f"{FEATURE_FUNCTION_ID}) to {uri} in {time.perf_counter() - start:.1f} s"
    )
    return 0
