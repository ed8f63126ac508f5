"""The twin's Vertex AI: a local REST server for the real google-cloud-aiplatform client to talk to over the wire.

Why: a double that stands in for the SDK lets the SDK's own validation, defaults and encoding go untested (the SDK
refuses `experiment` with `tensorboard` inside `submit`, after our arguments were bound). Here the installed
client runs unchanged: `aiplatform.init(api_endpoint="http://127.0.0.1:PORT", api_transport="rest")` sends its
JSON requests to this server, which records each one and answers what the next step of the SDK reads.

What it answers: a resource created by POST to a collection (named `<collection>/<n>`, or by the `*_id` query
parameter), GET of a resource created or seeded, PATCH (merged), model upload (versions and their aliases), an
endpoint's deployModel and undeployModel (deployed models and the traffic split), other custom methods
(`name:method`) as done long-running operations whose response is the resource, and list of a collection. Jobs read
back in the state given by `job_state` (succeeded by default), unless a runner runs them: then a custom job is
RUNNING while `job_runner` runs its chief worker pool (twin/jobs.py: its container, with podman), a batch prediction
job while `batch_runner` runs its model's serving container over its input (twin/batch.py), and SUCCEEDED or FAILED
as that ends. A feature view's `:sync` answers a sync name; `evaluations:import` stores the evaluation under
its model, `slices:batchImport` the slices under their evaluation. Anything else is 404, as Google answers it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from twin import wire
from twin.wire import Request, not_found

# the List*Response field that holds a collection's items, where it is not the collection's own name
_LIST_FIELDS = {"evaluations": "modelEvaluations", "slices": "modelEvaluationSlices"}
_JOB_COLLECTIONS = ("customJobs", "batchPredictionJobs", "hyperparameterTuningJobs", "pipelineJobs")
_TYPES = "type.googleapis.com/google.cloud.aiplatform.v1"  # an operation's response is an Any naming its type


@dataclass
class FakeVertex:
    """The server's state: every request received, the resources it holds, what a job reads back as."""

    requests: list[Request] = field(default_factory=list)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    job_state: str = "JOB_STATE_SUCCEEDED"
    endpoint: str = ""
    # (job name, the custom job as sent) -> error message, '' when it succeeded; None: jobs read back as job_state
    job_runner: Callable[[str, dict[str, Any]], str] | None = None
    # (job name, the batch prediction job as sent, its model version or None) -> (error or '', fields the job gains);
    # None: batch prediction jobs read back as job_state without running
    batch_runner: Callable[[str, dict[str, Any], dict[str, Any] | None], tuple[str, dict[str, Any]]] | None = None
    _counter: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def sent(self, method: str, path_suffix: str) -> list[Request]:
        """The requests whose HTTP method is `method` and whose path (with `:verb`) ends with `path_suffix`."""
        return [
            r
            for r in self.requests
            if r.method == method and (r.path + (f":{r.verb}" if r.verb else "")).endswith(path_suffix)
        ]

    def only(self, method: str, path_suffix: str) -> Request:
        found = self.sent(method, path_suffix)
        assert len(found) == 1, f"{method} ...{path_suffix} sent {len(found)} times; sent: {self.summary()}"
        return found[0]

    def summary(self) -> list[str]:
        return [f"{r.method} {r.path}{':' + r.verb if r.verb else ''}" for r in self.requests]

    def seed_experiment(self, parent: str, name: str, backing_tensorboard: str = "") -> None:
        """An experiment as Vertex AI Experiments stores it: a context of schema system.Experiment."""
        metadata: dict[str, Any] = {"experiment_deleted": False}
        if backing_tensorboard:
            metadata["backing_tensorboard_resource"] = backing_tensorboard
        self.resources[f"{parent}/metadataStores/default"] = {"name": f"{parent}/metadataStores/default"}
        self.resources[f"{parent}/metadataStores/default/contexts/{name}"] = {
            "name": f"{parent}/metadataStores/default/contexts/{name}",
            "displayName": name,
            "schemaTitle": "system.Experiment",
            "schemaVersion": "0.0.1",
            "metadata": metadata,
        }

    # ---- answering ------------------------------------------------------------------------------------------

    def answer(self, request: Request) -> tuple[int, dict[str, Any]]:
        with self._lock:
            return self._answer(request)

    def _answer(self, request: Request) -> tuple[int, dict[str, Any]]:
        self.requests.append(request)
        path = request.path
        if request.verb:
            return self._custom_method(request)
        if request.method == "GET":
            if path in self.resources:
                return 200, self._read(path)
            parent, _, collection = path.rpartition("/")
            listed = [v for k, v in self.resources.items() if k.rpartition("/")[0] == path]
            if listed or collection in _JOB_COLLECTIONS or collection.endswith("s") and parent:
                return 200, {_LIST_FIELDS.get(collection, collection): listed} if listed else {}
            return not_found(path)
        if request.method == "POST":
            collection = path.rpartition("/")[2]
            resource_id = next((v for k, v in request.query.items() if k.endswith("Id") and v), "")
            if not resource_id:
                self._counter += 1
                resource_id = str(self._counter)
            name = f"{path}/{resource_id}"
            if name in self.resources:
                return 409, {"error": {"code": 409, "message": f"{name} already exists", "status": "ALREADY_EXISTS"}}
            resource = {**request.body, "name": name, "createTime": "2026-01-01T00:00:00Z"}
            if collection in _JOB_COLLECTIONS:
                resource["state"] = "JOB_STATE_PENDING"
            self.resources[name] = resource
            if collection == "customJobs" and self.job_runner is not None:
                runner, job = self.job_runner, request.body
                self._start_job(name, lambda: (runner(name, job), {}))
            if collection == "batchPredictionJobs" and self.batch_runner is not None:
                batch, job = self.batch_runner, request.body
                model = self.resources.get(job.get("model", ""))
                self._start_job(name, lambda: batch(name, job, dict(model) if model else None))
            return 200, resource
        if request.method == "PATCH":
            if path not in self.resources:
                return not_found(path)
            self.resources[path] = {**self.resources[path], **request.body, "name": path}
            return 200, self.resources[path]
        if request.method == "DELETE":
            self.resources.pop(path, None)
            return 200, _done(path, {})
        return not_found(path)

    def _read(self, path: str) -> dict[str, Any]:
        resource = dict(self.resources[path])
        if path.rpartition("/")[0].rpartition("/")[2] in _JOB_COLLECTIONS and not resource.get("_run"):
            resource["state"] = self.job_state
            if self.job_state == "JOB_STATE_FAILED":
                resource["error"] = {"code": 3, "message": "the fake job failed"}
        resource.pop("_run", None)
        return resource

    def _start_job(self, name: str, work: Callable[[], tuple[str, dict[str, Any]]]) -> None:
        """Run the job in a thread: RUNNING now, then SUCCEEDED (with the fields `work` adds) or FAILED with its
        message."""
        self.resources[name].update(state="JOB_STATE_RUNNING", _run=True)

        def run() -> None:
            gained: dict[str, Any] = {}
            try:
                error, gained = work()
            except Exception as exc:  # noqa: BLE001 - the runner's own failure fails the job, as a platform error would
                error = f"the twin could not run the job: {exc!r}"
            with self._lock:
                resource = self.resources[name]
                if resource.get("state") == "JOB_STATE_CANCELLED":
                    return
                resource.update(gained)
                resource["state"] = "JOB_STATE_FAILED" if error else "JOB_STATE_SUCCEEDED"
                resource["endTime"] = "2026-01-01T00:10:00Z"
                if error:
                    resource["error"] = {"code": 13, "message": error}

        thread = threading.Thread(target=run, name=f"job {name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def wait_for_jobs(self, timeout: float | None = None) -> None:
        for thread in list(self._threads):
            thread.join(timeout)

    def seed(self, name: str, **fields: Any) -> None:
        """A resource that infra/ declares (an endpoint, a feature view, a model): GET finds it."""
        self.resources[name] = {"name": name, "createTime": "2026-01-01T00:00:00Z", **fields}

    def seed_endpoint(self, name: str, deployed: dict[str, str], traffic_split: dict[str, int]) -> None:
        """An endpoint with deployed models {id: display name} and a traffic split."""
        self.resources[name] = {
            "name": name,
            "displayName": name.rpartition("/")[2],
            "createTime": "2026-01-01T00:00:00Z",
            "deployedModels": [{"id": i, "displayName": n} for i, n in deployed.items()],
            "trafficSplit": dict(traffic_split),
        }

    def _custom_method(self, request: Request) -> tuple[int, dict[str, Any]]:
        handler = {
            "upload": self.upload_model,
            "deployModel": self._deploy,
            "undeployModel": self._undeploy,
            "sync": self._sync_feature_view,
            "import": self._import_evaluation,
            "batchImport": self._import_slices,
        }.get(request.verb)
        if handler is not None:
            return handler(request.path, request.body)
        if request.verb == "cancel" and request.path in self.resources:
            self.resources[request.path].update(state="JOB_STATE_CANCELLED", _run=True)
            return 200, {}
        if request.path in self.resources:
            self.resources[request.path] = {**self.resources[request.path], f"_{request.verb}": request.body}
        return 200, _done(request.path, self.resources.get(request.path, {}))

    def upload_model(self, collection: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """models:upload: a new version of `parentModel`, or version 1 of `<collection>/<modelId>`."""
        name = body.get("parentModel") or f"{collection}/{body['modelId']}"
        version = str(1 + sum(1 for key in self.resources if key.startswith(f"{name}@") and key[-1].isdigit()))
        aliases = list(body["model"].get("versionAliases", []))
        if version == "1" or "default" in aliases:
            for key, other in self.resources.items():  # an alias names one version of a model
                if key.startswith(f"{name}@") and "default" in other.get("versionAliases", []):
                    other["versionAliases"] = [a for a in other["versionAliases"] if a != "default"]
            aliases.append("default")
        model = {
            **body["model"],
            "name": name,
            "versionId": version,
            "versionAliases": sorted(set(aliases)),
            "createTime": "2026-01-01T00:00:00Z",
            "supportedDeploymentResourcesTypes": [1],  # DEDICATED_RESOURCES: a custom container model
        }
        for key in (version, *model["versionAliases"]):
            self.resources[f"{name}@{key}"] = model
        self.resources.setdefault(name, model)
        response = {"@type": f"{_TYPES}.UploadModelResponse", "model": name, "modelVersionId": version}
        return 200, _done(name, response)

    def _deploy(self, endpoint: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """endpoints:deployModel: the new deployed model gets an id; "0" in the traffic split stands for it."""
        self._counter += 1
        deployed = {**body["deployedModel"], "id": str(1000 + self._counter)}
        resource = self.resources[endpoint]
        resource["deployedModels"] = [*resource.get("deployedModels", []), deployed]
        split = body.get("trafficSplit", {"0": 100})
        resource["trafficSplit"] = {deployed["id"] if k == "0" else k: v for k, v in split.items()}
        return 200, _done(endpoint, {"@type": f"{_TYPES}.DeployModelResponse", "deployedModel": deployed})

    def _sync_feature_view(self, feature_view: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """featureViews:sync: not a long-running operation; answers the sync's name (SyncFeatureViewResponse)."""
        if feature_view not in self.resources:
            return not_found(feature_view)
        self._counter += 1
        sync = f"{feature_view}/featureViewSyncs/{self._counter}"
        self.resources[sync] = {"name": sync, "createTime": "2026-01-01T00:00:00Z"}
        return 200, {"featureViewSync": sync}

    def _import_evaluation(self, collection: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """models/*/evaluations:import: the evaluation stored under its model (which must exist), returned."""
        model = collection.rpartition("/")[0]
        if model not in self.resources:
            return not_found(model)
        self._counter += 1
        name = f"{collection}/{self._counter}"
        self.resources[name] = {**body.get("modelEvaluation", {}), "name": name, "createTime": "2026-01-01T00:00:00Z"}
        return 200, self.resources[name]

    def _import_slices(self, collection: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """models/*/evaluations/*/slices:batchImport: each slice stored under its evaluation (which must exist)."""
        evaluation = collection.rpartition("/")[0]
        if evaluation not in self.resources:
            return not_found(evaluation)
        names = []
        for one in body.get("modelEvaluationSlices", []):
            self._counter += 1
            name = f"{collection}/{self._counter}"
            self.resources[name] = {**one, "name": name, "createTime": "2026-01-01T00:00:00Z"}
            names.append(name)
        return 200, {"importedModelEvaluationSlices": names}

    def _undeploy(self, endpoint: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        resource = self.resources[endpoint]
        gone = body["deployedModelId"]
        resource["deployedModels"] = [d for d in resource["deployedModels"] if d["id"] != gone]
        split = body.get("trafficSplit") or {k: v for k, v in resource["trafficSplit"].items() if k != gone}
        resource["trafficSplit"] = split
        return 200, _done(endpoint, {"@type": f"{_TYPES}.UndeployModelResponse"})


def _done(name: str, response: dict[str, Any]) -> dict[str, Any]:
    return {"name": f"{name}/operations/1", "done": True, "response": response}


@contextmanager
def serve(
    job_runner: Callable[[str, dict[str, Any]], str] | None = None,
    batch_runner: Callable[[str, dict[str, Any], dict[str, Any] | None], tuple[str, dict[str, Any]]] | None = None,
) -> Iterator[FakeVertex]:
    """Start the server on an ephemeral port; `fake.endpoint` is the `api_endpoint` to give aiplatform.init."""
    fake = FakeVertex(job_runner=job_runner, batch_runner=batch_runner)

    def answer(handler: BaseHTTPRequestHandler, raw: bytes) -> wire.Answer:
        authorization = handler.headers.get("Authorization", "")
        return fake.answer(wire.parse(handler.command, handler.path, raw, ("/v1/", "/v1beta1/"), authorization))

    with wire.serve(answer) as url:
        fake.endpoint = url
        yield fake


@contextmanager
def vertex_over_the_wire(project: str, location: str) -> Iterator[FakeVertex]:
    """The real SDK pointed at a fresh fake for the block (anonymous credentials, REST), then the SDK's previous
    global configuration back: the next `aiplatform.init(...)` of an adapter keeps the endpoint and credentials."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform
    from google.cloud.aiplatform import initializer

    saved = dict(initializer.global_config.__dict__)
    try:
        with serve() as fake:
            aiplatform.init(
                project=project,
                location=location,
                credentials=AnonymousCredentials(),
                api_endpoint=fake.endpoint,
                api_transport="rest",
            )
            yield fake
    finally:
        initializer.global_config.__dict__.clear()
        initializer.global_config.__dict__.update(saved)
