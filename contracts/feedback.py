"""Ground truth rows: one row per image for a (sampled) prediction and one per label posted for it.

Why here: the service writes these rows (service/feedback.py: JSON log lines on Cloud Run, a sqlite table
locally), infra declares the BigQuery table the log sink fills and the flat view Vertex AI Model Monitoring v2
reads (infra/components/feedback.py), and tests read both; one column list keeps the three in step.

Why a label row repeats the prediction: only a sample of predictions is logged (logging every one costs log
ingestion), but every label is, so a label row joined live in the service carries the version and predicted class
it was judged against, and accuracy in BigQuery needs no prediction row. A label whose prediction the service no
longer holds (another instance served it, or it was evicted) is logged with empty prediction columns and joins the
sampled prediction rows by request id and image index, if there is one.

Why FLOAT for whole numbers in the sink's table: a structured log line's jsonPayload is a protobuf Struct, whose
numbers are all doubles, so Cloud Logging writes them as FLOAT columns; the view casts them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PREDICTION, LABEL = "prediction", "label"
EVENT_FIELD = "feedback_event"  # the JSON key that marks a log line as a ground-truth row (the sink's filter)
FEEDBACK_LOGGER = "fmnist.feedback"  # the service logger whose lines are the rows

ColumnType = Literal["STRING", "INT64", "FLOAT64", "TIMESTAMP"]


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    description: str


# The view's columns, in order: the shape Model Monitoring v2 reads (prediction_fields: predicted_class,
# ground_truth_fields: label; timestamp_field: logged_at).
COLUMNS: tuple[Column, ...] = (
    Column(EVENT_FIELD, "STRING", "prediction (a sampled prediction) or label (ground truth posted for one)"),
    Column("request_id", "STRING", "the reply's metadata.request_id, the key labels are posted against"),
    Column("image_index", "INT64", "the image's position in its request"),
    Column("model_version", "STRING", "the registry version that answered (empty on an unjoined label)"),
    Column("predicted_class", "INT64", "the class id the model answered (empty on an unjoined label)"),
    Column("confidence", "FLOAT64", "the answered class's probability (prediction rows)"),
    Column("label", "INT64", "the true class id posted as ground truth (label rows)"),
    Column("poster", "STRING", "the label poster's bucket (label rows): who vouched for the label, pseudonymous"),
    Column("logged_at", "TIMESTAMP", "when the row was written (UTC)"),
)
COLUMN_NAMES = tuple(column.name for column in COLUMNS)
TABLE = "feedback_rows"  # the sqlite table locally; the BigQuery view on Google Cloud

# On Google Cloud (infra/components/ground_truth.py): the dataset the log sink fills, the table Cloud Logging
# writes Cloud Run's stdout into (use_partitioned_tables: no date suffix), and the view above it named TABLE.
BIGQUERY_DATASET = "fmnist_ground_truth"
SINK_TABLE = "run_googleapis_com_stdout"
STDOUT_LOG = "run.googleapis.com%2Fstdout"


def sink_filter(project: str, service: str) -> str:
    """The log sink's filter: the Cloud Run service's stdout lines that are ground-truth rows, nothing else (the
    request lines stay in Cloud Logging only)."""
    return (
        f'resource.type="cloud_run_revision" AND resource.labels.service_name="{service}" AND '
        f'logName="projects/{project}/logs/{STDOUT_LOG}" AND jsonPayload.{EVENT_FIELD}:*'
    )


def sink_table_schema() -> list[dict[str, object]]:
    """The columns of SINK_TABLE the view reads, as Cloud Logging types them (Logging adds the LogEntry's other
    columns itself when it first writes)."""
    payload = [
        {"name": c.name, "type": sink_payload_type(c), "mode": "NULLABLE", "description": c.description}
        for c in COLUMNS
    ]
    return [
        {"name": "timestamp", "type": "TIMESTAMP", "mode": "NULLABLE", "description": "the log entry's time"},
        {"name": "jsonPayload", "type": "RECORD", "mode": "NULLABLE", "fields": payload},
    ]


SQLITE_TYPES = {"STRING": "TEXT", "INT64": "INTEGER", "FLOAT64": "REAL", "TIMESTAMP": "TEXT"}


def sqlite_schema() -> str:
    """CREATE TABLE for the local rows (same columns, same order)."""
    columns = ", ".join(f"{c.name} {SQLITE_TYPES[c.type]}" for c in COLUMNS)
    return f"CREATE TABLE IF NOT EXISTS {TABLE} ({columns})"


def sink_payload_type(column: Column) -> str:
    """The BigQuery type Cloud Logging gives this column inside jsonPayload (module docstring: numbers are FLOAT)."""
    return {"INT64": "FLOAT", "FLOAT64": "FLOAT", "STRING": "STRING", "TIMESTAMP": "STRING"}[column.type]


def view_select(source: str) -> str:
    """The view's SQL over the sink's table `source` (project.dataset.table): one typed, flat row per log row."""
    casts = []
    for column in COLUMNS:
        field = f"jsonPayload.{column.name}"
        if column.type == "INT64":
            casts.append(f"CAST({field} AS INT64) AS {column.name}")
        elif column.type == "TIMESTAMP":
            casts.append(f"TIMESTAMP({field}) AS {column.name}")
        else:
            casts.append(f"{field} AS {column.name}")
    return f"SELECT {', '.join(casts)} FROM `{source}` WHERE jsonPayload.{EVENT_FIELD} IS NOT NULL"


# The label route's refusals (a closed set, what a public reply may show): never a 5xx for a caller's label.
LABEL_REASON_CODES = (
    "unknown_request_id",  # 404: never recorded here, evicted by newer predictions, or served by another instance
    "prediction_expired",  # 410: older than FEEDBACK_MAX_AGE_S
    "already_labelled",  # 409: a label for that prediction was counted already
    "label_count_mismatch",  # 400: one label per image of the request, in order
    "invalid_label",  # 400: a class id or name the version does not have
    "invalid_feedback",  # 400: not the JSON object the route takes
    "poster_not_allowed",  # 403: FEEDBACK_POSTERS is set and the caller is not in it
)
