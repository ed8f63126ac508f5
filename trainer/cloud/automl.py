"""`python -m trainer automl`: a Vertex AI AutoML image classifier as the baseline next to the custom trainer.

Why a thin adapter: the requests (dataset import, training pipeline, evaluation read-back) are built by pure
functions the tests check here; only `run` talks to Vertex AI, and it needs the gcp target and credentials.
The model lands in the same registry as the custom ones (`source: automl`), so `registry list` and the quality
gate compare both on the same test set (the `ml_use` labels written by `export-images`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from contracts.dataset import CLASS_NAMES
from trainer.data.export_images import ML_USE_LABEL
from trainer.errors import CommandError

IMPORT_SCHEMA = (
    "gs://google-cloud-aiplatform/schema/dataset/ioformat/image_classification_single_label_io_format_1.0.0.yaml"
)
REPORTED_THRESHOLD = 0.5  # the confidence threshold at which the Vertex AI console reports precision and recall


@dataclass
class AutoMLRequest:
    """Everything sent to Vertex AI, as plain keyword arguments of the SDK calls."""

    init: dict
    dataset: dict
    job: dict
    run: dict
    labels: dict = field(default_factory=dict)


def build_request(settings, import_uri: str, dataset_version: str, *, budget: int | None = None) -> AutoMLRequest:
    """The SDK keyword arguments for one AutoML run on one dataset version."""
    budget = budget or settings.vertex.automl_budget_milli_node_hours
    if not 8000 <= budget <= 800000:
        raise CommandError(
            f"AutoML budget {budget} milli node hours is outside 8,000-800,000 "
            "(the CLOUD model type's range); set vertex.automl_budget_milli_node_hours"
        )
    name = f"fmnist-automl-{dataset_version}"
    labels = {"dataset_version": dataset_version.lower(), "source": "automl"}
    names = settings.names
    kms = names.kms_key_name
    return AutoMLRequest(
        init={
            "project": settings.project_id,
            "location": settings.region,
            "staging_bucket": names.staging_uri,
            "experiment": settings.vertex.experiment,
            "experiment_tensorboard": settings.vertex.tensorboard or False,  # never the SDK's default TensorBoard
        },
        dataset={
            "display_name": f"fmnist-{dataset_version}",
            "gcs_source": [import_uri],
            "import_schema_uri": IMPORT_SCHEMA,
            "labels": labels,
            **({"encryption_spec_key_name": kms} if kms else {}),
        },
        job={
            "display_name": name,
            "prediction_type": "classification",
            "multi_label": False,
            "model_type": "CLOUD",
            "labels": labels,
            **({"training_encryption_spec_key_name": kms, "model_encryption_spec_key_name": kms} if kms else {}),
        },
        run={
            "training_filter_split": f"labels.{ML_USE_LABEL}=training",
            "validation_filter_split": f"labels.{ML_USE_LABEL}=validation",
            "test_filter_split": f"labels.{ML_USE_LABEL}=test",
            "budget_milli_node_hours": budget,
            "model_display_name": "fmnist-automl",
            "model_labels": labels,
            "sync": True,
        },
        labels=labels,
    )


def metrics_from_evaluation(evaluation: dict) -> dict:
    """Our registry metrics from an AutoML classification evaluation (schema classification_metrics_1.0.0).

    accuracy comes from the confusion matrix (top-1 correct / all); AutoML's headline precision/recall are kept with
    the confidence threshold they were reported at, because they drop every prediction scored below it.
    """
    out: dict = {"source_metrics": "vertex-automl-evaluation"}
    matrix = (evaluation.get("confusionMatrix") or {}).get("rows")
    if matrix:
        total = sum(sum(row) for row in matrix)
        out["accuracy"] = sum(matrix[i][i] for i in range(len(matrix))) / total if total else None
        recalls = [row[i] / sum(row) if sum(row) else 0.0 for i, row in enumerate(matrix)]
        columns = [sum(row[j] for row in matrix) for j in range(len(matrix))]
        precisions = [matrix[j][j] / columns[j] if columns[j] else 0.0 for j in range(len(matrix))]
        out["macro_recall"] = sum(recalls) / len(recalls)
        out["macro_precision"] = sum(precisions) / len(precisions)
        f1 = [2 * p * r / (p + r) if p + r else 0.0 for p, r in zip(precisions, recalls, strict=True)]
        out["macro_f1"] = sum(f1) / len(f1)
    points = evaluation.get("confidenceMetrics") or []
    if points:
        at = min(points, key=lambda p: abs(float(p.get("confidenceThreshold", 0)) - REPORTED_THRESHOLD))
        out["automl_precision"] = float(at.get("precision", 0.0))
        out["automl_recall"] = float(at.get("recall", 0.0))
        out["automl_confidence_threshold"] = float(at.get("confidenceThreshold", 0.0))
        if "precisionAt1" in at:
            out["automl_precision_at_1"] = float(at["precisionAt1"])
    for key in ("auPrc", "logLoss"):
        if key in evaluation:
            out["automl_" + key.lower()] = float(evaluation[key])
    return out


def _find_or_create_dataset(aiplatform, request: AutoMLRequest):
    existing = aiplatform.ImageDataset.list(filter=f'display_name="{request.dataset["display_name"]}"')
    if existing:
        return existing[0]
    return aiplatform.ImageDataset.create(**request.dataset)


def add_arguments(parser) -> None:
    parser.add_argument("--version", help="dataset version (default: the latest ingested)")
    parser.add_argument("--budget", type=int, help="training budget in milli node hours (default from config)")
    parser.add_argument("--dry-run", action="store_true", help="print the requests, send nothing")


def run(args, settings) -> int:
    import json

    from trainer.data.export_images import export_images

    if settings.target != "gcp" and not args.dry_run:
        raise CommandError(
            "AutoML runs only on Vertex AI: use a gcp environment (--env dev) with credentials; "
            "`python -m trainer automl --dry-run` shows the requests without sending them"
        )
    import_uri, summary, _ = export_images(settings, args.version)
    request = build_request(settings, import_uri, summary["dataset_version"], budget=args.budget)
    if args.dry_run:
        print(json.dumps(request.__dict__, indent=2, sort_keys=True))
        return 0
    from google.cloud import aiplatform

    from trainer.models.registry import register_external_version

    aiplatform.init(**request.init)
    dataset = _find_or_create_dataset(aiplatform, request)
    started = time.time()
    aiplatform.start_run(f"automl-{int(started)}")
    aiplatform.log_params(
        {
            "source": "automl",
            "dataset_version": summary["dataset_version"],
            "budget_milli_node_hours": request.run["budget_milli_node_hours"],
        }
    )
    job = aiplatform.AutoMLImageTrainingJob(**request.job)
    model = job.run(dataset=dataset, **request.run)
    evaluation = model.list_model_evaluations()[0].to_dict().get("metrics", {})
    metrics = metrics_from_evaluation(evaluation)
    aiplatform.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float)})
    aiplatform.end_run()
    version = register_external_version(
        settings,
        source="automl",
        metrics=metrics,
        dataset_version=summary["dataset_version"],
        extra={
            "vertex_model": model.resource_name,
            "class_names": list(CLASS_NAMES),
            "training_seconds": round(time.time() - started),
        },
    )
    print(f"AutoML model {model.resource_name} registered as {version} (candidate): {json.dumps(metrics)}")
    return 0
