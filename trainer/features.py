"""Per-image engineered features: the function (shared with the service), drift baselines, and `trainer features`.

Why a pure numpy function of one image batch: the same code computes the training table (Parquet -> BigQuery ->
Vertex AI Feature Online Store), the training baseline stored in model metadata, and the live features the
service compares against that baseline for drift. Columns are declared in trainer/feature_schema.py.
"""
from __future__ import annotations

import io
import time

import numpy as np

from trainer import storage
from trainer.feature_schema import COLUMNS, FEATURE_FUNCTION_ID, FEATURE_NAMES

FEATURES_FILE = "features.parquet"
CHUNK = 8192  # images per compute_image_features call in the batch job: bounds memory to ~40 MB of float32


def compute_image_features(images: np.ndarray) -> dict[str, np.ndarray]:
    # copied into service/features.py; tests/service/test_feature_parity.py keeps them identical
    """Features of uint8 images [N, 28, 28] (raw 0-255 pixels) -> {name: float32[N]}, names as FEATURE_NAMES."""
    x = np.asarray(images)
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise ValueError(f"expected images of shape [N, 28, 28], got {list(x.shape)}")
    x = x.astype(np.uint8, copy=False)
    n = x.shape[0]
    flat = x.reshape(n, 784).astype(np.float32)
    total = flat.sum(axis=1)
    mean = total / np.float32(784 * 255)
    std = flat.std(axis=1) / np.float32(255)

    ink = x > 25
    rows, cols = ink.any(axis=2), ink.any(axis=1)
    has_ink = rows.any(axis=1)
    height = np.where(has_ink, 28 - rows[:, ::-1].argmax(axis=1) - rows.argmax(axis=1), 0).astype(np.float32)
    width = np.where(has_ink, 28 - cols[:, ::-1].argmax(axis=1) - cols.argmax(axis=1), 0).astype(np.float32)
    aspect = np.where(height > 0, width / np.maximum(height, 1), 0).astype(np.float32)

    mirror_diff = np.abs(flat.reshape(n, 28, 28) - flat.reshape(n, 28, 28)[:, :, ::-1]).reshape(n, 784)
    symmetry = 1 - mirror_diff.mean(axis=1) / np.float32(255)

    positions = np.arange(28, dtype=np.float32)
    safe_total = np.where(total > 0, total, 1)
    centroid_row = np.where(total > 0, flat.reshape(n, 28, 28).sum(axis=2) @ positions / safe_total, 13.5)
    centroid_col = np.where(total > 0, flat.reshape(n, 28, 28).sum(axis=1) @ positions / safe_total, 13.5)

    values = {
        "mean_intensity": mean, "std_intensity": std, "ink_fraction": ink.reshape(n, 784).mean(axis=1),
        "bbox_height": height, "bbox_width": width, "bbox_aspect": aspect, "lr_symmetry": symmetry,
        "centroid_row": centroid_row, "centroid_col": centroid_col,
    }
    return {name: np.asarray(value, dtype=np.float32) for name, value in values.items()}


def compute_features_chunked(images: np.ndarray, chunk: int = CHUNK) -> dict[str, np.ndarray]:
    """compute_image_features over a large array in chunks (same values, bounded memory)."""
    parts = [compute_image_features(images[i:i + chunk]) for i in range(0, len(images), chunk)]
    return {name: np.concatenate([p[name] for p in parts]) for name in FEATURE_NAMES}


def feature_baseline(features: dict[str, np.ndarray], predicted_or_labels: np.ndarray, n_bins: int = 10) -> dict:
    """The `feature_baseline` block of model metadata (docs/CONTRACTS.md): per feature, n_bins-1 quantile cut
    points and the share of images in each of the n_bins bins (`searchsorted(edges, v, side="right")`), plus the
    class proportions the service compares its predicted-class distribution with."""
    quantiles = np.linspace(0, 1, n_bins + 1)[1:-1]
    out = {}
    for name in FEATURE_NAMES:
        values = np.asarray(features[name], dtype=np.float64)
        edges = np.quantile(values, quantiles)
        bins = np.searchsorted(edges, values, side="right")
        proportions = np.bincount(bins, minlength=n_bins) / len(values)
        out[name] = {"edges": [float(e) for e in edges], "proportions": [float(p) for p in proportions]}
    labels = np.asarray(predicted_or_labels).astype(np.int64)
    classes = np.bincount(labels, minlength=10) / len(labels)
    return {"feature_function": FEATURE_FUNCTION_ID, "features": out,
            "classes": {"proportions": [float(p) for p in classes]}}


def population_stability_index(expected: list[float], actual: np.ndarray) -> float:
    """PSI as docs/CONTRACTS.md defines it: proportions clamped to >= 1e-4, sum((a - e) * ln(a / e))."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), 1e-4)
    a = np.maximum(np.asarray(actual, dtype=np.float64), 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


def bin_proportions(edges: list[float], values: np.ndarray) -> np.ndarray:
    """Share of values per bin, binned like feature_baseline."""
    bins = np.searchsorted(np.asarray(edges), np.asarray(values, dtype=np.float64), side="right")
    return np.bincount(bins, minlength=len(edges) + 1) / max(len(values), 1)


# ---- the feature table ------------------------------------------------------------------------------------------

_ARROW_TYPES = {"STRING": "string", "INT64": "int64", "FLOAT64": "float64"}


def arrow_schema(dataset_version: str):
    """The Parquet schema, derived from feature_schema.COLUMNS (float64 so BigQuery loads FLOAT64 as declared)."""
    import pyarrow as pa
    fields = [pa.field(c.name, getattr(pa, _ARROW_TYPES[c.bigquery_type])(), nullable=c.mode != "REQUIRED")
              for c in COLUMNS]
    return pa.schema(fields, metadata={"feature_function": FEATURE_FUNCTION_ID, "dataset_version": dataset_version})


def feature_table(dataset):
    """One row per image of both splits, columns as feature_schema.COLUMNS."""
    import pyarrow as pa
    columns: dict[str, list] = {c.name: [] for c in COLUMNS}
    for split, images, labels in (("train", dataset.x_train, dataset.y_train), ("test", dataset.x_test, dataset.y_test)):
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

    from trainer.dataset import load_dataset, version_uri

    start = time.perf_counter()
    dataset = load_dataset(settings, args.version)
    table = feature_table(dataset)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    uri = storage.join(version_uri(settings, dataset.version), FEATURES_FILE)
    storage.write_bytes(uri, buffer.getvalue(), content_type="application/vnd.apache.parquet")
    print(f"wrote {table.num_rows:,} rows x {table.num_columns} columns ({len(FEATURE_NAMES)} features, "
          f"{FEATURE_FUNCTION_ID}) to {uri} in {time.perf_counter() - start:.1f} s")
    return 0
