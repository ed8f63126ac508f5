"""The starter as Cloud Run functions runs it: functions-framework serving the unpacked source archive the stack
uploads (infra/components/starter_source.py), fed the payloads Google Cloud sends (tests/starter/payloads.py),
talking over HTTP to the Vertex AI REST fake (tests/vertex_fake.py) and to fake-gcs-server for its deferrals.

What must hold: a trigger starts one run, named by its event, without waiting for it, with the environment's key,
the pipelines account and the `latest` template; a redelivered event starts nothing more; per-file and foreign
events start nothing; a trigger during a run is recorded in Cloud Storage and started by the sweep once the run is
over (not before); the sweep with nothing deferred does nothing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from contracts.starter import DEFERRED, DEFERRED_OBJECT, SCHEDULE, StarterEnv
from infra.components.starter_source import archive_bytes
from tests import vertex_fake
from tests.starter import payloads

PROJECT, REGION = "fmnist-test", "europe-west4"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
KEY = f"projects/{PROJECT}/locations/{REGION}/keyRings/fmnist/cryptoKeys/fmnist-cmek"
DATASETS = "fmnist-test-datasets"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Function:
    url: str
    fake: vertex_fake.FakeVertex
    deferred: str  # gs:// uri of the deferrals object

    def send(self, headers: dict[str, str], body: bytes) -> dict:
        response = requests.post(self.url, headers=headers, data=body, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def creates(self) -> list[vertex_fake.Request]:
        return self.fake.sent("POST", "/pipelineJobs")

    def set_state(self, run: str, state: str) -> None:
        self.fake.resources[f"{PARENT}/pipelineJobs/{run}"]["state"] = state


@pytest.fixture
def function(tmp_path: Path, gcs_bucket: str) -> Iterator[Function]:
    source = tmp_path / "source"
    archive = tmp_path / "starter.zip"
    archive.write_bytes(archive_bytes())
    zipfile.ZipFile(archive).extractall(source)
    deferred = f"{gcs_bucket}/{DEFERRED_OBJECT}"
    with vertex_fake.serve() as fake:
        port = _free_port()
        environ = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            StarterEnv.PROJECT: PROJECT,
            StarterEnv.REGION: REGION,
            StarterEnv.PIPELINE_NAME: "fmnist-lifecycle",
            StarterEnv.TEMPLATE_URI: f"https://{REGION}-kfp.pkg.dev/{PROJECT}/p-pipelines/fmnist-lifecycle/latest",
            StarterEnv.PIPELINE_ACCOUNT: f"p-pipelines@{PROJECT}.iam.gserviceaccount.com",
            StarterEnv.PIPELINE_ROOT: "gs://p-dev/pipeline-root",
            StarterEnv.KMS_KEY: KEY,
            StarterEnv.DATASETS_BUCKET: DATASETS,
            StarterEnv.COMMIT_OBJECT: "raw/_COMMIT",
            StarterEnv.NEW_DATA_TOPIC: "fmnist-new-raw-data",
            StarterEnv.DRIFT_TOPIC: "fmnist-drift-alerts",
            StarterEnv.DEFERRED_URI: deferred,
            StarterEnv.LABELS: json.dumps({"app": "fmnist-mlops", "env": "dev"}),
            StarterEnv.AIPLATFORM_ENDPOINT: fake.endpoint,
            StarterEnv.STORAGE_EMULATOR_HOST: os.environ["STORAGE_EMULATOR_HOST"],
        }
        command = [sys.executable, "-m", "functions_framework", "--target", "start", "--source", "main.py"]
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=source,  # the archive's root, first on sys.path: its own starter and contracts packages
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            url = f"http://127.0.0.1:{port}/"
            deadline = time.monotonic() + 60
            while True:
                try:
                    requests.get(url, timeout=2)
                    break
                except requests.ConnectionError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(process.stderr.read().decode()[-3000:] if process.stderr else "") from None
                    time.sleep(0.2)
            yield Function(url, fake, deferred)
        finally:
            process.terminate()
            process.wait(timeout=30)


def _deferred(function: Function) -> list[dict]:
    from storage import NotFound, read_bytes

    try:
        return json.loads(read_bytes(function.deferred))["triggers"]
    except NotFound:
        return []


def test_a_trigger_starts_one_run_named_by_its_event_and_does_not_wait_for_it(function: Function):
    from google.cloud.aiplatform_v1.types.pipeline_job import PipelineJob
    from google.protobuf import json_format

    commit = payloads.storage_notification(DATASETS, "raw/_COMMIT", "1765015200123456")
    answer = function.send(*payloads.eventarc(PROJECT, "fmnist-new-raw-data", commit))
    assert answer["action"] == "started" and answer["run"] == "fmnist-lifecycle-new-data-1765015200123456"
    [create] = function.creates()
    assert create.query == {"pipelineJobId": answer["run"]}
    body = create.body
    assert body["templateUri"].endswith("/fmnist-lifecycle/latest")
    assert body["serviceAccount"] == f"p-pipelines@{PROJECT}.iam.gserviceaccount.com"
    assert body["encryptionSpec"] == {"kmsKeyName": KEY}
    assert body["labels"] == {"app": "fmnist-mlops", "env": "dev", "trigger": "new-data"}
    json_format.ParseDict(body, PipelineJob.pb(PipelineJob()))  # every field is the API's (raises otherwise)
    # it listed the active runs first, then created; no GET of the run, no operation polled: it did not wait
    [listing] = function.fake.sent("GET", "/pipelineJobs")
    assert listing.query == {
        "filter": 'display_name="fmnist-lifecycle" AND (state="PIPELINE_STATE_QUEUED" OR '
        'state="PIPELINE_STATE_PENDING" OR state="PIPELINE_STATE_RUNNING")',
        "orderBy": "create_time desc",
    }
    assert function.fake.summary() == [f"GET {PARENT}/pipelineJobs", f"POST {PARENT}/pipelineJobs"]

    # Pub/Sub and Eventarc deliver at least once: the same event again starts nothing, finished or running
    assert function.send(*payloads.eventarc(PROJECT, "fmnist-new-raw-data", commit))["action"] == "exists"
    function.set_state(answer["run"], "PIPELINE_STATE_RUNNING")
    assert function.send(*payloads.eventarc(PROJECT, "fmnist-new-raw-data", commit))["action"] == "exists"
    assert len(function.creates()) == 2  # the second create answered 409; none after
    # ...and once it is over, while another run is active: still its own run, not a trigger to defer
    function.set_state(answer["run"], "PIPELINE_STATE_SUCCEEDED")
    function.fake.resources[f"{PARENT}/pipelineJobs/other"] = {
        "name": f"{PARENT}/pipelineJobs/other",
        "displayName": "fmnist-lifecycle",
        "state": "PIPELINE_STATE_RUNNING",
    }
    assert function.send(*payloads.eventarc(PROJECT, "fmnist-new-raw-data", commit))["action"] == "exists"
    assert len(function.creates()) == 2
    assert _deferred(function) == []


def test_per_file_and_foreign_events_start_nothing(function: Function):
    sent = [
        payloads.eventarc(PROJECT, "fmnist-new-raw-data", payloads.storage_notification(DATASETS, name, "1"))
        for name in ("raw/train-images-idx3-ubyte.gz", "raw/t10k-labels-idx1-ubyte.gz", "exports/png/1.png")
    ]
    sent.append(payloads.eventarc(PROJECT, "fmnist-drift-alerts", payloads.drift_incident("closed")))
    sent.append(payloads.eventarc(PROJECT, "fmnist-budget-alerts", payloads.budget()))
    sent.append(payloads.storage_finalized(DATASETS, "exports/png/2.png", "3"))
    for headers, body in sent:
        assert function.send(headers, body)["action"] == "ignored"
    assert function.fake.requests == []  # not even a listing
    bad = requests.post(function.url, data=b"{}", headers={"Content-Type": "application/json"}, timeout=30)
    assert bad.status_code == 400 and "CloudEvent" in bad.json()["error"]


def test_a_trigger_during_a_run_is_recorded_and_started_by_the_sweep_once_the_run_is_over(function: Function):
    first = function.send(*payloads.scheduler(SCHEDULE, "2026-12-07T04:00:00Z"))
    assert first["action"] == "started"
    function.set_state(first["run"], "PIPELINE_STATE_RUNNING")  # what Vertex AI reports once it runs

    drift = payloads.eventarc(PROJECT, "fmnist-drift-alerts", payloads.drift_incident("open", "0.inc42"))
    answer = function.send(*drift)
    assert answer == {
        "action": "deferred",
        "run": first["run"],
        "reason": f"{first['run']} is active: drift starts a run after it",
    }
    function.send(*drift)  # redelivered: recorded once
    assert _deferred(function) == [{"kind": "drift", "key": "0.inc42", "detail": "drift incident opened"}]
    assert len(function.creates()) == 1

    sweep = payloads.scheduler(DEFERRED)
    assert function.send(*sweep)["action"] == "deferred"  # still running: the sweep waits too
    assert len(function.creates()) == 1

    function.set_state(first["run"], "PIPELINE_STATE_SUCCEEDED")
    started = function.send(*sweep)
    assert started["action"] == "started" and started["run"].startswith("fmnist-lifecycle-drift-")
    assert function.creates()[-1].body["labels"]["trigger"] == "drift"
    assert function.creates()[-1].body["labels"]["deferred"] == "1"
    assert _deferred(function) == []  # the run covers it
    assert function.send(*sweep) == {"action": "nothing-deferred", "run": "", "reason": "no trigger waits"}
    assert len(function.creates()) == 2


def test_a_failing_vertex_ai_is_a_500_so_the_sender_retries_and_the_deferral_stays(function: Function):
    function.fake.resources[f"{PARENT}/pipelineJobs/running"] = {
        "name": f"{PARENT}/pipelineJobs/running",
        "displayName": "fmnist-lifecycle",
        "state": "PIPELINE_STATE_RUNNING",
    }
    function.send(*payloads.scheduler(SCHEDULE))
    assert len(_deferred(function)) == 1
    del function.fake.resources[f"{PARENT}/pipelineJobs/running"]
    original = function.fake.answer

    def refuse(request):
        if request.method == "POST":
            function.fake.requests.append(request)
            return 403, {"error": {"code": 403, "message": "Permission 'aiplatform.pipelineJobs.create' denied"}}
        return original(request)

    function.fake.answer = refuse
    response = requests.post(function.url, data=payloads.scheduler(DEFERRED)[1], timeout=30)
    assert response.status_code == 500 and "aiplatform.pipelineJobs.create" in response.json()["error"]
    assert len(_deferred(function)) == 1  # not lost
