"""Importing a version's evaluation into the Vertex AI Model Registry: the request, built from a real evaluation
file and converted to the installed SDK's ImportModelEvaluationRequest offline."""

import inspect
import json

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


def test_a_retried_import_over_the_wire_imports_nothing_more(dev, evaluation, monkeypatch, capsys):
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
        for variable, value in {**identity.environment(), endpoints.VERTEX_AI: fake.endpoint}.items():
            monkeypatch.setenv(variable, value)
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
