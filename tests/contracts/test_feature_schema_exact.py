"""The feature table's BigQuery schema by exact value: the JSON infra/ declares for the table behind the Feature
Online Store, field by field (name, type, mode, description), in table order."""

from __future__ import annotations

from contracts import feature_schema
from contracts.feature_schema import Column

EXPECTED = [
    ("image_id", "STRING", "stable id '<split>-<index>' (index in the split's IDX file, zero-padded to 5)"),
    ("split", "STRING", "'train' or 'test'"),
    ("label", "INT64", "class index 0-9 (T-shirt/top ... Ankle boot)"),
    ("dataset_version", "STRING", "dataset version id the row was computed from (v-<12 hex>)"),
    ("mean_intensity", "FLOAT64", "mean pixel value scaled to 0-1"),
    ("std_intensity", "FLOAT64", "standard deviation of pixel values scaled to 0-1"),
    ("ink_fraction", "FLOAT64", "fraction of pixels brighter than 25/255 (the garment's area)"),
    ("bbox_height", "FLOAT64", "rows spanned by ink pixels, 0-28 (0 for a blank image)"),
    ("bbox_width", "FLOAT64", "columns spanned by ink pixels, 0-28 (0 for a blank image)"),
    ("bbox_aspect", "FLOAT64", "bbox_width / bbox_height (0 for a blank image)"),
    ("lr_symmetry", "FLOAT64", "1 - mean |image - mirrored image| / 255: 1 means left-right symmetric"),
    ("centroid_row", "FLOAT64", "intensity-weighted mean row, 0-27 (13.5 for a blank image)"),
    ("centroid_col", "FLOAT64", "intensity-weighted mean column, 0-27 (13.5 for a blank image)"),
]


def test_the_bigquery_schema_is_every_column_exactly_in_table_order():
    assert feature_schema.bigquery_schema() == [
        {"name": name, "type": bq_type, "mode": "REQUIRED", "description": description}
        for name, bq_type, description in EXPECTED
    ]


def test_a_field_carries_its_own_mode_and_nothing_else():
    field = Column("note", "STRING", "free text", mode="NULLABLE").bigquery_field()
    assert field == {"name": "note", "type": "STRING", "mode": "NULLABLE", "description": "free text"}
    assert list(field) == ["name", "type", "mode", "description"]


def test_the_table_names_and_the_feature_function_id():
    assert feature_schema.TABLE_NAME == "image_features"
    assert feature_schema.ENTITY_ID_COLUMN == "image_id"
    assert feature_schema.FEATURE_FUNCTION_ID == "fmnist-image-features/v1"
    assert tuple(name for name, _, _ in EXPECTED[4:]) == feature_schema.FEATURE_NAMES
