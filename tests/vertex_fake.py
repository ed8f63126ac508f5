"""A small local Vertex AI REST server for the real google-cloud-aiplatform client to talk to over the wire.

Why: a double that stands in for the SDK lets the SDK's own validation, defaults and encoding go untested (the SDK
refuses `experiment` with `tensorboard` inside `submit`, after our arguments were bound). Here the installed
client runs unchanged: `aiplatform.init(api_endpoint="http://127.0.0.1:PORT", api_transport="rest")` sends its
JSON requests to this server, which records each one and answers what the next step of the SDK reads.

What it answers: a resource created by POST to a collection (named `<collection>/<n>`, or by the `*_id` query
parameter), GET of a resource created or seeded, PATCH (merged), model upload (versions and their aliases), an
endpoint's deployModel and undeployModel (deployed models and the traffic split), other custom methods
(`name:method`) as done long-running operations whose response is the resource, and list of a collection. Jobs read
back in the state given by `job_state` (succeeded by default). Anything else is 404, as Google answers it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_JOB_COLLECTIONS = ("customJobs", "batchPredictionJobs", "hyperparameterTuningJobs", "pipelineJobs")
_TYPES = "type.googleapis.com/google.cloud.aiplatform.v1"  # an operation's response is an Any naming its type


@dataclass
class Request:
    """One request as it came over the wire: HTTP method, resource path (no `/v1/`), custom method, query, body."""

    method: str
    path: str
    verb: str
    query: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeVertex:
    """The server's state: every request received, the resources it holds, what a job reads back as."""

    requests: list[Request] = field(default_factory=list)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    job_state: str = "JOB_STATE_SUCCEEDED"
    endpoint: str = ""
    _counter: int = 0

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
                return 200, {collection: listed} if listed else {}
            return _not_found(path)
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
            return 200, resource
        if request.method == "PATCH":
            if path not in self.resources:
                return _not_found(path)
            self.resources[path] = {**self.resources[path], **request.body, "name": path}
            return 200, self.resources[path]
        if request.method == "DELETE":
            self.resources.pop(path, None)
            return 200, _done(path, {})
        return _not_found(path)

    def _read(self, path: str) -> dict[str, Any]:
        resource = dict(self.resources[path])
        if path.rpartition("/")[0].rpartition("/")[2] in _JOB_COLLECTIONS:
            resource["state"] = self.job_state
            if self.job_state == "JOB_STATE_FAILED":
                resource["error"] = {"code": 3, "message": "the fake job failed"}
        return resource

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
        handler = {"upload": self.upload_model, "deployModel": self._deploy, "undeployModel": self._undeploy}.get(
            request.verb
        )
        if handler is not None:
            return handler(request.path, request.body)
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

    def _undeploy(self, endpoint: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        resource = self.resources[endpoint]
        gone = body["deployedModelId"]
        resource["deployedModels"] = [d for d in resource["deployedModels"] if d["id"] != gone]
        split = body.get("trafficSplit") or {k: v for k, v in resource["trafficSplit"].items() if k != gone}
        resource["trafficSplit"] = split
        return 200, _done(endpoint, {"@type": f"{_TYPES}.UndeployModelResponse"})


def _done(name: str, response: dict[str, Any]) -> dict[str, Any]:
    return {"name": f"{name}/operations/1", "done": True, "response": response}


def _not_found(path: str) -> tuple[int, dict[str, Any]]:
    return 404, {"error": {"code": 404, "message": f"{path} not found", "status": "NOT_FOUND"}}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeVertex

    def _handle(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = unquote(url.path).removeprefix("/v1/").removeprefix("/v1beta1/")
        head, _, verb = path.rpartition(":") if ":" in path.rpartition("/")[2] else (path, "", "")
        query = {k: v[0] for k, v in parse_qs(url.query).items() if not k.startswith("$")}
        status, answer = self.fake.answer(Request(self.command, head, verb, query, json.loads(raw) if raw else {}))
        body = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_DELETE = _handle

    def log_message(self, *args: Any) -> None:  # the requests are in fake.requests
        pass


@contextmanager
def serve() -> Iterator[FakeVertex]:
    """Start the server on an ephemeral port; `fake.endpoint` is the `api_endpoint` to give aiplatform.init."""
    fake = FakeVertex()
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.endpoint = f"http://127.0.0.1:{server.server_port}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


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
