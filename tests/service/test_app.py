"""The Flask app in-process: the prediction contract, errors as JSON 4xx, health, metadata, metrics and logs."""

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from tests.service.conftest import ADMIN, ADMIN_ENV
from tests.service.model_factory import CLASS_NAMES, generated_images


def predict(client, document, **kwargs):
    return client.post("/predict", data=json.dumps(document), content_type="application/json", **kwargs)


def test_health_is_503_until_the_model_is_warmed_up(model_dir):
    from service.app import create_app

    app = create_app({"MODEL_URI": str(model_dir)}, activate=False)
    client = app.test_client()
    reply = client.get("/health")
    assert reply.status_code == 503 and reply.get_json()["error"] == "not_ready"
    assert predict(client, {"instances": [[0] * 784]}).status_code == 503
    app.extensions["fmnist"].activate()
    assert client.get("/health").get_json() == {"status": "ok", "model_version": "test-v1"}


def test_predictions_carry_class_label_probabilities_and_top_k(client):
    images, labels = generated_images(20, seed=21)
    reply = predict(client, {"instances": images.tolist(), "parameters": {"top_k": 3}})
    assert reply.status_code == 200
    body = reply.get_json()
    assert body["metadata"] == {"model_version": "test-v1", "request_id": body["metadata"]["request_id"]}
    assert re.fullmatch("[0-9a-f]{16}", body["metadata"]["request_id"])  # what labels are posted against
    predictions = body["predictions"]
    assert len(predictions) == 20
    for item in predictions:
        assert item["label"] == CLASS_NAMES[item["class_id"]]
        assert len(item["probabilities"]) == 10 and sum(item["probabilities"]) == pytest.approx(1, abs=1e-4)
        probs = [t["probability"] for t in item["top_k"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
        assert item["top_k"][0]["class_id"] == item["class_id"]
    accuracy = np.mean([p["class_id"] == y for p, y in zip(predictions, labels, strict=True)])
    assert accuracy >= 0.9  # the generated classes are easy: this checks pixels arrive unscaled and unrotated


def test_json_binary_and_png_paths_agree(client):
    images, _ = generated_images(5, seed=22)
    as_json = predict(client, {"instances": images.reshape(5, 784).tolist()}).get_json()["predictions"]
    as_binary = client.post(
        "/predict?top_k=2", data=images.tobytes(), content_type="application/octet-stream"
    ).get_json()["predictions"]
    pngs = []
    for pixels in images:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        pngs.append({"b64": base64.b64encode(buffer.getvalue()).decode()})
    as_png = predict(client, {"instances": pngs}).get_json()["predictions"]
    for a, b, c in zip(as_json, as_binary, as_png, strict=True):
        assert a["class_id"] == b["class_id"] == c["class_id"]
        np.testing.assert_allclose(a["probabilities"], b["probabilities"], atol=1e-6)
        np.testing.assert_allclose(a["probabilities"], c["probabilities"], atol=1e-6)
        assert len(b["top_k"]) == 2 and "top_k" not in a


def test_resized_image_is_noted_in_the_response(client):
    buffer = io.BytesIO()
    Image.new("RGB", (56, 56), (200, 200, 200)).save(buffer, format="JPEG")
    body = predict(client, {"instances": [{"b64": base64.b64encode(buffer.getvalue()).decode()}]}).get_json()
    assert any("resized to 28x28" in note for note in body["metadata"]["notes"])


@pytest.mark.parametrize(
    "kwargs,status,error",
    [
        ({"data": "x", "content_type": "text/plain"}, 415, "unsupported_media_type"),
        ({"data": "{", "content_type": "application/json"}, 400, "malformed_json"),
        ({"data": b"\0" * 1_500_001, "content_type": "application/octet-stream"}, 413, "request_entity_too_large"),
        (
            {"data": json.dumps({"instances": [[0] * 784] * 257}), "content_type": "application/json"},
            400,
            "too_many_instances",
        ),
    ],
)
def test_bad_requests_are_json_4xx(client, kwargs, status, error):
    reply = client.post("/predict", **kwargs)
    assert reply.status_code == status
    body = reply.get_json()
    assert body["error"] == error and body["detail"]


def test_query_top_k_is_checked_on_the_json_path_too(client):
    document = {"instances": [[0] * 784], "parameters": {"top_k": 4}}
    assert predict(client, document, query_string={"top_k": "-1"}).status_code == 400
    assert predict(client, document, query_string={"k": "1"}).status_code == 400
    reply = predict(client, {"instances": [[0] * 784]}, query_string={"top_k": "2"}).get_json()
    assert len(reply["predictions"][0]["top_k"]) == 2


def test_unknown_routes_and_methods_are_json_too(client):
    missing = client.get("/nope")
    assert missing.status_code == 404 and missing.get_json()["error"] == "not_found"
    wrong = client.get("/predict")
    assert wrong.status_code == 405 and wrong.get_json()["error"] == "method_not_allowed"
    assert "POST" in wrong.headers["Allow"]


@pytest.mark.parametrize(
    "body,content_type",
    [
        (b"\0" * 784 * 2, "application/octet-stream"),
        (json.dumps({"instances": [[0] * 784], "parameters": {"top_k": 2}}).encode(), "application/json"),
        (b"\0" * 783, "application/octet-stream"),
        (b"{", "application/json; charset=utf-8"),
        (b"x", "text/plain"),
        (b"\0" * 1_500_001, "application/octet-stream"),
    ],
)
def test_the_predict_route_answers_alike_past_flask_and_through_it(app, body, content_type):
    """POST /predict is answered by a plain WSGI handler (service/predict_route.py); Flask's view for the same
    route (reached through app.wsgi_app, past the middleware) must give the same status, headers and body."""
    from werkzeug.test import Client

    replies = []
    for wsgi in (app, app.wsgi_app):
        reply = Client(wsgi).post("/predict", data=body, content_type=content_type)
        headers = {k: v for k, v in reply.headers.items() if k not in ("X-Request-Id", "Content-Length")}
        document = reply.get_json()
        if reply.status_code == 200:  # the request id is minted per prediction (ground truth): it differs
            assert re.fullmatch("[0-9a-f]{16}", document["metadata"].pop("request_id"))
        replies.append((reply.status, headers, document))
    assert replies[0] == replies[1]


def test_instance_errors_name_the_instance(client):
    reply = predict(client, {"instances": [[0] * 784, [0] * 783 + [300]]})
    assert reply.status_code == 400
    assert reply.get_json() == {
        "error": "out_of_range",
        "instance": 1,
        "detail": "instance 1: value 300 at flat position 783 is outside 0..255 (send raw "
        "pixel values, not scaled ones)",
    }


def test_model_route_tells_clients_what_they_need_and_operators_the_rest(make_app, model_dir):
    client = make_app(**ADMIN_ENV).test_client()
    public = client.get("/v1/model").get_json()
    assert public["model_version"] == "test-v1" and public["class_names"] == list(CLASS_NAMES)
    assert public["input"]["name"] == "pixels" and "accuracy" in public["metrics"]
    assert not {"source", "hyperparameters", "code_version", "dataset", "feature_baseline"} & set(public)
    assert "runtime" not in public["serving"] and str(model_dir) not in json.dumps(public)
    wrong = client.get("/v1/model", headers={"Authorization": "Bearer not-the-token"}).get_json()
    assert "source" not in wrong
    full = client.get("/v1/model", headers=ADMIN).get_json()
    assert full["source"]["version_dir"] == str(model_dir) and full["hyperparameters"] == {"epochs": 3}
    assert full["serving"]["runtime"].startswith("onnxruntime") and full["serving"]["samples"] == 20


def test_operator_routes_are_off_unless_enabled_with_a_token(client, make_app):
    disabled = client.post("/monitoring/drift/reset", headers=ADMIN)
    assert disabled.status_code == 403 and "ADMIN_ENABLED" in disabled.get_json()["detail"]
    assert "source" not in client.get("/v1/model", headers=ADMIN).get_json()
    enabled = make_app(**ADMIN_ENV).test_client()
    assert enabled.post("/monitoring/drift/reset").status_code == 401
    assert enabled.post("/monitoring/drift/reset", headers={"Authorization": "Bearer " + "x" * 32}).status_code == 401
    assert enabled.post("/monitoring/drift/reset", headers=ADMIN).status_code == 200


def test_openapi_describes_every_route(client):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    assert {
        "/predict",
        "/health",
        "/v1/model",
        "/metrics",
        "/monitoring/drift",
        "/openapi.json",
        "/",
        "/v1/samples/random",
    } <= set(document["paths"])


def test_metrics_count_requests_errors_classes_and_model(client):
    predict(client, {"instances": [[0] * 784]})
    predict(client, {"instances": "nope"})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'fmnist_http_requests_total{method="POST",model_version="test-v1",route="/predict",status="200"}' in text
    assert 'fmnist_request_errors_total{reason="missing_instances"}' in text
    assert "fmnist_predicted_class_total{class_name=" in text
    assert 'fmnist_model_info{alias="",artifact="model.onnx",model_version="test-v1",role="champion"' in text
    assert "fmnist_http_request_duration_seconds_bucket" in text


def test_one_json_log_line_per_request(client, capfd):
    capfd.readouterr()
    predict(
        client, {"instances": [[0] * 784]}, headers={"X-Request-Id": "req-123", "X-Cloud-Trace-Context": "abc/1;o=1"}
    )
    predict(client, {"instances": [[0] * 783]})
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == 2
    ok, bad = lines
    assert ok["severity"] == "INFO" and ok["request_id"] == "req-123" and ok["model_version"] == "test-v1"
    assert ok["httpRequest"]["status"] == 200 and ok["httpRequest"]["latency"].endswith("s")
    assert ok["instances"] == 1 and "timestamp" in ok
    assert bad["severity"] == "WARNING" and bad["error"] == "bad_shape" and "instance 0" in bad["message"]


def test_request_id_is_returned(client):
    assert predict(client, {"instances": [[0] * 784]}, headers={"X-Request-Id": "abc"}).headers["X-Request-Id"] == "abc"
    assert len(predict(client, {"instances": [[0] * 784]}).headers["X-Request-Id"]) == 16


def test_page_and_random_sample(client):
    page = client.get("/")
    assert page.status_code == 200 and b"Random test image" in page.data
    sample = client.get("/v1/samples/random").get_json()
    assert sample["label"] in CLASS_NAMES and 0 <= sample["index"] < 20
    assert Image.open(io.BytesIO(base64.b64decode(sample["b64"]))).size == (28, 28)


def test_page_is_off_when_disabled(make_app):
    client = make_app(PAGE_ENABLED="false").test_client()
    assert client.get("/").status_code == 404
    assert "/" not in client.get("/openapi.json").get_json()["paths"]


def test_int8_is_served_when_asked_and_named_in_v1_model_and_metrics(tmp_path, model_dir):
    from service.app import create_app
    from tests.service.model_factory import make_version

    directory, _ = make_version(model_dir, tmp_path / "q", "v-q", int8=True)
    client = create_app({"MODEL_URI": str(directory), "MODEL_ARTIFACT": "int8", **ADMIN_ENV}).test_client()
    serving = client.get("/v1/model").get_json()["serving"]
    assert (serving["artifact"], serving["artifact_preference"], serving["verified"]) == (
        "model.int8.onnx",
        "int8",
        True,
    )
    images, labels = generated_images(20, seed=23)
    body = predict(client, {"instances": images.tolist()}).get_json()
    assert body["metadata"] == {"model_version": "v-q", "request_id": body["metadata"]["request_id"]}
    accuracy = np.mean([p["class_id"] == y for p, y in zip(body["predictions"], labels, strict=True)])
    assert accuracy >= 0.9  # the quantized graph still classifies
    full = client.get("/v1/model", headers=ADMIN).get_json()
    sha = json.loads((directory / "metadata.json").read_text())["files"]["model.int8.onnx"]
    assert full["source"]["artifact_sha256"] == sha and full["source"]["digests_from"] == "metadata.json"
    assert 'artifact="model.int8.onnx"' in client.get("/metrics").get_data(as_text=True)


@pytest.mark.parametrize(
    "measured_on, int8_speed, served, why",
    [
        ("this", 1300.0, "model.int8.onnx", "int8_faster_on_this_cpu"),
        ("this", 1040.0, "model.onnx", "int8_not_faster_on_this_cpu"),  # under MIN_SPEEDUP (1.05x)
        ("another", 1300.0, "model.onnx", "measured_on_another_cpu"),
    ],
)
def test_by_default_int8_serves_only_where_the_export_measured_it_faster_on_this_cpu(
    tmp_path, model_dir, measured_on, int8_speed, served, why
):
    """MODEL_ARTIFACT=auto (the default): the export's speed record (injected here: figures are the export's
    business, tests/trainer/test_quantize.py) decides, on the CPU it was measured on only; /v1/model says why."""
    from contracts.artifact_speed import SpeedRecord, cpu_model
    from service.app import create_app
    from tests.service.model_factory import make_version

    cpu = cpu_model() if measured_on == "this" else "Another CPU @ 2.0GHz"
    speed = SpeedRecord(cpu, 1000.0, int8_speed).to_dict()
    directory, _ = make_version(model_dir, tmp_path / "q", "v-q", int8=True, speed=speed)
    client = create_app({"MODEL_URI": str(directory), **ADMIN_ENV}).test_client()
    serving = client.get("/v1/model").get_json()["serving"]
    assert (serving["artifact"], serving["artifact_preference"], serving["artifact_choice"]) == (served, "auto", why)
    full = client.get("/v1/model", headers=ADMIN).get_json()
    assert full["quantization"]["speed"] == speed and full["serving"]["cpu"] == cpu_model()
    images, _ = generated_images(4, seed=24)
    assert predict(client, {"instances": images.tolist()}).status_code == 200


def test_an_empty_registry_answers_no_model_until_a_poll_finds_a_champion(tmp_path, model_dir):
    from service.app import create_app
    from tests.service.model_factory import local_registry, make_version, register

    root = tmp_path / "models"
    app = create_app({"MODEL_URI": f"{root}@champion", "PAGE_ENABLED": "true", **ADMIN_ENV})
    client = app.test_client()
    health = client.get("/health").get_json()
    assert (health["status"], health["reason"]) == ("no_model", "not_promoted")
    for path in ("/v1/model", "/v1/samples/random"):
        assert client.get(path).get_json()["error"] == "no_model"
    reply = predict(client, {"instances": [[0] * 784]})
    assert reply.status_code == 503 and "reason: not_promoted" in reply.get_json()["detail"]
    public = [health["detail"], reply.get_json()["detail"], client.get("/v1/model").get_json()["detail"]]
    assert not any(str(root) in text or "index.json" in text for text in public)  # paths are the operator's
    full = client.get("/health", headers=ADMIN).get_json()["detail"]
    assert "index.json does not exist" in full and str(root) in full
    reply = client.post("/predict", json={"instances": [[0] * 784]}, headers=ADMIN)
    assert reply.status_code == 503 and "index.json does not exist" in reply.get_json()["detail"]
    directory, files = make_version(model_dir, tmp_path / "v1", "v1")
    register(local_registry(root), directory, "v1", files)
    assert app.extensions["fmnist"].champion.poll_once() is True  # what each worker's poll thread does
    assert predict(client, {"instances": [[0] * 784]}).get_json()["metadata"]["model_version"] == "v1"
    assert client.get("/health").get_json() == {"status": "ok", "model_version": "v1"}
    assert b'"version":"v1"' in client.get("/openapi.json").data


@pytest.mark.parametrize("encoding", ["binary", "json"])
def test_the_body_limit_is_exact(make_app, encoding):
    """A body of exactly MAX_BODY_BYTES is read and answered; one byte more is refused with 413 before parsing."""
    images, _ = generated_images(3, seed=5)
    if encoding == "binary":
        body, content_type = images.tobytes(), "application/octet-stream"
    else:
        body, content_type = json.dumps({"instances": images.tolist()}).encode(), "application/json"
    at_limit = make_app(MAX_BODY_BYTES=str(len(body))).test_client()
    reply = at_limit.post("/predict", data=body, content_type=content_type)
    assert reply.status_code == 200 and len(reply.get_json()["predictions"]) == 3
    over = make_app(MAX_BODY_BYTES=str(len(body) - 1)).test_client()
    reply = over.post("/predict", data=body, content_type=content_type)
    assert reply.status_code == 413 and reply.get_json()["error"] == "request_entity_too_large"
    assert f"over {len(body) - 1} bytes" in reply.get_json()["detail"]


def test_drift_counts_start_again_when_another_version_serves(tmp_path, model_dir):
    from service.app import create_app
    from tests.service.model_factory import local_registry, make_version, register

    root = tmp_path / "models"
    registry = local_registry(root)
    for name in ("v1", "v2"):
        directory, files = make_version(model_dir, tmp_path / name, name)
        register(registry, directory, name, files, promote=name == "v1")
    app = create_app({"MODEL_URI": f"{root}@champion"})
    client = app.test_client()
    images, _ = generated_images(20, seed=9)
    assert client.post("/predict", data=images.tobytes(), content_type="application/octet-stream").status_code == 200
    assert client.get("/monitoring/drift").get_json()["images_seen"] == 20
    assert app.extensions["fmnist"].champion.poll_once() is False  # same version: the counts stay
    assert client.get("/monitoring/drift").get_json()["images_seen"] == 20
    registry.promote("v2")
    assert app.extensions["fmnist"].champion.poll_once() is True
    assert client.get("/monitoring/drift").get_json()["images_seen"] == 0
    assert (
        client.post("/predict", data=images[:5].tobytes(), content_type="application/octet-stream").status_code == 200
    )
    assert client.get("/monitoring/drift").get_json()["images_seen"] == 5
