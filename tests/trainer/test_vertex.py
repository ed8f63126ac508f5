"""Vertex AI adapters: the requests they build (custom job, model upload + deploy, undeploy, experiments)."""

import json
import sys
from dataclasses import replace

import pytest
from google.api_core import exceptions as google_exceptions

from settings import load_config
from tests.trainer.records import RECORD
from trainer import cli
from trainer.cloud.deploy_model import build_deploy
from trainer.cloud.experiments import VertexExperiment
from trainer.cloud.submit import build_custom_job, send
from trainer.cloud.undeploy_all import undeploy_all
from trainer.errors import CommandError


@pytest.fixture
def dev():
    return load_config("dev", environ={})


class Recorder:
    """Stands in for the google.cloud.aiplatform module: records every call, returns more recorders."""

    def __init__(self, name="aiplatform", calls=None):
        self.name, self.calls = name, calls if calls is not None else []

    def __getattr__(self, attr):
        return Recorder(f"{self.name}.{attr}", self.calls)

    def __call__(self, *args, **kwargs):
        self.calls.append((self.name, args, kwargs))
        return Recorder(f"{self.name}()", self.calls)


def test_single_worker_job(dev):
    request = build_custom_job(dev, ["--preset", "full"], display_name="fmnist-train-full-1")
    job = request.job
    assert job["display_name"] == "fmnist-train-full-1"
    assert job["base_output_dir"] == "gs://fmnist-mlops-dev-models/jobs/fmnist-train-full-1"
    assert job["encryption_spec_key_name"] == (
        f"projects/fmnist-mlops-dev/locations/europe-west4/keyRings/{dev.infra.kms_key_ring}/cryptoKeys/fmnist-cmek"
    )
    [pool] = job["worker_pool_specs"]
    assert pool["replica_count"] == 1 and pool["machine_spec"] == {"machine_type": "n1-standard-8"}
    container = pool["container_spec"]
    assert container["image_uri"].startswith(
        "europe-west4-docker.pkg.dev/fmnist-mlops-dev/fmnist-mlops-dev-images/trainer:"
    )
    assert container["args"] == ["--preset", "full"]
    assert {"name": "FMNIST_ENV", "value": "dev"} in container["env"]
    assert request.submit["service_account"] == "fmnist-mlops-dev-trainer@fmnist-mlops-dev.iam.gserviceaccount.com"
    assert request.submit["experiment"] == "fmnist" and request.submit["restart_job_on_worker_restart"] is True
    assert "tensorboard" not in request.submit and "vertex.tensorboard" in request.notes[0]
    assert request.init["staging_bucket"] == "gs://fmnist-mlops-dev-dev/vertex-staging"


def test_multi_worker_job_with_accelerators_and_tensorboard():
    tensorboard = "projects/p/locations/europe-west4/tensorboards/123"
    settings = load_config(
        "dev", environ={"FMNIST_VERTEX__TENSORBOARD": tensorboard, "FMNIST_VERTEX__TRAINER_IMAGE": "example/trainer:1"}
    )
    request = build_custom_job(
        settings,
        ["--preset", "full"],
        display_name="j",
        workers=3,
        machine_type="n1-standard-4",
        accelerator_type="NVIDIA_TESLA_T4",
        accelerator_count=1,
    )
    chief, workers = request.job["worker_pool_specs"]
    expected_machine = {"machine_type": "n1-standard-4", "accelerator_type": "NVIDIA_TESLA_T4", "accelerator_count": 1}
    assert chief["replica_count"] == 1 and workers["replica_count"] == 2
    assert chief["machine_spec"] == workers["machine_spec"] == expected_machine
    assert chief["container_spec"] == workers["container_spec"]
    assert chief["container_spec"]["image_uri"] == "example/trainer:1"
    assert request.submit["tensorboard"] == tensorboard and request.init["experiment_tensorboard"] == tensorboard
    assert "experiment" not in request.submit  # the SDK refuses it beside a TensorBoard; the trainer tracks the run


def test_accelerator_needs_type_and_count(dev):
    with pytest.raises(CommandError, match="accelerator"):
        build_custom_job(dev, [], display_name="j", accelerator_type="NVIDIA_TESLA_T4", accelerator_count=0)


def test_send_makes_the_sdk_calls_in_order(dev):
    sdk = Recorder()
    request = build_custom_job(dev, ["--preset", "demo"], display_name="j")
    send(request, sdk)
    assert [name for name, _, _ in sdk.calls] == [
        "aiplatform.init",
        "aiplatform.CustomJob",
        "aiplatform.CustomJob().submit",
    ]
    assert sdk.calls[1][2] == request.job and sdk.calls[2][2] == request.submit
    send(request, sdk, wait=True)
    assert sdk.calls[-1][0] == "aiplatform.CustomJob().wait_for_completion"


def test_a_failed_job_is_one_clear_error(dev):
    class Job:
        def __init__(self, **kwargs):
            pass

        def submit(self, **kwargs):
            pass

        def wait_for_completion(self):
            raise RuntimeError("Job failed with: code 3")

    class SDK:
        CustomJob = Job

        @staticmethod
        def init(**kwargs):
            pass

    with pytest.raises(CommandError, match="did not succeed: Job failed"):
        send(build_custom_job(dev, [], display_name="j"), SDK, wait=True)


def test_submit_dry_run_prints_the_request_and_passes_train_flags(dev, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    assert (
        cli.main(
            [
                "--env",
                "dev",
                "submit",
                "--preset",
                "full",
                "--workers",
                "2",
                "--display-name",
                "my-job",
                "--dry-run",
                "--",
                "--epochs",
                "3",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    args = printed["job"]["worker_pool_specs"][0]["container_spec"]["args"]
    assert args == ["--preset", "full", "--run-id", "my-job", "--epochs", "3"]
    assert len(printed["job"]["worker_pool_specs"]) == 2


def test_submit_on_the_local_target_explains_what_to_do(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    monkeypatch.setenv("FMNIST_ENV", "local")
    assert cli.main(["submit"]) == 1
    assert "use a gcp environment" in capsys.readouterr().err


def test_deploy_uploads_a_new_version_of_the_parent_with_aliases_and_the_service_contract(dev):
    version = "v20260101-000000-abcd"
    request = build_deploy(dev, version, RECORD, ["champion"], parent_exists=True, traffic_percentage=100)
    upload = request.upload
    assert (
        upload["parent_model"]
        == dev.names.parent_model_name
        == "projects/fmnist-mlops-dev/locations/europe-west4/models/fmnist-classifier"
    )
    assert "model_id" not in upload and upload["is_default_version"] is True
    assert upload["version_aliases"] == ["champion", version]
    assert upload["artifact_uri"] == f"gs://fmnist-mlops-dev-models/{RECORD.path}"
    assert upload["serving_container_image_uri"] == dev.names.image_uri("service")
    assert (
        upload["serving_container_predict_route"],
        upload["serving_container_health_route"],
        upload["serving_container_ports"],
    ) == ("/predict", "/health", [8080])
    assert request.endpoint == f"projects/fmnist-mlops-dev/locations/europe-west4/endpoints/{dev.infra.endpoint_id}"
    assert request.deploy["traffic_percentage"] == 100 and request.deploy["min_replica_count"] == 1
    assert request.deploy["service_account"] == "fmnist-mlops-dev-service@fmnist-mlops-dev.iam.gserviceaccount.com"


def test_first_deploy_creates_the_parent_and_a_canary_keeps_the_default(dev):
    request = build_deploy(dev, "v1x", RECORD, ["candidate"], parent_exists=False, traffic_percentage=10)
    assert request.upload["model_id"] == "fmnist-classifier" and "parent_model" not in request.upload
    assert request.upload["is_default_version"] is False and request.deploy["traffic_percentage"] == 10


def test_deploy_refuses_automl_versions_and_bad_traffic(dev):
    with pytest.raises(CommandError, match="automl model"):
        build_deploy(dev, "v1", replace(RECORD, source="automl", extra={"vertex_model": "m"}), [], parent_exists=True)
    with pytest.raises(CommandError, match="1-100"):
        build_deploy(dev, "v1", RECORD, [], parent_exists=True, traffic_percentage=0)


def test_undeploy_sdk_calls(dev):  # deploy's calls: tests/trainer/test_sdk_contracts.py
    class FakeEndpoint:
        undeployed = False

        def __init__(self, name):
            self.name = name

        def list_models(self):
            return [1, 2]

        def undeploy_all(self, sync):
            FakeEndpoint.undeployed = sync

    class SDK:
        Endpoint = FakeEndpoint

        @staticmethod
        def init(**kwargs):
            pass

    assert undeploy_all(dev, SDK) == f"undeployed 2 model(s) from {dev.names.endpoint_name}"
    assert FakeEndpoint.undeployed is True


def test_deploy_dry_run_from_the_local_registry(settings, monkeypatch, capsys):
    from trainer.models.registry import ModelRegistry

    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", settings.storage_root)
    registry = ModelRegistry.from_settings(settings)
    version = registry.register({"metadata.json": b"{}"}, {"accuracy": 0.9}, "custom", dataset_version="v-1")
    registry.promote(version)
    assert cli.main(["deploy-model", "--dry-run", "--traffic-percentage", "20"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert version in printed["upload"]["version_aliases"] and printed["deploy"]["traffic_percentage"] == 20


def test_vertex_experiment_logs_params_epochs_and_final_metrics():
    tensorboard = "projects/p/locations/europe-west4/tensorboards/123"
    dev = load_config("dev", environ={"FMNIST_VERTEX__TENSORBOARD": tensorboard})
    sdk = Recorder()
    tracker = VertexExperiment(dev, "run-1", aiplatform=sdk, environ={})
    tracker.start({"epochs": 2, "model.width": 8, "nested": {"x": 1}}, resume=False)
    tracker.log_epoch(1, {"loss": 0.5})
    tracker.finish({"test_accuracy": 0.9})
    names = [name for name, _, _ in sdk.calls]
    assert names == [
        "aiplatform.init",
        "aiplatform.start_run",
        "aiplatform.log_params",
        "aiplatform.log_time_series_metrics",
        "aiplatform.log_metrics",
        "aiplatform.end_run",
    ]
    assert sdk.calls[0][2]["experiment"] == "fmnist" and sdk.calls[1][1] == ("run-1",)
    assert sdk.calls[2][1][0] == {"epochs": 2, "model.width": 8}
    assert sdk.calls[3][2] == {"step": 1}


def test_without_a_tensorboard_epochs_are_not_sent_as_time_series(dev):
    """The SDK refuses time series on an experiment without a backing TensorBoard with a RuntimeError, which ended
    every custom job of an environment without vertex.tensorboard (found by the twin's custom job)."""
    assert not dev.vertex.tensorboard
    sdk = Recorder()
    tracker = VertexExperiment(dev, "run-1", aiplatform=sdk, environ={})
    tracker.start({"epochs": 2}, resume=False)
    tracker.log_epoch(1, {"loss": 0.5})
    tracker.finish({"test_accuracy": 0.9})
    assert "aiplatform.log_time_series_metrics" not in [name for name, _, _ in sdk.calls]
    assert "aiplatform.log_metrics" in [name for name, _, _ in sdk.calls]


def test_inside_a_submitted_job_the_sdk_run_is_used_and_failures_do_not_stop_training(dev, capsys):
    sdk = Recorder()
    tracker = VertexExperiment(dev, "run-1", aiplatform=sdk, environ={"AIP_EXPERIMENT_RUN_NAME": "r"})
    tracker.start({}, resume=False)
    assert "aiplatform.start_run" not in [name for name, _, _ in sdk.calls]

    class Broken:
        def init(self, **kwargs):
            raise google_exceptions.PermissionDenied("no")

    failing = VertexExperiment(dev, "run-1", aiplatform=Broken(), environ={})
    failing.start({}, resume=False)
    failing.log_epoch(1, {"loss": 1.0})
    assert not failing.active and "tracking stopped" in capsys.readouterr().err


def test_a_programming_error_in_tracking_is_not_swallowed(dev):
    class WrongKeyword:
        def init(self, **kwargs):
            raise TypeError("init() got an unexpected keyword argument 'tensorboard'")

    with pytest.raises(TypeError, match="unexpected keyword"):
        VertexExperiment(dev, "run-1", aiplatform=WrongKeyword(), environ={}).start({}, resume=False)


def test_undeploy_all_without_a_terminal_needs_yes(monkeypatch, capsys):
    import io

    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert cli.main(["--env", "dev", "undeploy-all"]) == 1
    assert "pass --yes" in capsys.readouterr().err


# ---- deploy-model leaves at most champion + challenger on the endpoint -----------------------------------------


def test_a_full_deploy_retires_every_other_model_and_a_canary_keeps_only_the_champion():
    from trainer.cloud.deploy_model import retire
    from trainer.cloud.rollout import Deployed

    after_full = [Deployed("1", "v1", 0), Deployed("2", "v0", 0), Deployed("3", "v2", 100)]
    assert retire(after_full, "v2", 100) == (["1", "2"], {"3": 100})
    # a canary deployed at 10 %: the SDK scaled the others; the old challenger (v0) goes, the champion (v1) stays
    after_canary = [Deployed("1", "v1", 63), Deployed("2", "v0", 27), Deployed("3", "v2", 10)]
    assert retire(after_canary, "v2", 10) == (["2"], {"3": 10, "1": 90})
    assert retire([Deployed("1", "v1", 100)], "v1", 100) == ([], {"1": 100})  # the first deploy
    assert retire([Deployed("3", "v2", 100)], "v2", 10) == ([], {"3": 100})  # a canary with nothing beside it
    # a retried deploy left a twin of the same version without traffic: it goes too
    assert retire([Deployed("4", "v2", 0), Deployed("5", "v2", 100)], "v2", 100) == (["4"], {"5": 100})
    with pytest.raises(CommandError, match="v9 is not among the endpoint's deployed models"):
        retire(after_full, "v9", 100)
