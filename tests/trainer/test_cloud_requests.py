"""The Google Cloud adapters' requests written out in full, their limits at the exact boundaries, and each
command's whole run (dry run and real, the SDK a signature-checking double): every key and value is a reviewed
part of the contract, so any change to one is a visible change here."""

import io
import json
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from google.cloud import aiplatform
from google.cloud.aiplatform_v1.types import endpoint as gca_endpoint

import trainer.data.export_images
from contracts.registry_index import parse_record
from settings import load_config
from tests.sdk_contract import SdkDouble
from tests.trainer.records import RECORD
from trainer import cli
from trainer.cloud import automl, deploy_model, submit
from trainer.errors import CommandError
from trainer.models.registry import ModelRegistry

KMS = "projects/fmnist-mlops-dev/locations/europe-west4/keyRings/fmnist/cryptoKeys/fmnist-cmek"
ENDPOINT = "projects/fmnist-mlops-dev/locations/europe-west4/endpoints/1001"
PARENT = "projects/fmnist-mlops-dev/locations/europe-west4/models/fmnist-classifier"


@pytest.fixture
def dev():
    return load_config("dev", environ={})


@pytest.fixture
def sdk(monkeypatch):
    """google.cloud.aiplatform replaced, for the code under test, by a double checked against the real one."""
    import google.cloud

    double = SdkDouble(
        aiplatform,
        returns={"aiplatform.Model.upload": aiplatform.Model},
        results={
            "aiplatform.CustomJob().resource_name": "projects/p/locations/l/customJobs/7",
            "aiplatform.CustomJob().wait_for_completion": None,
            "aiplatform.Model.upload().resource_name": PARENT,
            "aiplatform.Model.upload().version_id": "3",
            "aiplatform.Endpoint().list_models": ["m1", "m2"],
        },
    )
    monkeypatch.setattr(google.cloud, "aiplatform", double)
    monkeypatch.setitem(sys.modules, "google.cloud.aiplatform", double)
    return double


@pytest.fixture
def argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])


# ---- custom job ------------------------------------------------------------------------------------------------


def test_the_custom_job_request_in_full(dev):
    request = submit.build_custom_job(dev, ["--preset", "full"], display_name="j-1")
    container = {
        "image_uri": dev.names.image_uri("trainer"),
        "args": ["--preset", "full"],
        "env": [{"name": "FMNIST_ENV", "value": "dev"}, {"name": "KERAS_BACKEND", "value": "tensorflow"}],
    }
    assert request.init == {
        "project": "fmnist-mlops-dev",
        "location": "europe-west4",
        "staging_bucket": "gs://fmnist-mlops-dev-dev/vertex-staging",
        "experiment": "fmnist",
        "experiment_tensorboard": False,  # left out, the SDK would create a default TensorBoard outside Terraform
    }
    assert request.job == {
        "display_name": "j-1",
        "worker_pool_specs": [
            {"machine_spec": {"machine_type": "n1-standard-8"}, "replica_count": 1, "container_spec": container}
        ],
        "base_output_dir": "gs://fmnist-mlops-dev-models/jobs/j-1",
        "labels": {"app": "fmnist-mlops", "env": "dev", "component": "trainer"},
        "encryption_spec_key_name": KMS,
    }
    assert request.submit == {
        "service_account": "fmnist-mlops-dev-trainer@fmnist-mlops-dev.iam.gserviceaccount.com",
        "restart_job_on_worker_restart": True,
        "experiment": "fmnist",
    }
    assert request.notes == [
        "vertex.tensorboard is not set: no TensorBoard for this job (set it to `cdktf output` tensorboard, "
        "e.g. FMNIST_VERTEX__TENSORBOARD=projects/.../tensorboards/ID)"
    ]


def test_worker_pools_are_independent_copies(dev):
    request = submit.build_custom_job(dev, [], display_name="j", workers=2)
    chief, workers = request.job["worker_pool_specs"]
    workers["machine_spec"]["machine_type"] = "changed"
    workers["container_spec"]["env"].append("changed")
    assert (
        chief["machine_spec"] == {"machine_type": "n1-standard-8"} and "changed" not in chief["container_spec"]["env"]
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 0}, "--workers must be >= 1, got 0"),
        ({"workers": -1}, "--workers must be >= 1, got -1"),
        ({"accelerator_type": "NVIDIA_TESLA_T4", "accelerator_count": 0}, "(got type='NVIDIA_TESLA_T4', count=0)"),
        ({"accelerator_count": 1}, "(got type=None, count=1)"),
    ],
)
def test_bad_job_options_are_refused_with_the_values(dev, options, message):
    with pytest.raises(CommandError) as refused:
        submit.build_custom_job(dev, [], display_name="j", **options)
    if "accelerator_count" in options:
        message = "set both an accelerator type (e.g. NVIDIA_TESLA_T4) and a count >= 1, or neither " + message
    assert str(refused.value) == message


def test_a_failed_job_says_where_its_logs_are(dev):
    class Job:
        def __init__(self, **kwargs):
            pass

        def submit(self, **kwargs):
            pass

        def wait_for_completion(self):
            raise RuntimeError("Job failed with: code 3")

    sdk = type("SDK", (), {"CustomJob": Job, "init": staticmethod(lambda **kwargs: None)})
    with pytest.raises(CommandError) as failed:
        submit.send(submit.build_custom_job(dev, [], display_name="j-9"), sdk, wait=True)
    assert str(failed.value) == (
        "Vertex AI custom job j-9 did not succeed: Job failed with: code 3. "
        "Its logs are in the Vertex AI console (Training > Custom jobs)"
    )


def test_job_defaults_come_from_config(dev):
    settings = load_config(
        "dev",
        environ={
            "FMNIST_VERTEX__WORKER_COUNT": "2",
            "FMNIST_VERTEX__ACCELERATOR_TYPE": "NVIDIA_L4",
            "FMNIST_VERTEX__ACCELERATOR_COUNT": "1",
        },
    )
    pools = submit.build_custom_job(settings, [], display_name="j").job["worker_pool_specs"]
    assert [pool["replica_count"] for pool in pools] == [1, 1]
    assert pools[0]["machine_spec"] == {
        "machine_type": "n1-standard-8",
        "accelerator_type": "NVIDIA_L4",
        "accelerator_count": 1,
    }


@pytest.fixture
def far_from_utc(monkeypatch):
    """The process's local time zone 14 hours ahead of UTC, for this test only."""
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_job_display_name_is_the_preset_and_utc_time(far_from_utc):
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert submit.job_display_name("demo", when) == "fmnist-train-demo-20260102-030405"
    before = datetime.now(UTC).replace(microsecond=0)
    name = submit.job_display_name("full")
    after = datetime.now(UTC)
    stamped = datetime.strptime(name, "fmnist-train-full-%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    assert before <= stamped <= after  # UTC, not the local time 14 hours ahead


def test_submit_runs_the_job_and_says_where_the_model_will_be(sdk, argv, capsys):
    assert cli.main(["--env", "dev", "submit", "--preset", "demo", "--display-name", "my-job"]) == 0
    out = capsys.readouterr().out
    assert sdk.paths() == ["aiplatform.init", "aiplatform.CustomJob", "aiplatform.CustomJob().submit"]
    job = sdk.only("aiplatform.CustomJob")
    assert job["worker_pool_specs"][0]["container_spec"]["args"] == ["--preset", "demo", "--run-id", "my-job"]
    assert out.splitlines()[1:] == [
        "submitted projects/p/locations/l/customJobs/7; the model will be in gs://fmnist-mlops-dev-models/jobs/my-job/model",
        "then: python -m trainer --env dev export --model-dir gs://fmnist-mlops-dev-models/jobs/my-job/model",
    ]
    assert out.startswith("note: vertex.tensorboard is not set")


def test_submit_with_wait_blocks_until_the_job_ends(sdk, argv, capsys):
    assert cli.main(["--env", "dev", "submit", "--display-name", "my-job", "--wait", "--machine-type", "m-1"]) == 0
    assert sdk.paths()[-1] == "aiplatform.CustomJob().wait_for_completion"
    assert sdk.only("aiplatform.CustomJob")["worker_pool_specs"][0]["machine_spec"] == {"machine_type": "m-1"}
    assert "finished projects/p/locations/l/customJobs/7; the model is in" in capsys.readouterr().out


def test_submit_options_reach_the_request(argv, capsys):
    argv = ["--env", "dev", "submit", "--display-name", "j", "--dry-run", "--workers", "2", "--image", "x/t:1"]
    argv += ["--accelerator-type", "NVIDIA_L4", "--accelerator-count", "2", "--machine-type", "g2-standard-8"]
    assert cli.main(argv) == 0
    printed = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    pools = printed["job"]["worker_pool_specs"]
    assert [p["replica_count"] for p in pools] == [1, 1] and pools[1]["container_spec"]["image_uri"] == "x/t:1"
    assert pools[1]["machine_spec"] == {
        "machine_type": "g2-standard-8",
        "accelerator_type": "NVIDIA_L4",
        "accelerator_count": 2,
    }
    assert set(printed) == {"init", "job", "submit"}


@pytest.mark.parametrize("name", ["My-Job", "-job", "job_1", "j" * 129])
def test_a_display_name_vertex_would_refuse_is_refused_first(argv, capsys, name):
    assert cli.main(["--env", "dev", "submit", f"--display-name={name}", "--dry-run"]) == 1
    assert f"--display-name '{name}': use lowercase letters, digits and '-'" in capsys.readouterr().err


def test_the_longest_display_name_is_accepted(argv, capsys):
    assert cli.main(["--env", "dev", "submit", "--display-name", "j" * 128, "--dry-run"]) == 0


def test_the_default_preset_comes_from_config(argv, capsys):
    assert cli.main(["--env", "dev", "submit", "--dry-run", "--display-name", "j"]) == 0
    printed = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    preset = load_config("dev", environ={}).training.preset
    assert printed["job"]["worker_pool_specs"][0]["container_spec"]["args"] == ["--preset", preset, "--run-id", "j"]


# ---- model upload and deploy ---------------------------------------------------------------------------------------


def test_the_deploy_request_in_full(dev):
    request = deploy_model.build_deploy(dev, "v1x", RECORD, ["champion", "candidate"], parent_exists=True)
    assert request.init == {"project": "fmnist-mlops-dev", "location": "europe-west4"}
    assert request.endpoint == ENDPOINT
    assert request.upload == {
        "display_name": "fmnist-classifier",
        "artifact_uri": "gs://fmnist-mlops-dev-models/registry/versions/v20260101-000000-abcd",
        "serving_container_image_uri": dev.names.image_uri("service"),
        "serving_container_predict_route": "/predict",
        "serving_container_health_route": "/health",
        "serving_container_ports": [8080],
        "serving_container_environment_variables": {  # config/dev.yaml `service:`, as Cloud Run gets it
            "DRIFT_PSI_THRESHOLD": "0.2",
            "MAX_INSTANCES": "256",
            "PAGE_ENABLED": "false",
            "WORKERS": "2",
            "MODEL_POLL_S": "30.0",
            "MODEL_ARTIFACT": "auto",
            "REQUIRE_DIGESTS": "true",
            "FMNIST_ENV": "dev",
            "FMNIST_MODEL_VERSION": "v1x",
        },
        "version_aliases": ["candidate", "champion", "v1x"],
        "version_description": "registry version v1x, accuracy 0.93, dataset v-1",
        "is_default_version": True,
        "labels": {"app": "fmnist-mlops", "env": "dev", "source": "custom"},
        "encryption_spec_key_name": KMS,
        "sync": True,
        "parent_model": PARENT,
    }
    assert request.deploy == {
        "deployed_model_display_name": "fmnist-v1x",
        "traffic_percentage": 100,
        "machine_type": "n1-standard-2",
        "min_replica_count": 1,
        "max_replica_count": 2,
        "service_account": "fmnist-mlops-dev-service@fmnist-mlops-dev.iam.gserviceaccount.com",
        "sync": True,
    }
    other = deploy_model.build_deploy(dev, "v1x", RECORD, [], parent_exists=False, machine_type="n1-highmem-2")
    assert other.deploy["machine_type"] == "n1-highmem-2" and other.upload["model_id"] == "fmnist-classifier"
    assert other.upload["version_aliases"] == ["v1x"] and other.upload["is_default_version"] is False


@pytest.mark.parametrize("share", [1, 100])
def test_traffic_shares_at_the_limits_are_accepted(dev, share):
    assert (
        deploy_model.build_deploy(dev, "v", RECORD, [], parent_exists=True, traffic_percentage=share).deploy[
            "traffic_percentage"
        ]
        == share
    )


@pytest.mark.parametrize("share", [0, 101, -5])
def test_traffic_shares_beyond_the_limits_are_refused(dev, share):
    with pytest.raises(CommandError, match=rf"^--traffic-percentage must be 1-100, got {share}$"):
        deploy_model.build_deploy(dev, "v", RECORD, [], parent_exists=True, traffic_percentage=share)


def test_an_automl_version_is_refused_naming_its_vertex_model(dev):
    automl_record = replace(RECORD, source="automl", extra={"vertex_model": "projects/p/locations/l/models/9"})
    with pytest.raises(CommandError) as refused:
        deploy_model.build_deploy(dev, "v1", automl_record, [], parent_exists=True)
    assert str(refused.value) == (
        "version v1 is a automl model (Vertex AI model projects/p/locations/l/models/9); "
        "deploy-model serves exported custom models only"
    )
    with pytest.raises(CommandError, match=r"is a None model \(Vertex AI model \?\)"):
        deploy_model.build_deploy(dev, "v1", parse_record("v1", {"path": "x"}, "index.json"), [], parent_exists=True)


@pytest.fixture
def registry_env(settings, monkeypatch, argv):
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", settings.storage_root)
    registry = ModelRegistry.from_settings(settings)
    first = registry.register({"metadata.json": b"{}"}, {"accuracy": 0.9}, "custom", dataset_version="v-1")
    registry.promote(first)
    second = registry.register({"metadata.json": b"{}"}, {"accuracy": 0.91}, "custom", dataset_version="v-2")
    return settings, first, second


def test_deploy_dry_run_prints_the_requests_for_a_reference(registry_env, capsys):
    _, first, second = registry_env
    assert cli.main(["--env", "local", "deploy-model", "candidate", "--dry-run", "--machine-type", "m-4"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["upload"]["version_aliases"] == ["candidate", second]
    assert printed["upload"]["parent_model"].endswith("/models/fmnist-classifier")
    assert printed["deploy"] == {**printed["deploy"], "machine_type": "m-4", "traffic_percentage": 100}
    assert cli.main(["--env", "local", "deploy-model", "--dry-run"]) == 0  # default: the champion
    assert json.loads(capsys.readouterr().out)["upload"]["version_aliases"] == ["champion", first]


def test_deploy_model_uploads_and_deploys_through_the_sdk(gcs_settings, sdk, capsys):
    """The gcp target with its models bucket on the GCS emulator: the real registry, the SDK a double."""
    registry = ModelRegistry.from_settings(gcs_settings)
    version = registry.register({"metadata.json": b"{}"}, {"accuracy": 0.9}, "custom", dataset_version="v-1")
    registry.promote(version)
    args = type(
        "Args",
        (),
        {"ref": "champion", "traffic_percentage": 25, "machine_type": "m-8", "dry_run": False, "canary": None},
    )
    # after the deploy: the new version at 25 % beside the champion, and an older model left at 0 %
    sdk.give(
        "aiplatform.Endpoint().list_models",
        [
            gca_endpoint.DeployedModel(id="1", display_name="fmnist-v-old"),
            gca_endpoint.DeployedModel(id="2", display_name="fmnist-v-older"),
            gca_endpoint.DeployedModel(id="3", display_name=f"fmnist-{version}"),
        ],
    )
    sdk.give("aiplatform.Endpoint().traffic_split", {"1": 75, "3": 25})
    sdk.give("aiplatform.Model", None)  # the parent exists (no NotFound); no version of it carries this one yet
    sdk.give("aiplatform.Endpoint().gca_resource", gca_endpoint.Endpoint())  # before the deploy
    assert deploy_model.run(args, gcs_settings) == 0
    assert [call.arguments for call in sdk.calls if call.path == "aiplatform.init"] == [
        {"project": gcs_settings.project_id, "location": gcs_settings.region}
    ] * 2
    assert sdk.only("aiplatform.Model.upload().deploy")["machine_type"] == "m-8"
    assert sdk.paths() == [
        "aiplatform.init",
        "aiplatform.Model",
        "aiplatform.init",
        "aiplatform.Model",
        "aiplatform.Model.upload",
        "aiplatform.Endpoint",
        "aiplatform.Model.upload().deploy",
        "aiplatform.Endpoint().list_models",
        "aiplatform.Endpoint().undeploy",
    ]
    assert sdk.only("aiplatform.Endpoint().undeploy") == {
        "deployed_model_id": "2",
        "traffic_split": {"3": 25, "1": 75},
        "sync": True,
    }
    assert [c.arguments for c in sdk.calls if c.path == "aiplatform.Model"] == [
        {"model_name": PARENT},
        {"model_name": PARENT, "version": version},
    ]
    upload = sdk.only("aiplatform.Model.upload")
    assert upload["parent_model"] == PARENT and upload["version_aliases"] == ["candidate", "champion", version]
    assert upload["artifact_uri"] == f"{gcs_settings.models_bucket}/registry/versions/{version}"
    assert sdk.only("aiplatform.Model.upload().deploy")["traffic_percentage"] == 25
    assert capsys.readouterr().out == (
        f"uploaded {version} as {PARENT}@3 and deployed it to {ENDPOINT} with 25% of the traffic\n"
    )


def test_deploy_model_on_the_local_target_explains_what_to_do(registry_env, capsys):
    assert cli.main(["--env", "local", "deploy-model"]) == 1
    assert "`deploy-model` talks to Vertex AI: use a gcp environment" in capsys.readouterr().err


# ---- undeploy-all ------------------------------------------------------------------------------------------------


def test_undeploy_all_with_yes_undeploys_through_the_sdk(sdk, argv, capsys):
    assert cli.main(["--env", "dev", "undeploy-all", "--yes"]) == 0
    assert capsys.readouterr().out == f"undeployed 2 model(s) from {ENDPOINT}\n"
    assert sdk.only("aiplatform.Endpoint().undeploy_all") == {"sync": True}


@pytest.mark.parametrize(("answer", "undeployed"), [("y\n", True), (" YES \n", True), ("n\n", False), ("\n", False)])
def test_undeploy_all_asks_at_a_terminal(sdk, argv, monkeypatch, capsys, answer, undeployed):
    stdin = io.StringIO(answer)
    stdin.isatty = lambda: True
    monkeypatch.setattr(sys, "stdin", stdin)
    assert cli.main(["--env", "dev", "undeploy-all"]) == (0 if undeployed else 1)
    out = capsys.readouterr().out
    assert out.startswith(f"undeploy every model from {ENDPOINT}? [y/N] ")
    assert ("aiplatform.Endpoint().undeploy_all" in sdk.paths()) is undeployed
    assert out.endswith(f"undeployed 2 model(s) from {ENDPOINT}\n" if undeployed else "nothing undeployed\n")


def test_undeploy_all_without_a_terminal_says_how_to_confirm(sdk, argv, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert cli.main(["--env", "dev", "undeploy-all"]) == 1
    assert capsys.readouterr().err == (
        "error: undeploy-all removes every model from the endpoint; pass --yes to confirm when running without "
        "a terminal\n"
    )
    assert sdk.paths() == []


def test_undeploy_all_on_the_local_target_explains_what_to_do(argv, capsys):
    assert cli.main(["--env", "local", "undeploy-all", "--yes"]) == 1
    assert "`undeploy-all` talks to Vertex AI" in capsys.readouterr().err


# ---- AutoML ------------------------------------------------------------------------------------------------------


def test_the_automl_request_in_full(dev):
    request = automl.build_request(dev, "gs://b/import.jsonl", "v-Abc1")
    labels = {"dataset_version": "v-abc1", "source": "automl"}
    assert request.init == {
        "project": "fmnist-mlops-dev",
        "location": "europe-west4",
        "staging_bucket": "gs://fmnist-mlops-dev-dev/vertex-staging",
        "experiment": "fmnist",
        "experiment_tensorboard": False,
    }
    assert request.dataset == {
        "display_name": "fmnist-v-Abc1",
        "gcs_source": ["gs://b/import.jsonl"],
        "import_schema_uri": automl.IMPORT_SCHEMA,
        "labels": labels,
        "encryption_spec_key_name": KMS,
    }
    assert request.job == {
        "display_name": "fmnist-automl-v-Abc1",
        "prediction_type": "classification",
        "multi_label": False,
        "model_type": "CLOUD",
        "labels": labels,
        "training_encryption_spec_key_name": KMS,
        "model_encryption_spec_key_name": KMS,
    }
    assert request.run == {
        "training_filter_split": "labels.aiplatform.googleapis.com/ml_use=training",
        "validation_filter_split": "labels.aiplatform.googleapis.com/ml_use=validation",
        "test_filter_split": "labels.aiplatform.googleapis.com/ml_use=test",
        "budget_milli_node_hours": 8000,
        "model_display_name": "fmnist-automl",
        "model_labels": labels,
        "sync": True,
    }
    assert request.labels == labels


@pytest.mark.parametrize("budget", [8000, 800000])
def test_automl_budgets_at_the_limits_are_accepted(dev, budget):
    assert automl.build_request(dev, "gs://b/i", "v-1", budget=budget).run["budget_milli_node_hours"] == budget


@pytest.mark.parametrize("budget", [7999, 800001])
def test_automl_budgets_beyond_the_limits_are_refused(dev, budget):
    with pytest.raises(CommandError) as refused:
        automl.build_request(dev, "gs://b/i", "v-1", budget=budget)
    assert str(refused.value) == (
        f"AutoML budget {budget} milli node hours is outside 8,000-800,000 (the CLOUD model type's range); "
        "set vertex.automl_budget_milli_node_hours"
    )


def test_every_automl_evaluation_number_maps_exactly():
    evaluation = {
        "auPrc": 0.98,
        "logLoss": 0.21,
        "confidenceMetrics": [
            {"confidenceThreshold": 0.0, "precision": 0.1, "recall": 1.0},
            {"confidenceThreshold": 0.45, "precision": 0.96, "recall": 0.91},
            {"confidenceThreshold": 0.56, "precision": 0.972, "recall": 0.90, "precisionAt1": 0.93},
            {"confidenceThreshold": 0.9, "precision": 0.99, "recall": 0.7},
        ],
        "confusionMatrix": {"rows": [[8, 2, 0], [1, 6, 3], [0, 0, 0]]},
    }
    precisions, recalls = [8 / 9, 6 / 8, 0.0], [8 / 10, 6 / 10, 0.0]
    f1 = [2 * p * r / (p + r) if p + r else 0.0 for p, r in zip(precisions, recalls, strict=True)]
    assert automl.metrics_from_evaluation(evaluation) == {
        "source_metrics": "vertex-automl-evaluation",
        "accuracy": pytest.approx(14 / 20),
        "macro_recall": pytest.approx(sum(recalls) / 3),
        "macro_precision": pytest.approx(sum(precisions) / 3),
        "macro_f1": pytest.approx(sum(f1) / 3),
        "automl_precision": 0.96,  # the point nearest the 0.5 threshold (0.45 is nearer than 0.56)
        "automl_recall": 0.91,
        "automl_confidence_threshold": 0.45,
        "automl_auprc": 0.98,
        "automl_logloss": 0.21,
    }
    nearest_with_top1 = {**evaluation, "confidenceMetrics": evaluation["confidenceMetrics"][2:]}
    mapped = automl.metrics_from_evaluation(nearest_with_top1)
    assert mapped["automl_precision_at_1"] == 0.93 and mapped["automl_confidence_threshold"] == 0.56


def test_a_sparse_automl_evaluation_maps_what_it_has():
    assert automl.metrics_from_evaluation({}) == {"source_metrics": "vertex-automl-evaluation"}
    empty = automl.metrics_from_evaluation({"confusionMatrix": {"rows": [[0, 0], [0, 0]]}})
    assert empty == {
        "source_metrics": "vertex-automl-evaluation",
        "accuracy": None,
        "macro_recall": 0.0,
        "macro_precision": 0.0,
        "macro_f1": 0.0,
    }
    point = automl.metrics_from_evaluation({"confidenceMetrics": [{}]})
    assert point == {
        "source_metrics": "vertex-automl-evaluation",
        "automl_precision": 0.0,
        "automl_recall": 0.0,
        "automl_confidence_threshold": 0.0,
    }


def test_automl_dry_run_prints_the_requests_sorted(gcs_settings, monkeypatch, capsys):
    import_uri = f"{gcs_settings.datasets_bucket}/automl/v-1/import.jsonl"
    monkeypatch.setattr(
        trainer.data.export_images,
        "export_images",
        lambda settings, version: (import_uri, {"dataset_version": "v-1"}, 0),
    )
    args = type("Args", (), {"version": None, "budget": 9000, "dry_run": True})
    assert automl.run(args, gcs_settings) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(
        json.dumps(automl.build_request(gcs_settings, import_uri, "v-1", budget=9000).__dict__)
    )


def test_automl_on_the_local_target_refuses_before_exporting(settings, monkeypatch):
    def never(*args):
        raise AssertionError("export_images ran")

    monkeypatch.setattr(trainer.data.export_images, "export_images", never)
    args = type("Args", (), {"version": None, "budget": None, "dry_run": False})
    with pytest.raises(CommandError, match="AutoML runs only on Vertex AI: use a gcp environment"):
        automl.run(args, settings)


def test_f1_of_a_class_whose_precision_equals_its_recall():
    mapped = automl.metrics_from_evaluation({"confusionMatrix": {"rows": [[5, 5], [5, 5]]}})
    assert mapped["macro_f1"] == pytest.approx(0.5) and mapped["macro_precision"] == mapped["macro_recall"] == 0.5


def test_automl_dry_run_prints_exactly_the_sorted_indented_requests(gcs_settings, monkeypatch, capsys):
    asked = []

    def exported(settings, version):
        asked.append((settings, version))
        return f"{settings.datasets_bucket}/automl/{version}/import.jsonl", {"dataset_version": version}, 0

    monkeypatch.setattr(trainer.data.export_images, "export_images", exported)
    args = type("Args", (), {"version": "v-9", "budget": None, "dry_run": True})
    assert automl.run(args, gcs_settings) == 0
    assert asked == [(gcs_settings, "v-9")]
    request = automl.build_request(gcs_settings, f"{gcs_settings.datasets_bucket}/automl/v-9/import.jsonl", "v-9")
    assert capsys.readouterr().out == json.dumps(request.__dict__, indent=2, sort_keys=True) + "\n"


def test_submit_dry_run_prints_the_indented_request_and_the_real_one_needs_gcp(argv, capsys):
    assert cli.main(["--env", "dev", "submit", "--display-name", "j", "--dry-run"]) == 0
    body = capsys.readouterr().out.split("\n", 1)[1]
    assert body == json.dumps(json.loads(body), indent=2) + "\n"
    assert cli.main(["--env", "local", "submit", "--display-name", "j"]) == 1
    assert capsys.readouterr().err.startswith("error: `submit` talks to Vertex AI: use a gcp environment")


def test_deploy_dry_run_is_indented_json(registry_env, capsys):
    assert cli.main(["--env", "local", "deploy-model", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out == json.dumps(json.loads(out), indent=2) + "\n"
