"""Every Vertex AI call the trainer makes, checked offline against the installed SDK (tests/sdk_contract.py):
each request bound to the real signatures, and built into the SDK's own request objects where it can do that
without a network, over the variants that change the request."""

import copy
import json
import re
import sys

import pytest
from google.api_core import exceptions as google_exceptions
from google.cloud import aiplatform
from google.cloud.aiplatform_v1.types import AcceleratorType
from google.cloud.aiplatform_v1.types import endpoint as gca_endpoint

from contracts.dataset import CLASS_NAMES
from settings import load_config
from tests.sdk_contract import (
    ContractViolation,
    SdkDouble,
    bind,
    capture_rpc,
    offline_endpoint,
    offline_model,
    vertex_offline,
)
from tests.trainer.records import RECORD
from trainer.cloud import automl, batch_prediction, deploy_model, gcp_resources, submit, undeploy_all
from trainer.cloud.experiments import VertexExperiment
from trainer.errors import CommandError
from twin.vertex import vertex_over_the_wire

TENSORBOARD = "projects/fmnist-mlops-dev/locations/europe-west4/tensorboards/123"
KMS_OVERRIDE = "projects/fmnist-mlops-dev/locations/europe-west4/keyRings/other/cryptoKeys/key"


def dev(**environ):
    return load_config("dev", environ=environ)


# ---- the helper itself: a wrong keyword or attribute fails, whatever the adapter does with the error -------------


def test_bind_refuses_a_keyword_the_sdk_does_not_take():
    with pytest.raises(ContractViolation, match="tensorboard"):
        bind(aiplatform.init, project="p", tensorboard="t")
    with pytest.raises(TypeError):  # the SDK itself would raise TypeError: a guard must not tell them apart
        SdkDouble(aiplatform).CustomJob(display_name="j", worker_pool_specs=[], job_labels={})
    with pytest.raises(AttributeError, match="undeploy_al"):
        SdkDouble(aiplatform).Endpoint("e").undeploy_al()

    def takes_anything(a, **kwargs):
        pass

    with pytest.raises(ContractViolation, match=r"\['b'\] fall into \*\*kwargs"):
        bind(takes_anything, 1, b=2)


# ---- custom jobs ---------------------------------------------------------------------------------------------------

JOB_VARIANTS = {
    "one worker, no TensorBoard, the infra/ key": ({}, {}),
    "three workers, T4s, TensorBoard, a configured key": (
        {"FMNIST_VERTEX__TENSORBOARD": TENSORBOARD, "FMNIST_VERTEX__KMS_KEY": KMS_OVERRIDE},
        {"workers": 3, "machine_type": "n1-standard-4", "accelerator_type": "NVIDIA_TESLA_T4", "accelerator_count": 2},
    ),
    "two workers, no accelerators": ({}, {"workers": 2}),
}


@pytest.fixture(params=list(JOB_VARIANTS), ids=list(JOB_VARIANTS))
def job_request(request):
    environ, options = JOB_VARIANTS[request.param]
    settings = dev(**environ)
    return settings, options, submit.build_custom_job(settings, ["--preset", "full"], display_name="j-1", **options)


def test_custom_job_calls_bind_to_the_sdk(job_request):
    settings, _, request = job_request
    sdk = SdkDouble(aiplatform, results={"aiplatform.CustomJob().wait_for_completion": None})
    submit.send(request, sdk, wait=True)
    assert sdk.paths() == [
        "aiplatform.init",
        "aiplatform.CustomJob",
        "aiplatform.CustomJob().submit",
        "aiplatform.CustomJob().wait_for_completion",
    ]
    init = sdk.only("aiplatform.init")
    assert init["experiment"] == settings.vertex.experiment
    assert init["experiment_tensorboard"] == (settings.vertex.tensorboard or False)
    assert sdk.only("aiplatform.CustomJob") == request.job
    assert sdk.only("aiplatform.CustomJob().submit") == request.submit
    assert request.submit.get("tensorboard") == (settings.vertex.tensorboard or None)
    assert ("experiment" in request.submit) is not bool(settings.vertex.tensorboard)


def test_the_sdk_sends_the_custom_job_over_the_wire(job_request, tmp_path, monkeypatch):
    """`submit.send` with the real SDK, unchanged arguments, against a local Vertex AI REST server: the SDK's own
    checks run (it refuses `experiment` with `tensorboard`) and the create request is the one Google would get."""
    settings, options, request = job_request
    tensorboard = settings.vertex.tensorboard
    parent = f"projects/{settings.project_id}/locations/{settings.region}"
    monkeypatch.setenv(gcp_resources.ENV, str(tmp_path / "gcp_resources"))
    with vertex_over_the_wire(settings.project_id, settings.region) as fake:
        fake.seed_experiment(parent, settings.vertex.experiment)
        if tensorboard:
            fake.resources[tensorboard] = {"name": tensorboard, "displayName": "fmnist"}
        job = submit.send(request, wait=True)
    assert job.resource_name == f"{parent}/customJobs/1"
    assert json.loads((tmp_path / "gcp_resources").read_text()) == {
        "resources": [
            {
                "resourceType": "CustomJob",
                "resourceUri": f"https://{settings.region}-aiplatform.googleapis.com/v1/{parent}/customJobs/1",
            }
        ]
    }
    resource = fake.only("POST", f"{parent}/customJobs").body
    spec = resource["jobSpec"]
    assert resource["displayName"] == "j-1"
    assert resource["encryptionSpec"] == {"kmsKeyName": settings.names.kms_key_name}
    assert resource["labels"] == {"app": "fmnist-mlops", "env": "dev", "component": "trainer"}
    assert spec["baseOutputDirectory"] == {"outputUriPrefix": "gs://fmnist-mlops-dev-models/jobs/j-1"}
    assert spec["serviceAccount"] == settings.names.runtime_account("trainer")
    assert spec["scheduling"]["restartJobOnWorkerRestart"] is True
    experiment = f"{parent}/metadataStores/default/contexts/{settings.vertex.experiment}"
    if tensorboard:  # the job writes to the TensorBoard; the trainer inside it tracks the experiment run
        assert spec["tensorboard"] == tensorboard and "experiment" not in spec
        assert fake.only("PATCH", experiment).body["metadata"]["backing_tensorboard_resource"] == tensorboard
    else:  # tied to the experiment, and no TensorBoard created anywhere
        assert spec["experiment"] == experiment and "tensorboard" not in spec
    assert not fake.sent("POST", "/tensorboards"), "the SDK created a TensorBoard outside Terraform"
    workers = options.get("workers", 1)
    pools = spec["workerPoolSpecs"]
    assert [int(pool["replicaCount"]) for pool in pools] == [1] + ([workers - 1] if workers > 1 else [])
    for pool in pools:
        machine = pool["machineSpec"]
        assert machine["machineType"] == options.get("machine_type", settings.vertex.machine_type)
        accelerator = options.get("accelerator_type")  # enums travel as numbers (`$alt=json;enum-encoding=int`)
        assert machine.get("acceleratorType") == (AcceleratorType[accelerator].value if accelerator else None)
        assert machine.get("acceleratorCount") == options.get("accelerator_count")
        assert pool["containerSpec"]["args"] == ["--preset", "full"]
        assert {e["name"]: e["value"] for e in pool["containerSpec"]["env"]}["FMNIST_ENV"] == "dev"


@pytest.mark.parametrize("adapter", ["submit --wait", "batch-prediction --wait"])
def test_a_launched_job_is_published_before_the_wait_so_cancelling_the_run_cancels_it(adapter, tmp_path, monkeypatch):
    """The job fails (the fake says so): the task fails with a clear error, and gcp_resources already names the job
    (written as soon as it existed, as google-cloud-pipeline-components' launchers do)."""
    settings = dev()
    parent = f"projects/{settings.project_id}/locations/{settings.region}"
    monkeypatch.setenv(gcp_resources.ENV, str(tmp_path / "gcp_resources"))
    with vertex_over_the_wire(settings.project_id, settings.region) as fake:
        fake.job_state = "JOB_STATE_FAILED"
        fake.seed_experiment(parent, settings.vertex.experiment)
        with pytest.raises(CommandError, match="did not succeed"):
            if adapter == "submit --wait":
                submit.send(submit.build_custom_job(settings, [], display_name="j-1"), wait=True)
            else:
                request = batch_prediction.build_batch_prediction(
                    settings, "v1", "gs://in/x.jsonl", None, display_name="fmnist-batch-1", destination=None, wait=True
                )
                batch_prediction.send(settings, request)
    [resource] = json.loads((tmp_path / "gcp_resources").read_text())["resources"]
    kind, collection = (
        ("CustomJob", "customJobs") if adapter == "submit --wait" else ("BatchPredictionJob", "batchPredictionJobs")
    )
    created = fake.only("POST", f"{parent}/{collection}")
    assert resource == {
        "resourceType": kind,
        "resourceUri": f"https://{settings.region}-aiplatform.googleapis.com/v1/{parent}/{collection}/1",
    }
    assert created.body["encryptionSpec"] == {"kmsKeyName": settings.names.kms_key_name}


def test_the_sdk_refuses_an_experiment_with_a_tensorboard():
    """The check the adapter must respect, made by the installed SDK itself (python-aiplatform jobs.py)."""
    settings = dev(FMNIST_VERTEX__TENSORBOARD=TENSORBOARD)
    request = submit.build_custom_job(settings, [], display_name="j-1")
    with vertex_over_the_wire(settings.project_id, settings.region) as fake:
        job = aiplatform.CustomJob(**request.job, staging_bucket=request.init["staging_bucket"])
        with pytest.raises(ValueError, match="'experiment' and 'tensorboard' cannot be set together"):
            job.submit(**request.submit, experiment=settings.vertex.experiment)
    assert not fake.sent("POST", "/customJobs")


def test_the_sdk_rejects_a_misspelled_job_field(job_request):
    _, _, request = job_request
    job = copy.deepcopy(request.job)
    job["worker_pool_specs"][0]["machine_spec"]["machine"] = job["worker_pool_specs"][0]["machine_spec"].pop(
        "machine_type"
    )
    init = {k: v for k, v in request.init.items() if not k.startswith("experiment")}
    with vertex_offline(**init) as sdk, pytest.raises(ValueError, match="Unknown field for MachineSpec: machine"):
        sdk.CustomJob(**job)


# ---- model upload, deploy with a traffic split, undeploy --------------------------------------------------------

DEPLOY_VARIANTS = {
    "a new version of the parent, all traffic": {
        "parent_exists": True,
        "traffic_percentage": 100,
        "aliases": ["champion"],
    },
    "first upload, a 10 % canary": {"parent_exists": False, "traffic_percentage": 10, "aliases": ["candidate"]},
}


@pytest.fixture(params=list(DEPLOY_VARIANTS), ids=list(DEPLOY_VARIANTS))
def deploy_request(request):
    variant = dict(DEPLOY_VARIANTS[request.param])
    settings = dev()
    aliases = variant.pop("aliases")
    return settings, variant, deploy_model.build_deploy(settings, "v1x", RECORD, aliases, **variant)


def test_deploy_calls_bind_to_the_sdk(deploy_request):
    """After the deploy, the endpoint holds the new model (id 3), the champion (1) and an old 0 % model (2)."""
    _, variant, request = deploy_request
    share = variant["traffic_percentage"]
    on_endpoint = [
        gca_endpoint.DeployedModel(id="1", display_name="fmnist-v1old"),
        gca_endpoint.DeployedModel(id="2", display_name="fmnist-v0older"),
        gca_endpoint.DeployedModel(id="3", display_name="fmnist-v1x"),
    ]
    sdk = SdkDouble(
        aiplatform,
        returns={"aiplatform.Model.upload": aiplatform.Model},
        results={
            "aiplatform.Model": None,  # no version of the parent carries v1x yet (the SDK raises NotFound)
            "aiplatform.Endpoint().gca_resource": gca_endpoint.Endpoint(  # before the deploy
                deployed_models=on_endpoint[:2], traffic_split={"1": 100}
            ),
            "aiplatform.Endpoint().list_models": on_endpoint,
            "aiplatform.Endpoint().traffic_split": {"3": 100} if share == 100 else {"1": 100 - share, "3": share},
        },
    )
    deploy_model.send(request, sdk)
    undeploys = ["aiplatform.Endpoint().undeploy"] * (2 if share == 100 else 1)
    looked_up = ["aiplatform.Model"] if variant["parent_exists"] else []  # the version a retried deploy uploaded
    assert sdk.paths() == [
        "aiplatform.init",
        *looked_up,
        "aiplatform.Model.upload",
        "aiplatform.Endpoint",
        "aiplatform.Model.upload().deploy",
        "aiplatform.Endpoint().list_models",
        *undeploys,
    ]
    assert sdk.only("aiplatform.Model.upload") == request.upload
    if looked_up:
        assert sdk.only("aiplatform.Model") == {"model_name": request.upload["parent_model"], "version": "v1x"}
    assert sdk.only("aiplatform.Endpoint") == {"endpoint_name": request.endpoint}
    deployed = sdk.only("aiplatform.Model.upload().deploy")
    assert isinstance(deployed.pop("endpoint"), SdkDouble) and deployed == request.deploy
    undeployed = [c.arguments for c in sdk.calls if c.path == "aiplatform.Endpoint().undeploy"]
    if share == 100:  # a new champion: every other model goes
        assert undeployed == [{"deployed_model_id": i, "traffic_split": {"3": 100}, "sync": True} for i in ("1", "2")]
    else:  # a canary: the champion stays beside it, the older model goes
        assert undeployed == [{"deployed_model_id": "2", "traffic_split": {"3": share, "1": 100 - share}, "sync": True}]


def test_deploy_model_over_the_wire_leaves_champion_and_challenger_only(deploy_request):
    """`deploy_model.send` with the real SDK against the local fake: an endpoint holding the champion (111, all
    traffic) and an old model at 0 % (112). After a full deploy only the new model serves; after a canary the
    champion stays beside it; the old model goes either way."""
    settings, variant, request = deploy_request
    share = variant["traffic_percentage"]
    parent = settings.names.parent_model_name
    with vertex_over_the_wire(settings.project_id, settings.region) as fake:
        fake.seed_endpoint(request.endpoint, {"111": "fmnist-v1old", "112": "fmnist-v0older"}, {"111": 100})
        if variant["parent_exists"]:
            first = {"modelId": settings.vertex.parent_model, "model": {"displayName": "x"}}
            fake.upload_model(parent.rpartition("/")[0], first)
        model = deploy_model.send(request)
    endpoint = fake.resources[request.endpoint]
    [new] = [d for d in endpoint["deployedModels"] if d["displayName"] == "fmnist-v1x"]
    kept = {new["id"]: share} if share == 100 else {new["id"]: share, "111": 100 - share}
    assert endpoint["trafficSplit"] == kept and {d["id"] for d in endpoint["deployedModels"]} == set(kept)
    assert model.version_id == ("2" if variant["parent_exists"] else "1")
    uploaded = fake.only("POST", "models:upload").body
    assert uploaded["model"]["encryptionSpec"] == {"kmsKeyName": settings.names.kms_key_name}
    undeployed = [r.body["deployedModelId"] for r in fake.sent("POST", f"{request.endpoint}:undeployModel")]
    assert undeployed == (["111", "112"] if share == 100 else ["112"])


def test_the_sdk_builds_the_upload_request(deploy_request):
    settings, variant, request = deploy_request
    with vertex_offline(**request.init) as sdk:
        sent = capture_rpc(sdk.Model, lambda: sdk.Model.upload(**request.upload)).only("upload_model")["request"]
    model = sent.model
    if variant["parent_exists"]:
        assert sent.parent_model == settings.names.parent_model_name and sent.model_id == ""
    else:
        assert sent.model_id == settings.vertex.parent_model and sent.parent_model == ""
    assert model.encryption_spec.kms_key_name == settings.names.kms_key_name
    assert model.artifact_uri == f"gs://fmnist-mlops-dev-models/{RECORD.path}"
    container = model.container_spec
    assert (container.predict_route, container.health_route) == ("/predict", "/health")
    assert [port.container_port for port in container.ports] == [8080]
    sent_env = {e.name: e.value for e in container.env}  # every variable, in the container spec the SDK sends
    assert sent_env == request.upload["serving_container_environment_variables"]
    assert sent_env["FMNIST_MODEL_VERSION"] == "v1x" and sent_env["PAGE_ENABLED"] == "false"
    assert "v1x" in model.version_aliases
    assert ("default" in model.version_aliases) is (variant["traffic_percentage"] == 100)


def test_the_sdk_builds_the_deploy_request_with_the_traffic_split(deploy_request):
    settings, variant, request = deploy_request
    with vertex_offline(**request.init):
        model = offline_model(settings.names.parent_model_name, version_id="2")
        endpoint = offline_endpoint(request.endpoint, {"111": 100})
        sent = capture_rpc(endpoint, lambda: model.deploy(endpoint=endpoint, **request.deploy)).only("deploy_model")
    share = variant["traffic_percentage"]
    assert sent["endpoint"] == request.endpoint
    assert dict(sent["traffic_split"]) == ({"0": 100} if share == 100 else {"111": 100 - share, "0": share})
    deployed = sent["deployed_model"]
    assert deployed.display_name == "fmnist-v1x"
    assert deployed.service_account == settings.names.runtime_account("service")
    resources = deployed.dedicated_resources
    assert resources.machine_spec.machine_type == settings.vertex.serving_machine_type
    assert (resources.min_replica_count, resources.max_replica_count) == (
        settings.vertex.min_replica_count,
        settings.vertex.max_replica_count,
    )


def test_undeploy_all_calls_bind_to_the_sdk():
    settings = dev()
    sdk = SdkDouble(aiplatform, results={"aiplatform.Endpoint().list_models": ["a", "b", "c"]})
    assert undeploy_all.undeploy_all(settings, sdk) == f"undeployed 3 model(s) from {settings.names.endpoint_name}"
    assert sdk.paths() == [
        "aiplatform.init",
        "aiplatform.Endpoint",
        "aiplatform.Endpoint().list_models",
        "aiplatform.Endpoint().undeploy_all",
    ]
    assert sdk.only("aiplatform.init") == {"project": settings.project_id, "location": settings.region}
    assert sdk.only("aiplatform.Endpoint") == {"endpoint_name": settings.names.endpoint_name}
    assert sdk.only("aiplatform.Endpoint().undeploy_all") == {"sync": True}


def test_undeploy_all_of_a_missing_endpoint_is_not_an_error():
    settings = dev()

    class Missing(SdkDouble):
        def __getattr__(self, attr):
            if attr == "Endpoint":

                def endpoint(name):
                    bind(aiplatform.Endpoint, name)
                    raise google_exceptions.NotFound("no endpoint")

                return endpoint
            return super().__getattr__(attr)

    assert undeploy_all.undeploy_all(settings, Missing(aiplatform)) == (
        f"endpoint {settings.names.endpoint_name} does not exist: nothing to undeploy"
    )


def test_parent_exists_asks_the_model_by_name():
    double = SdkDouble(aiplatform)
    assert deploy_model.parent_exists(double, "projects/p/locations/l/models/m") is True
    assert double.only("aiplatform.Model") == {"model_name": "projects/p/locations/l/models/m"}

    class NoModel:
        @staticmethod
        def Model(model_name):
            raise google_exceptions.NotFound(model_name)

    assert deploy_model.parent_exists(NoModel, "projects/p/locations/l/models/m") is False


# ---- Experiments ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tensorboard", [TENSORBOARD, None], ids=["with TensorBoard", "without"])
def test_experiment_tracking_calls_bind_to_the_sdk(tensorboard):
    settings = dev(**({"FMNIST_VERTEX__TENSORBOARD": tensorboard} if tensorboard else {}))
    sdk = SdkDouble(aiplatform)
    tracker = VertexExperiment(settings, "run-1", aiplatform=sdk, environ={})
    tracker.start({"epochs": 2, "width": 8.5, "preset": "demo", "nested": {"x": 1}}, resume=True)
    tracker.log_epoch(3, {"loss": 0.5})
    tracker.finish({"test_accuracy": 0.9})
    assert tracker.active is True
    series = ["aiplatform.log_time_series_metrics"] if tensorboard else []  # time series need a TensorBoard
    assert sdk.paths() == [
        "aiplatform.init",
        "aiplatform.start_run",
        "aiplatform.log_params",
        *series,
        "aiplatform.log_metrics",
        "aiplatform.end_run",
    ]
    assert sdk.only("aiplatform.init") == {
        "project": settings.project_id,
        "location": settings.region,
        "experiment": settings.vertex.experiment,
        "experiment_tensorboard": tensorboard or False,
    }
    assert sdk.only("aiplatform.start_run") == {"run": "run-1", "resume": True}
    assert sdk.only("aiplatform.log_params") == {"params": {"epochs": 2, "width": 8.5, "preset": "demo"}}
    if tensorboard:
        assert sdk.only("aiplatform.log_time_series_metrics") == {"metrics": {"loss": 0.5}, "step": 3}
    assert sdk.only("aiplatform.log_metrics") == {"metrics": {"test_accuracy": 0.9}}


def test_inside_a_custom_job_tracking_joins_the_run_the_sdk_named():
    settings = dev()
    sdk = SdkDouble(aiplatform)
    tracker = VertexExperiment(settings, "run-1", aiplatform=sdk, environ={"AIP_EXPERIMENT_RUN_NAME": "r"})
    tracker.start({}, resume=False)
    tracker.finish({"test_accuracy": 0.9})
    assert sdk.paths() == ["aiplatform.init", "aiplatform.log_params", "aiplatform.log_metrics"]
    assert sdk.only("aiplatform.init") == {"project": settings.project_id, "location": settings.region}


@pytest.mark.parametrize(
    "error",
    [google_exceptions.PermissionDenied("no"), ConnectionError("reset")],
    ids=["a cloud error", "a lost connection"],
)
def test_a_cloud_error_stops_tracking_once_with_a_warning(error, capsys):
    class Failing(SdkDouble):
        def __getattr__(self, attr):
            real = super().__getattr__(attr)
            if attr != "log_time_series_metrics":
                return real

            def fail(*args, **kwargs):
                real(*args, **kwargs)
                raise error

            return fail

    sdk = Failing(aiplatform)
    settings = dev(FMNIST_VERTEX__TENSORBOARD="projects/p/locations/l/tensorboards/1")  # time series need one
    tracker = VertexExperiment(settings, "run-1", aiplatform=sdk, environ={})
    tracker.start({}, resume=False)
    tracker.log_epoch(1, {"loss": 1.0})
    tracker.log_epoch(2, {"loss": 0.9})
    tracker.finish({"test_accuracy": 0.9})
    assert tracker.active is False
    assert sdk.paths() == [
        "aiplatform.init",
        "aiplatform.start_run",
        "aiplatform.log_params",
        "aiplatform.log_time_series_metrics",
    ]
    err = capsys.readouterr().err
    assert err.count("warning: Vertex AI Experiments tracking stopped") == 1 and type(error).__name__ in err


def test_a_wrong_keyword_in_tracking_fails_loudly(monkeypatch):
    """The real SDK rejects `tensorboard=` with a TypeError; the guard must let it through."""
    sdk = SdkDouble(aiplatform)
    real_init = sdk.init

    def misspelled(**kwargs):
        kwargs["tensorboard"] = kwargs.pop("experiment_tensorboard")
        return real_init(**kwargs)

    tracker = VertexExperiment(dev(), "run-1", aiplatform=sdk, environ={})
    monkeypatch.setattr(tracker, "_sdk", lambda: type("M", (), {"init": staticmethod(misspelled)})())
    with pytest.raises(TypeError, match="tensorboard"):
        tracker.start({}, resume=False)
    assert tracker.active is False


# ---- AutoML -----------------------------------------------------------------------------------------------------


@pytest.fixture(params=["infra/ key", "configured key"])
def automl_request(request):
    settings = dev(**({"FMNIST_VERTEX__KMS_KEY": KMS_OVERRIDE} if request.param == "configured key" else {}))
    return settings, automl.build_request(settings, "gs://fmnist-mlops-dev-datasets/x/import.jsonl", "v-Abc1")


def test_automl_calls_bind_to_the_sdk(automl_request):
    _, request = automl_request
    sdk = SdkDouble(aiplatform, results={"aiplatform.ImageDataset.list": []})
    automl._find_or_create_dataset(sdk, request)
    assert sdk.paths() == ["aiplatform.ImageDataset.list", "aiplatform.ImageDataset.create"]
    assert sdk.only("aiplatform.ImageDataset.list") == {"filter": 'display_name="fmnist-v-Abc1"'}
    assert sdk.only("aiplatform.ImageDataset.create") == request.dataset
    bind(aiplatform.init, **request.init)
    bind(aiplatform.AutoMLImageTrainingJob.run, None, dataset=None, **request.run)

    found = SdkDouble(aiplatform, results={"aiplatform.ImageDataset.list": ["existing"]})
    assert automl._find_or_create_dataset(found, request) == "existing"
    assert found.paths() == ["aiplatform.ImageDataset.list"]


def test_the_sdk_builds_the_automl_job_with_cmek_everywhere(automl_request):
    settings, request = automl_request
    init = {k: v for k, v in request.init.items() if k != "experiment"}
    with vertex_offline(**init) as sdk:
        job = sdk.AutoMLImageTrainingJob(**request.job)
    key = settings.names.kms_key_name
    assert request.dataset["encryption_spec_key_name"] == key
    assert job._training_encryption_spec.kms_key_name == key and job._model_encryption_spec.kms_key_name == key
    assert job._model_type == "CLOUD" and job._prediction_type == "classification" and job._multi_label is False
    assert dict(job._labels) == {"dataset_version": "v-abc1", "source": "automl"}


def test_automl_run_drives_the_sdk_in_order_and_registers_the_model(gcs_settings, monkeypatch, capsys):
    """The whole `automl` command on the gcp target (buckets on the GCS emulator), the SDK a checking double."""
    import google.cloud

    import trainer.data.export_images
    from trainer.models.registry import ModelRegistry

    import_uri = storage_uri = f"{gcs_settings.datasets_bucket}/automl/v-1/import.jsonl"
    monkeypatch.setattr(
        trainer.data.export_images,
        "export_images",
        lambda settings, version: (import_uri, {"dataset_version": "v-1"}, 0),
    )
    evaluation = {"confusionMatrix": {"rows": [[9, 1], [0, 10]]}, "auPrc": 0.99}

    class Evaluation:
        def to_dict(self):
            return {"metrics": evaluation}

    sdk = SdkDouble(
        aiplatform,
        returns={"aiplatform.AutoMLImageTrainingJob().run": aiplatform.Model},
        results={
            "aiplatform.ImageDataset.list": [],
            "aiplatform.ImageDataset.create": "dataset",
            "aiplatform.AutoMLImageTrainingJob().run().list_model_evaluations": [Evaluation()],
            "aiplatform.AutoMLImageTrainingJob().run().resource_name": "projects/p/locations/l/models/9",
        },
    )
    monkeypatch.setattr(google.cloud, "aiplatform", sdk)
    monkeypatch.setitem(sys.modules, "google.cloud.aiplatform", sdk)
    args = type("Args", (), {"version": None, "budget": None, "dry_run": False})()
    assert automl.run(args, gcs_settings) == 0
    request = automl.build_request(gcs_settings, storage_uri, "v-1")
    assert sdk.paths() == [
        "aiplatform.init",
        "aiplatform.ImageDataset.list",
        "aiplatform.ImageDataset.create",
        "aiplatform.start_run",
        "aiplatform.log_params",
        "aiplatform.AutoMLImageTrainingJob",
        "aiplatform.AutoMLImageTrainingJob().run",
        "aiplatform.AutoMLImageTrainingJob().run().list_model_evaluations",
        "aiplatform.log_metrics",
        "aiplatform.end_run",
    ]
    assert sdk.only("aiplatform.init") == request.init
    assert sdk.only("aiplatform.AutoMLImageTrainingJob") == request.job
    assert sdk.only("aiplatform.AutoMLImageTrainingJob().run") == {"dataset": "dataset", **request.run}
    assert sdk.only("aiplatform.log_params") == {
        "params": {"source": "automl", "dataset_version": "v-1", "budget_milli_node_hours": 8000}
    }
    assert sdk.only("aiplatform.log_metrics")["metrics"] == {
        "accuracy": 0.95,
        "macro_recall": 0.95,
        "macro_precision": pytest.approx((1 + 10 / 11) / 2),
        "macro_f1": pytest.approx((2 * 0.9 / 1.9 + 2 * (10 / 11) / (10 / 11 + 1)) / 2),
        "automl_auprc": 0.99,
    }
    index = ModelRegistry.from_settings(gcs_settings).read_index().to_json()
    [(version, record)] = index["versions"].items()
    assert record["source"] == "automl" and record["vertex_model"] == "projects/p/locations/l/models/9"
    assert record["metrics"]["accuracy"] == 0.95 and index["aliases"]["candidate"] == version
    assert record["dataset_version"] == "v-1" and record["class_names"] == list(CLASS_NAMES)
    assert 0 <= record["training_seconds"] < 60  # seconds since start, not an absolute time
    assert re.fullmatch(r"automl-\d{10}", sdk.only("aiplatform.start_run")["run"])
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"AutoML model projects/p/locations/l/models/9 registered as {version} (candidate): "
        + json.dumps(automl.metrics_from_evaluation(evaluation))
    )


def test_tracking_reads_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("AIP_EXPERIMENT_RUN_NAME", "run-from-vertex")
    sdk = SdkDouble(aiplatform)
    VertexExperiment(dev(), "run-1", aiplatform=sdk).start({}, resume=False)
    assert "aiplatform.start_run" not in sdk.paths()  # inside a custom job: the SDK's run, not a new one


def test_sigterm_while_waiting_cancels_the_job_over_the_wire(monkeypatch):
    """A cancelled pipeline run stops its task with SIGTERM: the job it waits for is cancelled, not orphaned."""
    import os
    import signal
    import threading

    from google.cloud.aiplatform import jobs

    monkeypatch.setattr(jobs, "_JOB_WAIT_TIME", 0.05)  # poll quickly: the job stays pending until cancelled
    settings = dev()
    parent = f"projects/{settings.project_id}/locations/{settings.region}"
    before = signal.getsignal(signal.SIGTERM)
    with vertex_over_the_wire(settings.project_id, settings.region) as fake:
        fake.job_state = "JOB_STATE_RUNNING"
        fake.seed_experiment(parent, settings.vertex.experiment)
        timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
        timer.start()
        with pytest.raises(SystemExit) as stopped:
            submit.send(submit.build_custom_job(settings, [], display_name="j-1"), wait=True)
        timer.join()
    assert stopped.value.code == 128 + signal.SIGTERM
    assert fake.summary().count(f"POST {parent}/customJobs/1:cancel") == 1
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is the previous one again


def test_undeploy_all_over_the_wire_empties_the_endpoint_and_a_missing_one_is_not_an_error():
    settings = dev()
    name = settings.names.endpoint_name
    with vertex_over_the_wire(settings.project_id, settings.region) as fake:
        fake.seed_endpoint(name, {"1": "fmnist-v1", "2": "fmnist-v2", "3": "fmnist-v0"}, {"1": 90, "2": 10})
        assert undeploy_all.undeploy_all(settings) == f"undeployed 3 model(s) from {name}"
        assert fake.resources[name]["deployedModels"] == [] and fake.resources[name]["trafficSplit"] == {}
        assert len(fake.sent("POST", f"{name}:undeployModel")) == 3
        del fake.resources[name]
        assert undeploy_all.undeploy_all(settings) == f"endpoint {name} does not exist: nothing to undeploy"


def test_parent_exists_over_the_wire():
    """Model(model_name) reads the model at once (unlike Endpoint(name)): a 404 there means no parent yet."""
    settings = dev()
    parent = settings.names.parent_model_name
    with vertex_over_the_wire(settings.project_id, settings.region) as fake:
        assert deploy_model.parent_exists(aiplatform, parent) is False
        fake.upload_model(parent.rpartition("/")[0], {"modelId": settings.vertex.parent_model, "model": {}})
        assert deploy_model.parent_exists(aiplatform, parent) is True
