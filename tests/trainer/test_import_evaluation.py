"""Importing a version's evaluation into the Vertex AI Model Registry: the request, built from a real evaluation
file and converted to the installed SDK's ImportModelEvaluationRequest offline."""

import inspect
import json
from types import SimpleNamespace

import numpy as np
import pytest
from google.cloud import aiplatform_v1
from google.protobuf import json_format

from contracts.dataset import CLASS_NAMES
from settings import load_config
from trainer.cloud.import_evaluation import CLASSIFICATION_METRICS_SCHEMA, build_import, to_sdk
from trainer.errors import CommandError
from trainer.models.evaluate import classification_report, write_evaluation


@pytest.fixture
def dev():
    return load_config("dev", environ={})


@pytest.fixture
def evaluation(tmp_path) -> dict:
    """evaluation.json as `trainer export` writes it, for 500 predictions of which about 80 % are right."""
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 10, 500)
    y_pred = np.where(rng.random(500) < 0.8, y_true, rng.integers(0, 10, 500))
    write_evaluation(str(tmp_path), classification_report(y_true, y_pred, list(CLASS_NAMES)), {"version": "v-abc"})
    return json.loads((tmp_path / "evaluation.json").read_text())


def test_the_evaluation_goes_to_that_version_of_the_parent_model(dev, evaluation):
    request = build_import(dev, "v20261201-000000-abcd", evaluation)
    assert request.parent == (
        "projects/fmnist-mlops-dev/locations/europe-west4/models/fmnist-classifier@v20261201-000000-abcd"
    )
    body = request.model_evaluation
    assert body["metrics_schema_uri"] == CLASSIFICATION_METRICS_SCHEMA
    matrix = body["metrics"]["confusionMatrix"]
    assert [s["displayName"] for s in matrix["annotationSpecs"]] == list(CLASS_NAMES)
    assert sum(map(sum, matrix["rows"])) == 500
    assert body["metadata"]["accuracy"] == pytest.approx(evaluation["metrics"]["accuracy"])
    assert body["metadata"]["dataset_version"] == "v-abc"
    assert request.api_endpoint == "europe-west4-aiplatform.googleapis.com"


def test_the_request_converts_to_the_sdks_message_and_binds_to_the_client(dev, evaluation):
    sdk = to_sdk(build_import(dev, "v1", evaluation), aiplatform_v1)
    assert isinstance(sdk, aiplatform_v1.ImportModelEvaluationRequest)
    metrics = json_format.MessageToDict(aiplatform_v1.ModelEvaluation.pb(sdk.model_evaluation))["metrics"]
    assert len(metrics["confusionMatrix"]["rows"]) == 10
    inspect.signature(aiplatform_v1.ModelServiceClient.import_model_evaluation).bind(None, request=sdk)


def test_an_evaluation_without_a_confusion_matrix_is_refused_with_the_fix(dev, evaluation):
    del evaluation["confusion_matrix"]
    with pytest.raises(CommandError, match="re-run `trainer export`"):
        build_import(dev, "v1", evaluation)


def test_a_retried_import_over_the_wire_imports_nothing_more(dev, evaluation, monkeypatch, capsys, tmp_path):
    """Vertex AI Pipelines may retry import-evaluation: the real GAPIC client against the twin's Vertex AI, twice;
    the second run finds the evaluation of that version by its display name and imports nothing."""
    from google.cloud import aiplatform

    from trainer.cloud import endpoints
    from trainer.cloud.import_evaluation import send
    from twin import metadata
    from twin.vertex import vertex_over_the_wire

    version = "v20261201-000000-abcd"
    parent = dev.names.parent_model_name
    with (
        vertex_over_the_wire(dev.project_id, dev.region) as fake,
        metadata.serve(dev.project_id, "pipelines@example.iam.gserviceaccount.com") as identity,
    ):
        # a key whose token URI is the twin's metadata server: google-auth reads GCE_METADATA_HOST only once, at its
        # import, which an earlier test may have done (twin/metadata.py)
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(identity.service_account_file(tmp_path / "sa.json")))
        monkeypatch.setenv(endpoints.VERTEX_AI, fake.endpoint)
        aiplatform.Model.upload(  # the version deploy-model uploaded, with its registry version as alias
            display_name="fmnist-classifier",
            model_id="fmnist-classifier",
            serving_container_image_uri="europe-docker.pkg.dev/p/r/service:1",
            version_aliases=[version],
            sync=True,
        )
        request = build_import(dev, version, evaluation)
        first = send(request)
        evaluations = sorted(name for name in fake.resources if "/evaluations/" in name)
        again = send(request)
        assert sorted(name for name in fake.resources if "/evaluations/" in name) == evaluations
    assert len(evaluations) == 1 and evaluations[0].startswith(f"{parent}@{version}/evaluations/")
    assert again.name == first.name == evaluations[0]
    assert [r.verb for r in fake.requests if r.verb == "import"] == ["import"]
    assert capsys.readouterr().err == (
        f"note: {parent}@{version} already holds evaluation 'test-set-{version}'; not imported again\n"
    )


def gate_report(candidate: str, champion: str) -> dict:
    """A real gate report: 100 images, 10 per class; the candidate misses 3 Shirts, the champion 1 T-shirt/top."""
    from trainer.models.gate import GateRules, GateSet, decide

    labels = np.repeat(np.arange(10), 10)
    candidate_pred, champion_pred = labels.copy(), labels.copy()
    shirt = CLASS_NAMES.index("Shirt")
    candidate_pred[np.flatnonzero(labels == shirt)[:3]] = 0
    champion_pred[0] = 1
    report = decide(
        candidate,
        champion,
        [(GateSet("official test set", labels, "pinned"), np.eye(10)[candidate_pred], np.eye(10)[champion_pred])],
        GateRules(alpha=0.0, recall_margin=1.0, calibration_tolerance=1.0),  # lenient: only the numbers matter
    )
    return json.loads(report.to_json())


def test_the_gates_per_class_rows_become_one_slice_per_class():
    from trainer.cloud.import_evaluation import build_slices, gate_metadata

    report = gate_report("v2", "v1")
    slices = build_slices(report)
    assert sorted(s["slice_"]["value"] for s in slices) == sorted(CLASS_NAMES)
    shirt = next(s for s in slices if s["slice_"]["value"] == "Shirt")
    assert shirt["slice_"]["slice_spec"]["configs"] == {
        "class": {"value": {"string_value": "Shirt"}},
        "gate_set": {"value": {"string_value": "official test set"}},
    }
    assert shirt["metrics"]["confidenceMetrics"] == [
        {
            "confidenceThreshold": 0.0,
            "maxPredictions": 1,
            "recall": 0.7,
            "recallAt1": 0.7,
            "truePositiveCount": 7,
            "falseNegativeCount": 3,
        }
    ]
    meta = gate_metadata(report, "gs://m/registry/gate-reports/v2-vs-v1.json")
    assert meta["gate_champion"] == "v1" and meta["gate_decision"] == "promote"
    assert meta["gate_champion_recall"]["official test set"]["T-shirt/top"] == 0.9
    del report["sets"][0]["per_class"]  # a report from before the per-class rows: the evaluation goes alone
    assert build_slices(report) == []


def test_import_evaluation_sends_the_evaluation_and_its_gate_slices_over_the_wire(
    gcs_settings, tmp_path, monkeypatch, capsys
):
    """`trainer import-evaluation champion` on the gcp target, its registry on fake-gcs-server, the real
    aiplatform_v1 client over REST to the twin's Vertex AI: the evaluation, then its ten per-class slices."""
    import storage
    from trainer.cloud import endpoints
    from trainer.cloud.import_evaluation import run
    from trainer.models.gate_sets import report_base
    from trainer.models.registry import ModelRegistry
    from twin import metadata, vertex

    registry = ModelRegistry.from_settings(gcs_settings)
    registry.paired_gate = None  # the report below stands for the one the promoter's gate wrote
    v1 = registry.register({"model.onnx": b"1"}, {"accuracy": 0.9}, "custom", dataset_version=None)
    registry.promote(v1)
    v2 = registry.register({"model.onnx": b"2"}, {"accuracy": 0.91}, "custom", dataset_version=None)
    registry.promote(v2)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 200)
    write_evaluation(str(tmp_path), classification_report(y, y, list(CLASS_NAMES)), {"version": "v-abc"})
    evaluation_file = (tmp_path / "evaluation.json").read_text()
    for version in (v1, v2):
        storage.write_text(storage.join(registry.version_uri(version), "evaluation.json"), evaluation_file)
    storage.write_text(report_base(registry.root, v2, v1) + ".json", json.dumps(gate_report(v2, v1)))

    parent = gcs_settings.names.parent_model_name
    with metadata.serve(gcs_settings.project_id, "pipelines@x.iam.gserviceaccount.com") as meta, vertex.serve() as fake:
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(meta.service_account_file(tmp_path / "sa.json")))
        monkeypatch.setenv(endpoints.VERTEX_AI, fake.endpoint)
        fake.seed(f"{parent}@{v1}")
        fake.seed(f"{parent}@{v2}")
        assert run(SimpleNamespace(ref=v1, dry_run=False), gcs_settings) == 0  # the first champion: no gate ran
        assert fake.sent("POST", ":batchImport") == []
        (first,) = [name for name in fake.resources if name.startswith(f"{parent}@{v1}/evaluations/")]
        assert capsys.readouterr().out == (
            f"imported the evaluation of {v1} as {first}\n"
            f"no per-class gate rows for {v1} (a first champion, no paired gate, or a report from before the rows): "
            "the evaluation is imported without slices\n"
        )
        assert run(SimpleNamespace(ref="champion", dry_run=False), gcs_settings) == 0
        (second,) = [
            name for name in fake.resources if name.startswith(f"{parent}@{v2}/evaluations/") and "/slices" not in name
        ]
        assert capsys.readouterr().out == (
            f"imported the evaluation of {v2} as {second}\n"
            f"imported 10 per-class gate slices (against {v1}) under {second}\n"
        )
        # a retried step (Vertex AI Pipelines may retry a task) imports neither the evaluation nor its slices again
        assert run(SimpleNamespace(ref="champion", dry_run=False), gcs_settings) == 0
        assert capsys.readouterr().err.splitlines()[-2:] == [
            f"note: {parent}@{v2} already holds evaluation 'test-set-{v2}'; not imported again",
            f"note: {second} already holds 10 slices; not imported again",
        ]

    evaluation = fake.only("POST", f"{parent}@{v2}/evaluations:import").body["modelEvaluation"]
    assert evaluation["metadata"]["gate_champion"] == v1
    assert evaluation["metadata"]["gate_report"] == report_base(registry.root, v2, v1) + ".json"
    (batch,) = fake.sent("POST", ":batchImport")
    evaluation_name = batch.path.removesuffix("/slices")  # the slices go under v2's evaluation just imported
    assert evaluation_name.startswith(f"{parent}@{v2}/evaluations/") and evaluation_name in fake.resources
    sent = batch.body["modelEvaluationSlices"]
    assert len(sent) == 10
    shirt = next(s for s in sent if s["slice"]["value"] == "Shirt")  # as the SDK encoded it
    assert shirt == {
        "slice": {
            "dimension": "slice",
            "value": "Shirt",
            "sliceSpec": {
                "configs": {
                    "class": {"value": {"stringValue": "Shirt"}},
                    "gate_set": {"value": {"stringValue": "official test set"}},
                }
            },
        },
        "metricsSchemaUri": CLASSIFICATION_METRICS_SCHEMA,
        "metrics": {
            "confidenceMetrics": [
                {
                    "confidenceThreshold": 0.0,
                    "maxPredictions": 1.0,
                    "recall": 0.7,
                    "recallAt1": 0.7,
                    "truePositiveCount": 7.0,
                    "falseNegativeCount": 3.0,
                }
            ]
        },
    }
