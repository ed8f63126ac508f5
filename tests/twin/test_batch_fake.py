"""The twin's batch prediction jobs (twin/batch.py, twin/vertex.py): a job runs its model version's serving container
with the variables Vertex AI gives it, over the instances its input names, and reads back SUCCEEDED with where the
predictions went. (The container itself runs in tests/containers/test_compiled_gcp_in_image.py.)"""

from __future__ import annotations

import base64
import json
import time

import storage
from twin import wire
from twin.batch import instances, serving_command
from twin.vertex import FakeVertex

PARENT = "projects/p/locations/l"
MODEL = {
    "displayName": "fmnist-classifier",
    "artifactUri": "gs://models/registry/versions/v1",
    "containerSpec": {
        "imageUri": "europe-west4-docker.pkg.dev/p/images/service:src-1",
        "predictRoute": "/v1/predict",
        "healthRoute": "/v1/health",
        "env": [{"name": "FMNIST_MODEL_VERSION", "value": "v1"}],
    },
}


def _request(method: str, path: str, body: dict | None = None) -> wire.Request:
    return wire.parse(method, f"/v1/{path}", json.dumps(body or {}).encode(), ("/v1/",), "Bearer t")


def test_the_serving_container_gets_the_versions_spec_and_the_variables_vertex_ai_sets():
    command = serving_command(
        "c", MODEL, "localhost/fmnist-service:src-1", 8123, {"STORAGE_EMULATOR_HOST": "h"}, ["a:b"]
    )
    envs = dict(command[i + 1].split("=", 1) for i, word in enumerate(command) if word == "--env")
    assert envs == {
        "STORAGE_EMULATOR_HOST": "h",
        "FMNIST_MODEL_VERSION": "v1",
        "AIP_HTTP_PORT": "8123",
        "AIP_HEALTH_ROUTE": "/v1/health",
        "AIP_PREDICT_ROUTE": "/v1/predict",
        "AIP_STORAGE_URI": "gs://models/registry/versions/v1",
        "AIP_MODE": "PREDICTION",
    }
    assert command[-1] == "localhost/fmnist-service:src-1" and "a:b" in command


def test_a_file_list_sends_each_listed_object_base64_encoded(gcs_bucket):
    pngs = [f"{gcs_bucket}/incoming/{i}.png" for i in range(2)]
    for i, uri in enumerate(pngs):
        storage.write_bytes(uri, bytes([i]) * 5)
    storage.write_text(f"{gcs_bucket}/out/inputs.txt", "".join(u + "\n" for u in pngs))
    job = {"inputConfig": {"instancesFormat": "file-list", "gcsSource": {"uris": [f"{gcs_bucket}/out/inputs.txt"]}}}
    assert instances(job) == [{"b64": base64.b64encode(bytes([i]) * 5).decode()} for i in range(2)]


def test_a_batch_job_runs_on_the_model_version_it_names_and_reads_back_what_the_run_gave():
    ran = []

    def runner(name, job, model):
        ran.append((name, job["displayName"], model and model["artifactUri"]))
        return "", {"outputInfo": {"gcsOutputDirectory": "gs://dev/out/prediction-x"}}

    fake = FakeVertex(batch_runner=runner)
    fake.upload_model(
        f"{PARENT}/models", {"modelId": "fmnist-classifier", "model": {**MODEL, "versionAliases": ["v1"]}}
    )
    body = {"displayName": "b", "model": f"{PARENT}/models/fmnist-classifier@v1"}
    status, created = fake.answer(_request("POST", f"{PARENT}/batchPredictionJobs", body))
    assert status == 200
    fake.wait_for_jobs(timeout=10)
    _, job = fake.answer(_request("GET", created["name"]))
    assert ran == [(created["name"], "b", MODEL["artifactUri"])]
    assert (
        job["state"] == "JOB_STATE_SUCCEEDED" and job["outputInfo"]["gcsOutputDirectory"] == "gs://dev/out/prediction-x"
    )
    missing = {"displayName": "m", "model": f"{PARENT}/models/fmnist-classifier@v9"}
    fake.batch_runner = lambda name, job, model: ("no model" if model is None else "", {})
    _, created = fake.answer(_request("POST", f"{PARENT}/batchPredictionJobs", missing))
    deadline = time.monotonic() + 10
    while fake.resources[created["name"]]["state"] == "JOB_STATE_RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)
    _, job = fake.answer(_request("GET", created["name"]))
    assert job["state"] == "JOB_STATE_FAILED" and job["error"]["message"] == "no model"
