"""The compiled gcp (dev) pipelines executed as Vertex AI Pipelines executes them, against the twin: each task's own
command and arguments in the trainer image (lifecycle/orchestration/run_compiled.py, `--in-image`), with only a
Vertex AI task's environment plus the twin's platform variables, on the host network where the fakes listen. The
custom job the train task submits runs the trainer image again (twin/jobs.py); the promoter's gate job runs it
through the twin's Cloud Run (twin/run.py). Then the compiled prediction pipeline scores PNGs with the champion the
lifecycle deployed: a batch prediction job of the twin's Vertex AI, which runs the serving image of that version
over the file list (twin/batch.py). Needs both images (`make images`), kfp's venv and root."""

from __future__ import annotations

import base64
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import storage
from contracts.registry_index import parse_index
from lifecycle.orchestration.plan import PROMOTED
from lifecycle.orchestration.run_compiled import GCS_MOUNT, CompiledRun, InImage, run_compiled
from settings import load_config
from tests.containers.conftest import FIGURES
from tests.lifecycle.test_pipeline import compile_env, needs_kfp
from trainer.data.synthetic import make_idx_dir, make_images
from twin.__main__ import SMOKE_GATE, summary
from twin.batch import RESULTS
from twin.cloud import Twin, running

pytestmark = [pytest.mark.container, pytest.mark.slow, needs_kfp]
JOB = "fmnist-lifecycle-twin-in-image"
PREDICTION_JOB = "fmnist-batch-prediction-twin-in-image"
LIFECYCLE_TASKS = [
    "ingest",
    "analyze",
    "features",
    "feed-feature-store",
    "train",
    "export",
    "promote",
    "deploy-model",
    "import-evaluation",
    "registry",
]


COMPILE_ENV = {"FMNIST_STORAGE_ROOT": GCS_MOUNT, **SMOKE_GATE}  # the promoter's local key: /gcs/promoter in a task


@dataclass
class TwinRun:
    twin: Twin
    settings: object
    in_image: InImage
    work: Path
    lifecycle: CompiledRun
    seconds: float


@pytest.fixture(scope="module")
def twin_run(trainer_image, tmp_path_factory):
    """The compiled dev lifecycle, run once in the image against one twin that stays up for the module's tests."""
    tmp = tmp_path_factory.mktemp("compiled-gcp")
    settings = load_config("dev", environ=SMOKE_GATE)  # the twin's gate: no approval wait, a smoke accuracy floor
    idx = make_idx_dir(tmp / "idx", 600, 200)
    pipeline = tmp / "lifecycle.yaml"
    compile_env("dev", pipeline, "--preset", "smoke", environ=COMPILE_ENV)
    mlops = tmp / "mlops"  # the promoter's local signing key: mlops/promoter, /gcs/promoter in a task
    mlops.mkdir()
    with running(settings, tmp / "twin") as twin:
        for path in sorted(idx.iterdir()):  # where the new-data trigger watches: the compiled ingest's default source
            storage.upload_file(path, storage.join(settings.names.raw_data_uri, path.name))
        twin.run.job_env.update({**SMOKE_GATE, "FMNIST_STORAGE_ROOT": str(mlops)})
        twin.run.mounts.append(str(mlops))
        in_image = InImage(
            trainer_image, mlops, twin.container_platform, network="host", volumes=twin.container_volumes
        )
        start = time.perf_counter()
        run = run_compiled(pipeline, tmp / "work", JOB, in_image=in_image, log=print)
        seconds = time.perf_counter() - start
        FIGURES["compiled gcp lifecycle in the trainer image against the twin (600/200 images, 10 tasks)"] = (
            f"{seconds:.1f} s: " + ", ".join(f"{t.name} {t.seconds:.1f} s" for t in run.tasks.values())
        )
        yield TwinRun(twin, settings, in_image, tmp, run, seconds)


def test_the_compiled_gcp_lifecycle_runs_end_to_end_in_the_trainer_image_against_the_twin(twin_run):
    run, twin, settings = twin_run.lifecycle, twin_run.twin, twin_run.settings
    record = summary(twin)
    assert sorted(run.tasks) == sorted(LIFECYCLE_TASKS) and not run.skipped, (list(run.tasks), run.skipped)
    assert run.tasks["promote"].parameters["outcome"] == PROMOTED
    # the registry the promoter's gate job wrote, read as the trainer reads it: the run's model is the champion
    index = parse_index(storage.read_text(storage.join(settings.models_bucket, "registry", "index.json")), "index")
    version = run.tasks["promote"].artifacts["model"]["metadata"]["model_version"]
    assert index.aliases["champion"] == version, index.aliases
    assert run.tasks["export"].artifacts["evaluation"]["uri"].startswith(f"{settings.models_bucket}/jobs/{JOB}/")
    # training ran as a custom job in the image, published for cancellation
    assert list(record["custom_jobs"].values()) == ["JOB_STATE_SUCCEEDED"], record["custom_jobs"]
    assert "CustomJob" in run.tasks["train"].parameters["gcp_resources"]
    assert record["bigquery_rows"] and set(record["bigquery_rows"].values()) == {800}, record["bigquery_rows"]
    # deploy-model: the champion, uploaded as a version of the parent model (alias: its registry version), deployed
    # alone on the endpoint with all the traffic
    parent = settings.names.parent_model_name
    assert f"{parent}@{version}" in twin.vertex.resources, record["model_versions"]
    endpoint = twin.vertex.resources[settings.names.endpoint_name]
    assert len(endpoint["deployedModels"]) == 1 and list(endpoint["trafficSplit"].values()) == [100], endpoint
    # import-evaluation: one evaluation under that model version
    evaluations = [e for e in record["evaluations"] if "/slices/" not in e]
    assert len(evaluations) == 1 and evaluations[0].startswith(f"{parent}@{version}/evaluations/"), evaluations
    assert not record["requests_without_credentials"], record["requests_without_credentials"]
    print(json.dumps({"seconds": round(twin_run.seconds, 1), **record}, indent=2))


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def test_the_compiled_prediction_pipeline_scores_with_the_deployed_champion_in_the_trainer_image(
    twin_run, service_image
):
    settings, twin = twin_run.settings, twin_run.twin
    names = settings.names
    images = make_images(np.arange(3) % 10, seed=7)
    pngs = [storage.join(names.batch_input_uri, f"test-{i}.png") for i in range(3)]
    for uri, image in zip(pngs, images, strict=False):  # the prediction pipeline's default source: a PNG prefix
        storage.write_bytes(uri, _png(image), content_type="image/png")
    pipeline = twin_run.work / "prediction.yaml"
    compile_env("dev", pipeline, "--pipeline", "prediction", environ=COMPILE_ENV)
    start = time.perf_counter()
    run = run_compiled(pipeline, twin_run.work / "prediction", PREDICTION_JOB, in_image=twin_run.in_image, log=print)
    FIGURES["compiled prediction pipeline in the trainer image against the twin (1 task)"] = (
        f"{time.perf_counter() - start:.1f} s"
    )
    assert list(run.tasks) == ["batch-prediction"]
    jobs = {k: v for k, v in twin.vertex.resources.items() if "/batchPredictionJobs/" in k}
    [(name, job)] = jobs.items()
    assert "BatchPredictionJob" in run.tasks["batch-prediction"].parameters["gcp_resources"]
    assert name in run.tasks["batch-prediction"].parameters["gcp_resources"]
    # the champion's version, as deploy-model uploaded it (its registry version is a version alias)
    champion = twin_run.lifecycle.tasks["promote"].artifacts["model"]["metadata"]["model_version"]
    assert job["model"] == f"{names.parent_model_name}@{champion}" and job["model"] in twin.vertex.resources
    assert job["displayName"] == PREDICTION_JOB and job["inputConfig"]["instancesFormat"] == "file-list"
    destination = storage.join(names.batch_predictions_uri, PREDICTION_JOB)
    assert job["outputConfig"]["gcsDestination"]["outputUriPrefix"] == destination
    [file_list] = job["inputConfig"]["gcsSource"]["uris"]
    assert storage.read_text(file_list).split() == pngs  # what the job's replicas would score
    output = run.tasks["batch-prediction"].artifacts["predictions"]
    assert output["uri"] == destination
    # the job ran the serving image of the deployed version over the file list (twin/batch.py): one line per PNG
    assert job["state"] == "JOB_STATE_SUCCEEDED" and job["outputInfo"]["gcsOutputDirectory"].startswith(destination)
    results = storage.read_text(storage.join(job["outputInfo"]["gcsOutputDirectory"], RESULTS)).splitlines()
    scored = [json.loads(line) for line in results]
    assert len(scored) == len(pngs) and all(len(row["prediction"]["probabilities"]) == 10 for row in scored)
    sent = [base64.b64decode(row["instance"]["b64"]) for row in scored]
    assert sent == [storage.read_bytes(uri) for uri in pngs]  # each PNG as its own instance, in the list's order
