"""The per-image feature table's columns: one source of truth for Parquet, BigQuery (infra/) and drift baselines.

Pure Python on purpose: `infra/` imports this module to declare the BigQuery table behind the Vertex AI Feature
Online Store. `contracts.features.compute_image_features` returns exactly FEATURE_NAMES; a test keeps them in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Bump when compute_image_features changes meaning: baselines stored in model metadata name the function they used.
FEATURE_FUNCTION_ID = "fmnist-image-features/v1"
TABLE_NAME = "image_features"
ENTITY_ID_COLUMN = "image_id"


@dataclass(frozen=True)
class Column:
    name: str
    bigquery_type: str  # STRING | INT64 | FLOAT64
    description: str
    mode: str = "REQUIRED"

    def bigquery_field(self) -> dict[str, Any]:
        """The column as a BigQuery schema field (the JSON shape `google_bigquery_table.schema` takes)."""
        return {"name": self.name, "type": self.bigquery_type, "mode": self.mode, "description": self.description}


KEY_COLUMNS = (
    Column("image_id", "STRING", "stable id '<split>-<index>' (index in the split's IDX file, zero-padded to 5)"),
    Column("split", "STRING", "'train' or 'test'"),
    Column("label", "INT64", "class index 0-9 (T-shirt/top ... Ankle boot)"),
    Column("dataset_version", "STRING", "dataset version id the row was computed from (v-<12 hex>)"),
)

FEATURE_COLUMNS = (
    Column("mean_intensity", "FLOAT64", "mean pixel value scaled to 0-1"),
    Column("std_intensity", "FLOAT64", "standard deviation of pixel values scaled to 0-1"),
    Column("ink_fraction", "FLOAT64", "fraction of pixels brighter than 25/255 (the garment's area)"),
    Column("bbox_height", "FLOAT64", "rows spanned by ink pixels, 0-28 (0 for a blank image)"),
    Column("bbox_width", "FLOAT64", "columns spanned by ink pixels, 0-28 (0 for a blank image)"),
    Column("bbox_aspect", "FLOAT64", "bbox_width / bbox_height (0 for a blank image)"),
    Column("lr_symmetry", "FLOAT64", "1 - mean |image - mirrored image| / 255: 1 means left-right symmetric"),
    Column("centroid_row", "FLOAT64", "intensity-weighted mean row, 0-27 (13.5 for a blank image)"),
    Column("centroid_col", "FLOAT64", "intensity-weighted mean column, 0-27 (13.5 for a blank image)"),
)

COLUMNS = KEY_COLUMNS + FEATURE_COLUMNS
FEATURE_NAMES = tuple(c.name for c in FEATURE_COLUMNS)


def bigquery_schema() -> list[dict[str, Any]]:
    """All columns as BigQuery schema fields, in table order."""
    return [c.bigquery_field() for c in COLUMNS]
