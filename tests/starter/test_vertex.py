"""The starter's Vertex AI Pipelines client in-process, over HTTP against the Vertex AI REST fake: the exact
requests it sends (filter, order, page token, run id, body) and how it reads each answer (409, 404, errors).
tests/starter/test_function.py runs the same through the function; these are fast enough for mutation testing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from starter.vertex import TIMEOUT_S, VertexError, VertexRuns, run_body
from tests import vertex_fake

PARENT = "projects/p/locations/europe-west4"
FIELDS = {
    "pipeline_name": "fmnist-lifecycle",
    "template_uri": "https://europe-west4-kfp.pkg.dev/p/r/fmnist-lifecycle/latest",
    "account": "pipelines@p.iam.gserviceaccount.com",
    "root": "gs://p-dev/pipeline-root",
    "kms_key": "projects/p/locations/europe-west4/keyRings/k/cryptoKeys/c",
    "labels": {"app": "fmnist-mlops", "env": "dev"},
}
# the body as the PipelineJob REST resource names its fields (written out: run_body is called inside each test,
# so a mutation testing run sees the mutant, not a value computed at import)
BODY = {
    "displayName": "fmnist-lifecycle",
    "templateUri": "https://europe-west4-kfp.pkg.dev/p/r/fmnist-lifecycle/latest",
    "serviceAccount": "pipelines@p.iam.gserviceaccount.com",
    "runtimeConfig": {"gcsOutputDirectory": "gs://p-dev/pipeline-root"},
    "encryptionSpec": {"kmsKeyName": "projects/p/locations/europe-west4/keyRings/k/cryptoKeys/c"},
    "labels": {"app": "fmnist-mlops", "env": "dev"},
}
FILTER = (
    'display_name="fmnist-lifecycle" AND (state="PIPELINE_STATE_QUEUED" OR state="PIPELINE_STATE_PENDING" '
    'OR state="PIPELINE_STATE_RUNNING")'
)


@pytest.fixture
def fake() -> Iterator[vertex_fake.FakeVertex]:
    with vertex_fake.serve() as served:
        yield served


def runs_of(fake: vertex_fake.FakeVertex) -> VertexRuns:
    return VertexRuns(requests.Session(), fake.endpoint, PARENT, "fmnist-lifecycle", run_body(**FIELDS))


def seed(fake: vertex_fake.FakeVertex, run: str, state: str, name: str = "fmnist-lifecycle") -> None:
    path = f"{PARENT}/pipelineJobs/{run}"
    fake.resources[path] = {"name": path, "displayName": name, "state": state}


def test_the_run_body_has_the_rest_field_names_of_a_pipeline_job():
    from google.cloud.aiplatform_v1.types.pipeline_job import PipelineJob
    from google.protobuf import json_format

    assert run_body(**FIELDS) == BODY
    json_format.ParseDict(run_body(**FIELDS), PipelineJob.pb(PipelineJob()))  # every field is the API's
    labels = {"app": "a"}
    body = run_body(pipeline_name="n", template_uri="t", account="a", root="r", kms_key="k", labels=labels)
    body["labels"]["trigger"] = "x"
    assert labels == {"app": "a"}  # a copy: one run's labels never leak into the configuration


def test_active_lists_the_pipeline_s_unfinished_runs_with_the_exact_filter_and_rechecks_each(fake):
    seed(fake, "queued", "PIPELINE_STATE_QUEUED")
    seed(fake, "pending", "PIPELINE_STATE_PENDING")
    seed(fake, "running", "PIPELINE_STATE_RUNNING")
    seed(fake, "done", "PIPELINE_STATE_SUCCEEDED")
    seed(fake, "failed", "PIPELINE_STATE_FAILED")
    seed(fake, "other-pipeline", "PIPELINE_STATE_RUNNING", name="another-pipeline")
    assert runs_of(fake).active() == ["queued", "pending", "running"]
    [listing] = fake.requests
    assert (listing.method, listing.path) == ("GET", f"{PARENT}/pipelineJobs")
    assert listing.query == {"filter": FILTER, "orderBy": "create_time desc"}


def test_active_follows_every_page_with_its_token(fake):
    pages = {
        "": {"pipelineJobs": [{"name": f"{PARENT}/pipelineJobs/a", "displayName": "fmnist-lifecycle",
                               "state": "PIPELINE_STATE_RUNNING"}], "nextPageToken": "t2"},
        "t2": {"pipelineJobs": [], "nextPageToken": "t3"},
        "t3": {"pipelineJobs": [{"name": f"{PARENT}/pipelineJobs/b", "displayName": "fmnist-lifecycle",
                                 "state": "PIPELINE_STATE_QUEUED"}], "nextPageToken": ""},
    }  # fmt: skip

    def paged(request):
        fake.requests.append(request)
        return 200, pages[request.query.get("pageToken", "")]

    fake.answer = paged
    assert runs_of(fake).active() == ["a", "b"]
    assert [r.query.get("pageToken") for r in fake.requests] == [None, "t2", "t3"]
    assert all(r.query["filter"] == FILTER for r in fake.requests)


def test_start_creates_the_run_by_id_with_its_labels_merged_and_a_second_create_is_false(fake):
    runs = runs_of(fake)
    assert runs.start("fmnist-lifecycle-drift-1", {"trigger": "drift", "deferred": "2"}) is True
    [create] = fake.requests
    assert (create.method, create.path) == ("POST", f"{PARENT}/pipelineJobs")
    assert create.query == {"pipelineJobId": "fmnist-lifecycle-drift-1"}
    assert create.body == {
        **BODY,
        "labels": {"app": "fmnist-mlops", "env": "dev", "trigger": "drift", "deferred": "2"},
    }
    assert runs.body["labels"] == {"app": "fmnist-mlops", "env": "dev"}  # the fixed fields are not changed
    assert runs.start("fmnist-lifecycle-drift-1", {"trigger": "drift"}) is False  # 409: it exists
    assert runs.exists("fmnist-lifecycle-drift-1") is True
    assert runs.exists("never-created") is False
    assert fake.summary()[-2:] == [
        f"GET {PARENT}/pipelineJobs/fmnist-lifecycle-drift-1",
        f"GET {PARENT}/pipelineJobs/never-created",
    ]


@pytest.mark.parametrize("status", [400, 403, 500])
def test_a_refused_call_is_a_vertex_error_with_the_call_status_and_google_s_message(fake, status):
    def refuse(request):
        fake.requests.append(request)
        return status, {"error": {"code": status, "message": "Permission 'aiplatform.pipelineJobs.create' denied"}}

    fake.answer = refuse
    runs = runs_of(fake)
    with pytest.raises(VertexError) as create:
        runs.start("r1", {})
    assert str(create.value).startswith(f"POST {PARENT}/pipelineJobs: HTTP {status}: ")
    assert "aiplatform.pipelineJobs.create" in str(create.value)
    with pytest.raises(VertexError) as listing:
        runs.active()
    assert str(listing.value).startswith(f"GET {PARENT}/pipelineJobs: HTTP {status}: ")
    with pytest.raises(VertexError) as read:
        runs.exists("r1")
    assert str(read.value).startswith(f"GET {PARENT}/pipelineJobs/r1: HTTP {status}: ")
    assert "aiplatform.pipelineJobs.create" in str(read.value)


def test_a_409_on_a_read_is_an_error_not_an_existing_run(fake):
    def conflict(request):
        fake.requests.append(request)
        return 409, {"error": {"code": 409, "message": "conflict"}}

    fake.answer = conflict
    with pytest.raises(VertexError, match="HTTP 409"):
        runs_of(fake).active()


def test_every_call_has_a_timeout(fake):
    seen = []

    class Recording(requests.Session):
        def request(self, method, url, **kwargs):
            seen.append((method, kwargs.get("timeout")))
            return super().request(method, url, **kwargs)

    runs = VertexRuns(Recording(), fake.endpoint, PARENT, "fmnist-lifecycle", run_body(**FIELDS))
    runs.active()
    runs.start("r", {})
    runs.exists("r")
    assert seen == [("GET", TIMEOUT_S), ("POST", TIMEOUT_S), ("GET", TIMEOUT_S)]
    assert TIMEOUT_S == 30


def test_a_client_without_fixed_fields_sends_the_run_s_labels_only(fake):
    runs = VertexRuns(requests.Session(), fake.endpoint, PARENT, "fmnist-lifecycle")  # body: its default, none
    assert runs.start("r", {"trigger": "manual"}) is True
    assert fake.requests[-1].body == {"labels": {"trigger": "manual"}}


def test_google_s_message_is_cut_at_500_characters(fake):
    def refuse(request):
        fake.requests.append(request)
        return 400, {"error": {"message": "x" * 1000}}

    fake.answer = refuse
    with pytest.raises(VertexError) as raised:
        runs_of(fake).active()
    prefix = f"GET {PARENT}/pipelineJobs: HTTP 400: "
    assert str(raised.value).startswith(prefix) and len(str(raised.value)) == len(prefix) + 500
