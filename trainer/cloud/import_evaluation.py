"""`python -m trainer import-evaluation`: a registry version's test-set evaluation into the Vertex AI Model Registry.

Why: `deploy-model` mirrors our registry's versions into one Vertex AI parent model; importing the evaluation
(accuracy, macro precision/recall/F1, the confusion matrix) puts the numbers the quality gate used beside that
version in the console, as a model evaluation with the classification metrics schema. The paired gate's per-class
numbers (trainer/models/gate.py: each class's images and recall on the pinned gate set) follow as that evaluation's
slices, one per class and gate set, so a drop in one class is visible beside the model, not only in the bucket's
gate report. The requests are built by pure functions (tests assert them and send them with the real SDK to the
twin's Vertex AI); only `send` and `send_slices` talk to Vertex AI.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import storage
from contracts.layout import CHAMPION, ModelFiles
from contracts.registry_index import RegistryIndex
from trainer.cloud import endpoints
from trainer.cloud.vertex import require_gcp
from trainer.errors import CommandError
from trainer.models.gate_sets import report_base
from trainer.models.registry import ModelRegistry

CLASSIFICATION_METRICS_SCHEMA = "gs://google-cloud-aiplatform/schema/modelevaluation/classification_metrics_1.0.0.yaml"
SLICE_BATCH_LIMIT = 50  # BatchImportModelEvaluationSlices takes at most 50 slices per request


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


def build_slices(report: dict) -> list[dict]:
    """The gate report's per-class rows as ModelEvaluationSlice dicts: a custom slice (`slice_spec`: the class and
    the gate set) whose classification metrics are the candidate's top-1 recall and its counts there. The
    champion's recall per class rides in the evaluation's metadata (`gate_metadata`): a slice has no free field."""
    slices = []
    for gate_set in report.get("sets", []):
        rows = gate_set.get("per_class") or {}  # none in a report written before they existed: no slices
        for name, row in rows.items():
            recall = float(row["candidate_recall"])
            slices.append(
                {
                    "slice_": {
                        "dimension": "slice",
                        "value": name,
                        "slice_spec": {
                            "configs": {
                                "class": {"value": {"string_value": name}},
                                "gate_set": {"value": {"string_value": gate_set["gate_set"]}},
                            }
                        },
                    },
                    "metrics_schema_uri": CLASSIFICATION_METRICS_SCHEMA,
                    "metrics": {
                        "confidenceMetrics": [
                            {
                                "confidenceThreshold": 0.0,
                                "maxPredictions": 1,  # the served class is the top one
                                "recall": recall,
                                "recallAt1": recall,
                                "truePositiveCount": int(row["candidate_correct"]),
                                "falseNegativeCount": int(row["images"]) - int(row["candidate_correct"]),
                            }
                        ]
                    },
                }
            )
    return slices


def gate_metadata(report: dict, report_uri: str) -> dict:
    """What the evaluation's metadata says of the gate: its decision, the champion it compared with, where the full
    report is, and the champion's recall per class on each gate set (the slices carry the candidate's)."""
    return {
        "gate_decision": report["decision"],
        "gate_champion": report["champion"],
        "gate_report": report_uri,
        "gate_champion_recall": {
            s["gate_set"]: {name: row["champion_recall"] for name, row in s.get("per_class", {}).items()}
            for s in report.get("sets", [])
        },
    }


def gated_against(index: RegistryIndex, version: str) -> str | None:
    """The champion `version` replaced when it was last promoted (the pair its gate report is stored under)."""
    for event in reversed(index.events):
        if event.get("action") == "promote" and event.get("version") == version:
            previous = event.get("previous")
            return previous if isinstance(previous, str) else None
    return None


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


def send_slices(evaluation: str, slices: list[dict], api_endpoint: str, aiplatform_v1=None) -> list[str]:
    """Import `slices` under the evaluation named `evaluation`, in batches the API accepts; their names."""
    if aiplatform_v1 is None:
        from google.cloud import aiplatform_v1
    from google.protobuf import json_format, struct_pb2

    client = aiplatform_v1.ModelServiceClient(**endpoints.gapic_client_kwargs(api_endpoint))
    imported = [one.name for one in client.list_model_evaluation_slices(parent=evaluation)]
    if imported:  # a retried step: its first attempt imported them (Vertex AI would keep both)
        print(f"note: {evaluation} already holds {len(imported)} slices; not imported again", file=sys.stderr)
        return imported
    messages = [
        aiplatform_v1.ModelEvaluationSlice(
            slice_=one["slice_"],
            metrics_schema_uri=one["metrics_schema_uri"],
            metrics=json_format.ParseDict(one["metrics"], struct_pb2.Value()),
        )
        for one in slices
    ]
    names: list[str] = []
    for start in range(0, len(messages), SLICE_BATCH_LIMIT):
        reply = client.batch_import_model_evaluation_slices(
            request=aiplatform_v1.BatchImportModelEvaluationSlicesRequest(
                parent=evaluation, model_evaluation_slices=messages[start : start + SLICE_BATCH_LIMIT]
            )
        )
        names.extend(reply.imported_model_evaluation_slices)
    return names


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
    champion = gated_against(registry.read_index(), version)
    report = registry.gate_report(version, champion)
    slices = build_slices(report) if report else []
    if report:
        uri = report_base(registry.root, version, champion) + ".json"
        request.model_evaluation["metadata"].update(gate_metadata(report, uri))
    if args.dry_run:
        print(json.dumps({**request.__dict__, "model_evaluation_slices": slices}, indent=2))
        return 0
    require_gcp(settings, "import-evaluation")
    imported = send(request)
    print(f"imported the evaluation of {version} as {imported.name}")
    if not slices:
        print(
            f"no per-class gate rows for {version} (a first champion, no paired gate, or a report from before the "
            "rows): the evaluation is imported without slices"
        )
        return 0
    names = send_slices(imported.name, slices, request.api_endpoint)
    print(f"imported {len(names)} per-class gate slices (against {champion}) under {imported.name}")
    return 0
