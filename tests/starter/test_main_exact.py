"""The function's request handler (`starter.main.handle`) in-process, with exact answers: what each outcome's HTTP
status and JSON are (a 400 or 500 tells Eventarc and Cloud Scheduler whether to retry; a 200 for an ignored event
keeps its sender from retrying it), and that every variable reaches the PipelineJob it creates. Over HTTP against
the Vertex AI REST fake and fake-gcs-server, as tests/starter/test_function.py does in a process of its own (where
a mutation tool cannot see which mutant runs)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest
import requests

from contracts.starter import StarterEnv
from starter.config import Config, ConfigError
from starter.events import BadEvent, parse
from starter.main import handle
from tests import vertex_fake
from tests.starter import payloads

PROJECT, REGION = "fmnist-main", "europe-west4"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
KEY = f"{PARENT}/keyRings/fmnist/cryptoKeys/fmnist-cmek"
DATASETS = "fmnist-main-datasets"
TEMPLATE = f"https://{REGION}-kfp.pkg.dev/{PROJECT}/p-pipelines/fmnist-lifecycle/latest"
ACCOUNT = f"p-pipelines@{PROJECT}.iam.gserviceaccount.com"
ROOT = "gs://p-dev/pipeline-root"


@dataclass
class Starter:
    closed: str  # a port bound and never listened on: a connection is refused at once
    fake: vertex_fake.FakeVertex
    environ: dict[str, str]
    emulator: str
    deferred: str

    def deferred_triggers(self) -> list[dict]:
        bucket, _, name = self.deferred[len("gs://") :].partition("/")
        url = f"{self.emulator}/storage/v1/b/{bucket}/o/{quote(name, safe='')}"
        response = requests.get(url, params={"alt": "media"}, timeout=30)
        return [] if response.status_code == 404 else json.loads(response.content)["triggers"]

    def seed_active_run(self, name: str = "running") -> None:
        self.fake.resources[f"{PARENT}/pipelineJobs/{name}"] = {
            "name": f"{PARENT}/pipelineJobs/{name}",
            "displayName": "fmnist-lifecycle",
            "state": "PIPELINE_STATE_RUNNING",
        }


@pytest.fixture
def starter(gcs_emulator, gcs_bucket: str, monkeypatch) -> Iterator[Starter]:
    with socket.socket() as unlistened, vertex_fake.serve() as fake:
        unlistened.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{unlistened.getsockname()[1]}"
        # the handler reads the emulator from the environment it is given, never from the process's: the process's
        # points nowhere, so a handler that read it could not reach Cloud Storage
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", closed)
        deferred = f"{gcs_bucket}/starter/deferred.json"
        environ = {
            StarterEnv.PROJECT: PROJECT,
            StarterEnv.REGION: REGION,
            StarterEnv.PIPELINE_NAME: "fmnist-lifecycle",
            StarterEnv.TEMPLATE_URI: TEMPLATE,
            StarterEnv.PIPELINE_ACCOUNT: ACCOUNT,
            StarterEnv.PIPELINE_ROOT: ROOT,
            StarterEnv.KMS_KEY: KEY,
            StarterEnv.DATASETS_BUCKET: DATASETS,
            StarterEnv.COMMIT_OBJECT: "raw/_COMMIT",
            StarterEnv.NEW_DATA_TOPIC: "fmnist-new-raw-data",
            StarterEnv.DRIFT_TOPIC: "fmnist-drift-alerts",
            StarterEnv.DEFERRED_URI: deferred,
            StarterEnv.LABELS: json.dumps({"app": "fmnist-mlops", "env": "dev"}),
            StarterEnv.AIPLATFORM_ENDPOINT: fake.endpoint,
            StarterEnv.STORAGE_EMULATOR_HOST: gcs_emulator.url,
        }
        yield Starter(closed, fake, environ, gcs_emulator.url.rstrip("/"), deferred)


def _commit(generation: str = "1765015200123456") -> tuple[dict[str, str], bytes]:
    return payloads.eventarc(
        PROJECT, "fmnist-new-raw-data", payloads.storage_notification(DATASETS, "raw/_COMMIT", generation)
    )


def test_a_trigger_creates_the_run_with_every_variable_in_its_place_and_answers_200(starter: Starter):
    status, answer = handle(*_commit(), starter.environ)
    run = "fmnist-lifecycle-new-data-1765015200123456"
    assert (status, answer) == (200, {"action": "started", "run": run, "reason": answer["reason"]})
    assert answer["reason"]  # says why, for the log line
    assert starter.fake.summary() == [f"GET {PARENT}/pipelineJobs", f"POST {PARENT}/pipelineJobs"]
    listing = starter.fake.only("GET", "/pipelineJobs")
    assert listing.query["filter"].startswith('display_name="fmnist-lifecycle" AND ')
    create = starter.fake.only("POST", "/pipelineJobs")
    assert create.query == {"pipelineJobId": run}
    assert create.body == {
        "displayName": "fmnist-lifecycle",
        "templateUri": TEMPLATE,
        "serviceAccount": ACCOUNT,
        "runtimeConfig": {"gcsOutputDirectory": ROOT},
        "encryptionSpec": {"kmsKeyName": KEY},
        "labels": {"app": "fmnist-mlops", "env": "dev", "trigger": "new-data"},
    }


def test_a_trigger_during_a_run_is_recorded_where_the_given_environment_points(starter: Starter):
    starter.seed_active_run()
    drift = payloads.eventarc(PROJECT, "fmnist-drift-alerts", payloads.drift_incident("open", "0.inc7"))
    status, answer = handle(*drift, starter.environ)
    assert (status, answer) == (
        200,
        {"action": "deferred", "run": "running", "reason": "running is active: drift starts a run after it"},
    )
    assert starter.deferred_triggers() == [{"kind": "drift", "key": "0.inc7", "detail": "drift incident opened"}]
    assert starter.fake.sent("POST", "/pipelineJobs") == []


def test_an_ignored_event_is_a_200_that_touches_nothing(starter: Starter):
    foreign = payloads.eventarc(PROJECT, "fmnist-budget-alerts", payloads.budget())
    expected = parse(*foreign, Config.load(starter.environ).sources)
    status, answer = handle(*foreign, starter.environ)
    assert (status, answer) == (200, {"action": "ignored", "run": "", "reason": expected.reason})  # type: ignore[union-attr]
    assert answer["reason"]
    assert starter.fake.requests == []


def test_an_unreadable_request_is_a_400_that_says_what_to_send(starter: Starter):
    headers, body = {"Content-Type": "application/json"}, b"{}"
    with pytest.raises(BadEvent) as raised:
        parse(headers, body, Config.load(starter.environ).sources)
    assert handle(headers, body, starter.environ) == (400, {"error": str(raised.value)})
    assert "CloudEvent" in str(raised.value)
    assert starter.fake.requests == []


def test_a_missing_variable_is_a_500_that_names_it(starter: Starter):
    environ = {k: v for k, v in starter.environ.items() if k != StarterEnv.TEMPLATE_URI}
    with pytest.raises(ConfigError) as raised:
        Config.load(environ)
    assert handle(*_commit(), environ) == (500, {"error": str(raised.value)})
    assert str(raised.value).startswith(f"missing {StarterEnv.TEMPLATE_URI}: ")
    assert starter.fake.requests == []


def test_a_refused_create_is_a_500_with_vertex_ais_message(starter: Starter):
    original = starter.fake.answer

    def refuse(request):
        if request.method == "POST":
            starter.fake.requests.append(request)
            return 403, {"error": {"code": 403, "message": "Permission 'aiplatform.pipelineJobs.create' denied"}}
        return original(request)

    starter.fake.answer = refuse  # type: ignore[method-assign]
    status, answer = handle(*_commit(), starter.environ)
    assert status == 500 and list(answer) == ["error"]
    assert answer["error"].startswith(f"POST {PARENT}/pipelineJobs") and "HTTP 403" in answer["error"]
    assert "aiplatform.pipelineJobs.create" in answer["error"]


def test_a_bad_deferrals_uri_is_a_500_before_any_run_starts(starter: Starter):
    environ = {**starter.environ, StarterEnv.DEFERRED_URI: "gs:///deferred.json"}
    status, answer = handle(*_commit(), environ)
    assert (status, answer) == (
        500,
        {"error": "'gs:///deferred.json': the deferrals object must be gs://<bucket>/<object>"},
    )
    assert starter.fake.requests == []


def test_an_unreachable_vertex_ai_is_a_500_so_the_sender_retries(starter: Starter):
    environ = {**starter.environ, StarterEnv.AIPLATFORM_ENDPOINT: starter.closed}
    status, answer = handle(*_commit(), environ)
    assert status == 500 and list(answer) == ["error"]
    assert f"port={starter.closed.rsplit(':', 1)[1]}" in answer["error"] and "refused" in answer["error"]
