"""The notebook's service client (lifecycle/notebook/service_client.py) without a trained model: what each target
sends over the wire to a recording loopback server, the local service's launch, the Vertex AI calls, and what a
missing token says (issue 27's notebook-client group). The runs on a real champion are tests/notebooks/test_explore.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest

from contracts.layout import model_reference
from lifecycle.notebook import service_client
from settings import load_config
from tests.lifecycle.test_client_exact import Recorder


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    import threading

    server = Recorder()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()
    thread.join()


@pytest.fixture
def settings(tmp_path):
    return load_config("local", environ={"FMNIST_STORAGE_ROOT": str(tmp_path / "mlops")})


def closed(client: service_client.HttpService) -> bool:
    """requests' Session.close empties each adapter's pool of connections."""
    return all(not adapter.poolmanager.pools for adapter in client.session.adapters.values())


def test_predicted_classes_sends_raw_bytes_in_requests_of_256_images(recorder):
    client = service_client.HttpService(recorder.base)
    images = np.arange(600 * 784, dtype=np.int64).reshape(600, 28, 28).astype(np.uint8)
    classes = service_client.predicted_classes(client, images)
    assert [(m, p, len(body)) for m, p, _, body in recorder.requests] == [
        ("POST", "/predict", 256 * 784),
        ("POST", "/predict", 256 * 784),
        ("POST", "/predict", 88 * 784),
    ]
    assert recorder.requests[0][3] == images[:256].tobytes()
    expected = (
        [(1 + i) % 10 for i in range(256)] + [(2 + i) % 10 for i in range(256)] + [(3 + i) % 10 for i in range(88)]
    )
    assert classes.dtype == np.int64 and classes.tolist() == expected
    assert service_client.predicted_classes(client, images[:5], batch=2).tolist() == [4, 5, 5, 6, 6]


def test_a_url_for_the_local_target_is_called_without_a_token_and_closed_after_use(recorder, settings):
    with service_client.open_service(settings, "local", recorder.base) as client:
        assert isinstance(client, service_client.HttpService) and client.base_url == recorder.base
        assert client.model() == {"path": "/v1/model"}
        assert "Authorization" not in recorder.requests[0][2] and client.admin_token is None
        assert not closed(client)
    assert closed(client)


def test_a_cloud_run_url_carries_gclouds_token_and_is_closed_after_use(
    recorder, settings, no_google_credentials, monkeypatch
):
    gcloud = no_google_credentials / "gcloud"
    gcloud.write_text(f'#!/bin/sh\necho "$@" > {no_google_credentials}/args\necho "  tok-1  "\n')
    gcloud.chmod(0o755)
    real_run, timeouts = service_client.subprocess.run, []
    # a hung gcloud must not hang the notebook's cell: the real call, its time limit recorded (waiting it out: 60 s)
    monkeypatch.setattr(
        service_client.subprocess, "run", lambda *a, **kw: timeouts.append(kw.get("timeout")) or real_run(*a, **kw)
    )
    with service_client.open_service(settings, "cloud-run", recorder.base) as client:
        client.model()
    assert timeouts == [60]
    assert recorder.requests[0][2]["Authorization"] == "Bearer tok-1"
    assert (no_google_credentials / "args").read_text() == "auth print-identity-token\n"
    assert closed(client)


def test_a_failing_gcloud_is_named_with_the_audience(no_google_credentials):
    gcloud = no_google_credentials / "gcloud"
    gcloud.write_text("#!/bin/sh\necho 'not logged in' >&2\nexit 1\n")
    gcloud.chmod(0o755)
    with pytest.raises(service_client.ServiceUnreachable) as caught:
        service_client.identity_token("https://svc.run.app")
    assert str(caught.value).startswith(
        "no identity token for https://svc.run.app: no service-account credentials and gcloud failed (Command "
    )
    assert caught.value.__suppress_context__


def test_the_local_target_serves_the_champion_with_a_private_operator_token(recorder, settings, monkeypatch):
    from lifecycle import served
    from trainer.api import index_key_environment

    launched = []

    @contextmanager
    def running_service(model, *, workers, extra_env):
        launched.append((model, workers, extra_env))
        yield recorder.base, None

    monkeypatch.setattr(served, "running_service", running_service)
    with service_client.open_service(settings, local_env={"DRIFT_SAMPLE": "7", "ADMIN_ENABLED": "yes"}) as client:
        assert client.base_url == recorder.base
        assert client.reset_drift() is True
    (model, workers, env) = launched[0]
    assert (model, workers) == (model_reference(settings.models_bucket), 1)
    token = client.admin_token
    assert token and len(token) >= 40
    assert env == {"ADMIN_ENABLED": "yes", "ADMIN_TOKEN": token, **index_key_environment(settings), "DRIFT_SAMPLE": "7"}
    assert recorder.requests[-1][:2] == ("POST", "/monitoring/drift/reset")
    assert recorder.requests[-1][2]["Authorization"] == f"Bearer {token}"
    assert closed(client)
    with service_client.open_service(settings) as second:
        assert second.admin_token != token and launched[1][2]["ADMIN_ENABLED"] == "true"


def test_connect_keeps_the_client_open_until_disconnect(recorder, settings):
    first = service_client.connect(settings, "local", recorder.base)
    second = service_client.connect(settings, url=recorder.base)
    first.model(), second.model()
    assert isinstance(first, service_client.HttpService) and not closed(first) and not closed(second)
    service_client.disconnect()
    assert closed(first) and closed(second)
    service_client.disconnect()  # nothing left: a second call is harmless


class RecordingEndpoint:
    """aiplatform.Endpoint as the client uses it: its calls recorded, its answers canned."""

    def __init__(self, name: str, status: int = 200):
        self.name, self.status, self.calls = name, status, []

    def list_models(self):
        return [SimpleNamespace(id="11"), SimpleNamespace(id="22")]

    def predict(self, instances):
        self.calls.append(("predict", instances))
        return SimpleNamespace(predictions=[{"class_id": 3}])

    def raw_predict(self, body, headers):
        self.calls.append(("raw_predict", body, headers))
        return SimpleNamespace(status_code=self.status, text="quota", json=lambda: {"predictions": [{"class_id": 4}]})


@pytest.fixture
def vertex(monkeypatch, settings) -> Iterator[tuple[service_client.VertexEndpoint, list[RecordingEndpoint]]]:
    from google.cloud import aiplatform

    made: list[RecordingEndpoint] = []
    monkeypatch.setattr(aiplatform, "Endpoint", lambda name: made.append(RecordingEndpoint(name)) or made[-1])
    with service_client.open_service(settings, "vertex") as client:
        assert isinstance(client, service_client.VertexEndpoint)
        yield client, made


@pytest.mark.slow  # aiplatform's import (~9 s): this module takes ~14 s
def test_the_vertex_target_calls_the_declared_endpoint(vertex, settings):
    client, made = vertex
    assert [e.name for e in made] == [settings.names.endpoint_name] and client.endpoint is made[0]
    assert client.model() == {"endpoint": settings.names.endpoint_name, "deployed_models": ["11", "22"]}
    images = np.array([[[1, 2], [3, 300]]], dtype=np.int64)
    assert client.predict_json(images) == [{"class_id": 3}]
    assert client.predict_bytes(images) == [{"class_id": 4}]
    assert made[0].calls == [
        ("predict", [[[1, 2], [3, 300]]]),
        ("raw_predict", bytes([1, 2, 3, 44]), {"Content-Type": "application/octet-stream"}),
    ]
    assert type(made[0].calls[0][1]) is list
    assert client.drift() is None and client.reset_drift() is False and client.close() is None


def test_a_refused_raw_predict_on_vertex_names_the_endpoint_and_status(vertex, settings):
    client, made = vertex
    made[0].status = 429
    with pytest.raises(service_client.ServiceUnreachable) as caught:
        client.predict_bytes(np.zeros((1, 28, 28), np.uint8))
    assert str(caught.value) == f"rawPredict on {settings.names.endpoint_name} -> 429: quota"


def test_predicted_classes_of_no_images_sends_nothing_and_is_an_empty_class_array(recorder):
    classes = service_client.predicted_classes(
        service_client.HttpService(recorder.base), np.zeros((0, 28, 28), np.uint8)
    )
    assert classes.dtype == np.int64 and classes.shape == (0,) and recorder.requests == []


def test_connect_starts_the_champions_process_with_the_notebooks_variables(recorder, settings, monkeypatch):
    from lifecycle import served

    launched = []

    @contextmanager
    def running_service(model, *, workers, extra_env):
        launched.append((model, extra_env))
        yield recorder.base, None

    monkeypatch.setattr(served, "running_service", running_service)
    client = service_client.connect(settings, local_env={"DRIFT_SAMPLE": "9"})
    try:
        assert client.base_url == recorder.base
        assert launched[0][0] == model_reference(settings.models_bucket) and launched[0][1]["DRIFT_SAMPLE"] == "9"
    finally:
        service_client.disconnect()


def jwt_part(data: dict) -> str:
    import base64
    import json

    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_service_account_credentials_mint_the_id_token_for_the_services_url(
    no_google_credentials, tmp_path, monkeypatch
):
    """The Workbench path: a service-account key, its token endpoint a loopback server that answers an ID token."""
    import base64
    import json
    import threading
    import time
    import urllib.parse
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    asked: list[dict] = []
    id_token = ".".join([jwt_part({"alg": "RS256", "typ": "JWT"}), jwt_part({"exp": int(time.time()) + 3600}), "c2ln"])

    class Token(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            payload = form["assertion"][0].split(".")[1]
            asked.append(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
            body = json.dumps({"id_token": id_token}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Token)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    info = {
        "type": "service_account",
        "project_id": "p",
        "private_key_id": "1",
        "private_key": pem.decode(),
        "client_email": "notebook@p.iam.gserviceaccount.com",
        "token_uri": f"http://127.0.0.1:{server.server_address[1]}/token",
    }
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(info))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    try:
        assert service_client.identity_token("https://svc.run.app") == id_token
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert [a["target_audience"] for a in asked] == ["https://svc.run.app"]
