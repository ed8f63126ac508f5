"""`python -m trainer import-evaluation`: a registry version's test-set evaluation into the Vertex AI Model Registry.

Why: `deploy-model` mirrors our registry's versions into one Vertex AI parent model; importing the evaluation
(accuracy, macro precision/recall/F1, the confusion matrix) puts the numbers the quality gate used beside that
version in the console, as a model evaluation with the classification metrics schema. The request is built by a
pure function (tests assert it and bind it to the SDK's signature); only `send` talks to Vertex AI.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import storage
from contracts.layout import CHAMPION, ModelFiles
from trainer.cloud import endpoints
from trainer.cloud.vertex import require_gcp
from trainer.errors import CommandError
from trainer.models.registry import ModelRegistry

CLASSIFICATION_METRICS_SCHEMA = "gs://google-cloud-aiplatform/schema/modelevaluation/classification_metrics_1.0.0.yaml"


@dataclass
class ImportEvaluationRequest:
    """Keyword arguments of ModelServiceClient.import_model_evaluation (model_evaluation as a ModelEvaluation dict)."""

    parent: str
    model_evaluation: dict
    api_endpoint: str


def build_import(settings, version: str, evaluation: dict) -> ImportEvaluationRequest:
    """The evaluation of `version`, addressed to that version of the parent model (`<parent>@<version alias>`)."""
    try:
        metrics, names, matrix = evaluation["metrics"], evaluation["class_names"], evaluation["confusion_matrix"]
    except KeyError as exc:
        raise CommandError(f"{ModelFiles.EVALUATION} of {version} has no {exc}; re-run `trainer export`") from None
    if len(matrix) != len(names) or any(len(row) != len(names) for row in matrix):
        raise CommandError(
            f"{ModelFiles.EVALUATION} of {version}: the confusion matrix is not {len(names)}x{len(names)}"
        )
    dataset = evaluation.get("dataset", {})
    return ImportEvaluationRequest(
        parent=f"{settings.names.parent_model_name}@{version}",
        model_evaluation={
            "display_name": f"test-set-{version}"[:128],
            "metrics_schema_uri": CLASSIFICATION_METRICS_SCHEMA,
            "metrics": {
                "confusionMatrix": {
                    "annotationSpecs": [{"id": str(i), "displayName": name} for i, name in enumerate(names)],
                    "rows": [[float(count) for count in row] for row in matrix],
                },
            },
            "metadata": {
                "registry_version": version,
                "dataset_version": dataset.get("version"),
                **{k: float(v) for k, v in metrics.items() if isinstance(v, int | float)},
            },
        },
        api_endpoint=settings.names.aiplatform_endpoint,
    )


def to_sdk(request: ImportEvaluationRequest, aiplatform_v1):
    """The request as the SDK's ImportModelEvaluationRequest (proto-plus converts the nested dicts)."""
    from google.protobuf import json_format, struct_pb2

    evaluation = dict(request.model_evaluation)
    metrics = json_format.ParseDict(evaluation.pop("metrics"), struct_pb2.Value())
    metadata = json_format.ParseDict(evaluation.pop("metadata"), struct_pb2.Value())
    return aiplatform_v1.ImportModelEvaluationRequest(
        parent=request.parent,
        model_evaluation=aiplatform_v1.ModelEvaluation(**evaluation, metrics=metrics, metadata=metadata),
    )


def send(request: ImportEvaluationRequest, aiplatform_v1=None):
    """Import the evaluation, unless that version already holds one of the same name: Vertex AI Pipelines may
    retry the step, and Vertex AI would keep both (an import is not keyed by name)."""
    if aiplatform_v1 is None:
        from google.cloud import aiplatform_v1
    client = aiplatform_v1.ModelServiceClient(**endpoints.gapic_client_kwargs(request.api_endpoint))
    name = request.model_evaluation["display_name"]
    for existing in client.list_model_evaluations(parent=request.parent):
        if existing.display_name == name:
            print(f"note: {request.parent} already holds evaluation {name!r}; not imported again", file=sys.stderr)
            return existing
    return client.import_model_evaluation(request=to_sdk(request, aiplatform_v1))


# ---- command line -----------------------------------------------------------------------------------------------


def add_arguments(parser) -> None:
    parser.add_argument("ref", nargs="?", default=CHAMPION, help="registry version id or alias (default: champion)")
    parser.add_argument("--dry-run", action="store_true", help="print the request, send nothing")


def run(args, settings) -> int:
    registry = ModelRegistry.from_settings(settings)
    version = registry.resolve(args.ref)
    uri = storage.join(registry.version_uri(version), ModelFiles.EVALUATION)
    try:
        evaluation = json.loads(storage.read_text(uri))
    except storage.NotFound:
        raise CommandError(f"{uri} is missing: version {version} was not exported with an evaluation") from None
    request = build_import(settings, version, evaluation)
    if args.dry_run:
        print(json.dumps(request.__dict__, indent=2))
        return 0
    require_gcp(settings, "import-evaluation")
    imported = send(request)
    print(f"imported the evaluation of {version} as {imported.name}")
    return 0
