"""`trainer import-evaluation` pinned value by value: the request document (the dry run as a user runs it), the
refusals' messages, the gate's metadata, and slices beyond one batch sent over the wire in the API's batches."""

from __future__ import annotations

import json

import pytest

from contracts.dataset import CLASS_NAMES
from settings import load_config
from trainer import cli
from trainer.cloud.import_evaluation import (
    CLASSIFICATION_METRICS_SCHEMA,
    build_import,
    build_slices,
    gate_metadata,
    gated_against,
)
from trainer.errors import CommandError

MATRIX = [[3, 1], [0, 4]]
EVALUATION = {
    "metrics": {"accuracy": 0.875, "macro_f1": 1, "note": "text is not a metric", "flag": None},
    "class_names": ["cat", "dog"],
    "confusion_matrix": MATRIX,
    "dataset": {"version": "v-abc"},
}


@pytest.fixture
def dev():
    return load_config("dev", environ={})


def test_the_request_is_exactly_the_evaluation_of_that_version(dev):
    request = build_import(dev, "v7", EVALUATION)
    assert request.parent == f"{dev.names.parent_model_name}@v7"
    assert request.api_endpoint == "europe-west4-aiplatform.googleapis.com"
    assert request.model_evaluation == {
        "display_name": "test-set-v7",
        "metrics_schema_uri": CLASSIFICATION_METRICS_SCHEMA,
        "metrics": {
            "confusionMatrix": {
                "annotationSpecs": [{"id": "0", "displayName": "cat"}, {"id": "1", "displayName": "dog"}],
                "rows": [[3.0, 1.0], [0.0, 4.0]],
            }
        },
        # numbers only (the console's metadata is a Struct of the gate's figures), ints as floats
        "metadata": {"registry_version": "v7", "dataset_version": "v-abc", "accuracy": 0.875, "macro_f1": 1.0},
    }
    without_dataset = {k: v for k, v in EVALUATION.items() if k != "dataset"}
    assert build_import(dev, "v7", without_dataset).model_evaluation["metadata"]["dataset_version"] is None


def test_the_display_name_is_cut_to_the_apis_128_characters(dev):
    version = "v" * 200
    assert build_import(dev, version, EVALUATION).model_evaluation["display_name"] == ("test-set-" + version)[:128]


@pytest.mark.parametrize(
    "broken, message",
    [
        ({"metrics": None}, "evaluation.json of v7 has no 'metrics'; re-run `trainer export`"),
        ({"class_names": None}, "evaluation.json of v7 has no 'class_names'; re-run `trainer export`"),
        ({"confusion_matrix": [[1, 2]]}, "evaluation.json of v7: the confusion matrix is not 2x2"),
        ({"confusion_matrix": [[1, 2], [3]]}, "evaluation.json of v7: the confusion matrix is not 2x2"),
    ],
)
def test_a_broken_evaluation_is_refused_with_what_is_wrong(dev, broken, message):
    evaluation = {**EVALUATION, **broken}
    evaluation = {k: v for k, v in evaluation.items() if v is not None}
    with pytest.raises(CommandError) as refused:
        build_import(dev, "v7", evaluation)
    assert str(refused.value) == message


def test_the_champion_a_version_was_gated_against_is_the_one_its_last_promotion_replaced():
    from contracts.registry_index import parse_index

    def index(events):
        return parse_index({"versions": {}, "aliases": {}, "events": events}, "test")

    events = [
        {"action": "promote", "version": "v2", "previous": "v0"},
        {"action": "rollback", "version": "v2", "previous": "v9"},
        {"action": "promote", "version": "v3", "previous": "v2"},
        {"action": "promote", "version": "v2", "previous": "v1"},
        {"action": "promote", "version": "v4", "previous": None},
        {"action": "promote", "version": "v6", "previous": 7},  # not a version id: no report is stored under it
    ]
    assert gated_against(index(events), "v2") == "v1"  # the last promotion of v2
    assert gated_against(index(events), "v3") == "v2"
    assert gated_against(index(events), "v4") is None  # the first champion: no gate ran
    assert gated_against(index(events), "v5") is None
    assert gated_against(index(events), "v6") is None


def test_the_gate_metadata_names_decision_champion_report_and_the_champions_recall():
    report = {
        "decision": "promote",
        "champion": "v1",
        "sets": [
            {"gate_set": "official", "per_class": {"cat": {"champion_recall": 0.5}, "dog": {"champion_recall": 1}}},
            {"gate_set": "old"},
        ],
    }
    assert gate_metadata(report, "gs://m/r.json") == {
        "gate_decision": "promote",
        "gate_champion": "v1",
        "gate_report": "gs://m/r.json",
        "gate_champion_recall": {"official": {"cat": 0.5, "dog": 1}, "old": {}},
    }
    report["sets"][0]["per_class"]["cat"] |= {"candidate_recall": 0.25, "candidate_correct": 1, "images": 4}
    del report["sets"][0]["per_class"]["dog"]
    (cat,) = build_slices(report)  # the set without rows gives none
    assert cat["metrics"]["confidenceMetrics"][0]["falseNegativeCount"] == 3
    # a report without gate sets (the gate had none to score): no slices, no recall
    assert build_slices({"decision": "promote", "champion": "v1"}) == []
    assert gate_metadata({"decision": "promote", "champion": "v1"}, "u")["gate_champion_recall"] == {}


def test_the_dry_run_prints_the_evaluation_and_its_slices_and_sends_nothing(gcs_settings, monkeypatch, capsys):
    import storage
    from trainer.models.gate_sets import report_base
    from trainer.models.registry import ModelRegistry

    monkeypatch.setenv("FMNIST_BUCKET_PREFIX", gcs_settings.bucket_prefix)
    registry = ModelRegistry.from_settings(gcs_settings)
    registry.paired_gate = None
    v1 = registry.register({"model.onnx": b"1"}, {"accuracy": 0.9}, "custom", dataset_version=None)
    registry.promote(v1)
    v2 = registry.register({"model.onnx": b"2"}, {"accuracy": 0.91}, "custom", dataset_version=None)
    registry.promote(v2)
    storage.write_text(storage.join(registry.version_uri(v2), "evaluation.json"), json.dumps(EVALUATION))
    report = {
        "decision": "promote",
        "champion": v1,
        "sets": [
            {
                "gate_set": "official",
                "per_class": {
                    "cat": {"champion_recall": 0.5, "candidate_recall": 0.75, "candidate_correct": 3, "images": 4}
                },
            }
        ],
    }
    storage.write_text(report_base(registry.root, v2, v1) + ".json", json.dumps(report))
    monkeypatch.setenv("VERTEX_AI_EMULATOR_HOST", "http://127.0.0.1:9")  # nothing listens: nothing may be sent
    assert cli.main(["--env", "dev", "import-evaluation", "--dry-run"]) == 0  # the champion by default
    out = capsys.readouterr().out
    printed = json.loads(out)
    assert out == json.dumps(printed, indent=2) + "\n"  # indented for people to read
    expected = build_import(gcs_settings, v2, EVALUATION)
    expected.model_evaluation["metadata"].update(gate_metadata(report, report_base(registry.root, v2, v1) + ".json"))
    assert printed == {**expected.__dict__, "model_evaluation_slices": build_slices(report)}
    assert printed["model_evaluation"]["metadata"]["gate_champion"] == v1


def test_a_version_exported_without_an_evaluation_is_refused_with_its_path(gcs_settings, monkeypatch, capsys):
    from trainer.models.registry import ModelRegistry

    monkeypatch.setenv("FMNIST_BUCKET_PREFIX", gcs_settings.bucket_prefix)
    registry = ModelRegistry.from_settings(gcs_settings)
    version = registry.register({"model.onnx": b"1"}, {"accuracy": 0.9}, "custom", dataset_version=None)
    assert cli.main(["--env", "dev", "import-evaluation", version, "--dry-run"]) == 1
    uri = f"{registry.version_uri(version)}/evaluation.json"
    assert f"error: {uri} is missing: version {version} was not exported with an evaluation" in (
        capsys.readouterr().err.splitlines()
    )


def test_more_slices_than_one_request_takes_go_in_batches_of_50_over_the_wire(tmp_path, monkeypatch):
    """BatchImportModelEvaluationSlices takes at most 50 slices: 120 rows (two gate sets of 60 classes) are sent as
    50, 50 and 20, under the evaluation, and every name the API returned is returned."""
    from trainer.cloud import endpoints
    from trainer.cloud.import_evaluation import send_slices
    from twin import metadata, vertex

    classes = [f"class-{i}" for i in range(60)]
    row = {"champion_recall": 1.0, "candidate_recall": 0.5, "candidate_correct": 1, "images": 2}
    report = {"sets": [{"gate_set": name, "per_class": dict.fromkeys(classes, row)} for name in ("a", "b")]}
    slices = build_slices(report)
    evaluation = "projects/p/locations/europe-west4/models/m@1/evaluations/1"
    with metadata.serve("p", "pipelines@x.iam.gserviceaccount.com") as meta, vertex.serve() as fake:
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(meta.service_account_file(tmp_path / "sa.json")))
        monkeypatch.setenv(endpoints.VERTEX_AI, fake.endpoint)
        fake.seed(evaluation)
        names = send_slices(evaluation, slices, "europe-west4-aiplatform.googleapis.com")
        batches = fake.sent("POST", ":batchImport")
    assert [len(b.body["modelEvaluationSlices"]) for b in batches] == [50, 50, 20]
    assert {b.path for b in batches} == {f"{evaluation}/slices"}
    sent = [s["slice"]["sliceSpec"]["configs"] for b in batches for s in b.body["modelEvaluationSlices"]]
    assert [(c["gate_set"]["value"]["stringValue"], c["class"]["value"]["stringValue"]) for c in sent] == [
        (name, c) for name in ("a", "b") for c in classes
    ]
    assert len(names) == 120 and len(set(names)) == 120 and all(n.startswith(f"{evaluation}/slices/") for n in names)


def test_class_names_are_the_datasets_ten_in_the_real_evaluation(dev):
    matrix = [[1 if i == j else 0 for j in range(10)] for i in range(10)]
    evaluation = {"metrics": {}, "class_names": list(CLASS_NAMES), "confusion_matrix": matrix}
    specs = build_import(dev, "v1", evaluation).model_evaluation["metrics"]["confusionMatrix"]["annotationSpecs"]
    assert specs[9] == {"id": "9", "displayName": CLASS_NAMES[9]}


def test_on_google_cloud_both_imports_go_to_the_regional_endpoint(dev, monkeypatch):
    """Without the emulator the ModelServiceClient is built for `<region>-aiplatform.googleapis.com` (the global
    endpoint does not hold a regional model); the client is recorded, not reached (Google is not reachable here)."""
    from types import SimpleNamespace

    from google.cloud import aiplatform_v1

    from trainer.cloud import endpoints
    from trainer.cloud.import_evaluation import send, send_slices

    monkeypatch.delenv(endpoints.VERTEX_AI, raising=False)
    built: list[dict] = []

    class Client:
        def __init__(self, **kwargs):
            built.append(kwargs)

        def list_model_evaluations(self, parent):
            return []

        def list_model_evaluation_slices(self, parent):
            return []

        def import_model_evaluation(self, request):
            return SimpleNamespace(name=f"{request.parent}/evaluations/1")

        def batch_import_model_evaluation_slices(self, request):
            return SimpleNamespace(imported_model_evaluation_slices=[f"{request.parent}/slices/1"])

    sdk = SimpleNamespace(**{name: getattr(aiplatform_v1, name) for name in dir(aiplatform_v1) if name[0].isupper()})
    sdk.ModelServiceClient = Client
    request = build_import(dev, "v7", EVALUATION)
    imported = send(request, aiplatform_v1=sdk)
    report = {
        "sets": [{"gate_set": "a", "per_class": {"cat": {"candidate_recall": 1, "candidate_correct": 1, "images": 1}}}]
    }
    names = send_slices(imported.name, build_slices(report), request.api_endpoint, aiplatform_v1=sdk)
    assert names == [f"{dev.names.parent_model_name}@v7/evaluations/1/slices/1"]
    assert built == [{"client_options": {"api_endpoint": "europe-west4-aiplatform.googleapis.com"}}] * 2


def test_the_local_target_is_refused_without_dry_run_with_the_fix(settings, monkeypatch, capsys):
    import storage
    from trainer.models.registry import ModelRegistry

    monkeypatch.setenv("FMNIST_STORAGE_ROOT", settings.storage_root)
    registry = ModelRegistry.from_settings(settings)
    version = registry.register({"model.onnx": b"1"}, {"accuracy": 0.9}, "custom", dataset_version=None)
    storage.write_text(storage.join(registry.version_uri(version), "evaluation.json"), json.dumps(EVALUATION))
    assert cli.main(["import-evaluation", version]) == 1
    assert (
        "error: `import-evaluation` talks to Vertex AI: use a gcp environment (--env dev) with credentials "
        "(`gcloud auth application-default login`); add --dry-run to see the requests only"
    ) in capsys.readouterr().err.splitlines()


def test_the_command_on_google_cloud_sends_the_evaluation_and_slices_to_the_regional_endpoint(
    gcs_settings, monkeypatch, capsys
):
    """`import-evaluation champion` with no emulator named: both clients are built for the region's endpoint (the
    ModelServiceClient is recorded, not reached: Google is not reachable here)."""
    from types import SimpleNamespace

    from google.cloud import aiplatform_v1

    import storage
    from trainer.cloud import endpoints
    from trainer.cloud.import_evaluation import run
    from trainer.models.gate_sets import report_base
    from trainer.models.registry import ModelRegistry

    registry = ModelRegistry.from_settings(gcs_settings)
    registry.paired_gate = None
    v1 = registry.register({"model.onnx": b"1"}, {"accuracy": 0.9}, "custom", dataset_version=None)
    registry.promote(v1)
    v2 = registry.register({"model.onnx": b"2"}, {"accuracy": 0.91}, "custom", dataset_version=None)
    registry.promote(v2)
    storage.write_text(storage.join(registry.version_uri(v2), "evaluation.json"), json.dumps(EVALUATION))
    row = {"champion_recall": 0.5, "candidate_recall": 0.75, "candidate_correct": 3, "images": 4}
    report = {"decision": "promote", "champion": v1, "sets": [{"gate_set": "official", "per_class": {"cat": row}}]}
    storage.write_text(report_base(registry.root, v2, v1) + ".json", json.dumps(report))
    monkeypatch.delenv(endpoints.VERTEX_AI, raising=False)
    built: list[dict] = []

    class Client:
        def __init__(self, **kwargs):
            built.append(kwargs)

        def list_model_evaluations(self, parent):
            return []

        def list_model_evaluation_slices(self, parent):
            return []

        def import_model_evaluation(self, request):
            return SimpleNamespace(name=f"{request.parent}/evaluations/1")

        def batch_import_model_evaluation_slices(self, request):
            return SimpleNamespace(imported_model_evaluation_slices=[f"{request.parent}/slices/1"])

    monkeypatch.setattr(aiplatform_v1, "ModelServiceClient", Client)
    assert run(SimpleNamespace(ref="champion", dry_run=False), gcs_settings) == 0
    assert built == [{"client_options": {"api_endpoint": "europe-west4-aiplatform.googleapis.com"}}] * 2
    evaluation = f"{gcs_settings.names.parent_model_name}@{v2}/evaluations/1"
    assert capsys.readouterr().out == (
        f"imported the evaluation of {v2} as {evaluation}\nimported 1 per-class gate slices (against {v1}) under "
        f"{evaluation}\n"
    )
