"""The predict route's own choices, exactly (service/predict_route.py, issue 27's predict-route group): which media
types it reads and how it names one it refuses, whose top_k wins when the body and the query both give one, the
predictions document it builds from a probability matrix (ties in top_k in class order), and the reply's headers
from the plain WSGI handler."""

from __future__ import annotations

import json

import numpy as np
import pytest
from werkzeug.test import Client

from service.predict_route import predictions
from tests.service.model_factory import generated_images

NAMES = [f"c{i}" for i in range(10)]
REFUSED = (
    'is not supported: send application/json ({"instances": [...]}) or application/octet-stream (N x 784 uint8 pixels)'
)


@pytest.mark.parametrize(
    "content_type", ["Application/Octet-Stream", "APPLICATION/OCTET-STREAM; charset=binary"], ids=["title", "upper"]
)
def test_a_media_type_is_read_in_any_case(client, content_type):
    images, _ = generated_images(2, seed=31)
    reply = client.post("/predict", data=images.tobytes(), content_type=content_type)
    assert reply.status_code == 200, reply.get_data(as_text=True)
    assert len(reply.get_json()["predictions"]) == 2


def test_any_json_suffix_is_read_as_json(client):
    document = json.dumps({"instances": [[0] * 784]})
    reply = client.post("/predict", data=document, content_type="application/vnd.fmnist+json")
    assert reply.status_code == 200, reply.get_data(as_text=True)


@pytest.mark.parametrize(
    "content_type,named", [(None, "'(none)'"), ("Text/Plain; charset=utf-8", "'text/plain'")], ids=["none", "text"]
)
def test_a_refused_media_type_is_named_without_its_parameters(client, content_type, named):
    headers = {} if content_type is None else {"Content-Type": content_type}
    reply = client.post("/predict", data=b"x", headers=headers)
    assert reply.status_code == 415
    assert reply.get_json() == {"error": "unsupported_media_type", "detail": f"Content-Type {named} {REFUSED}"}


def test_the_body_s_top_k_wins_over_the_query_s(client):
    document = json.dumps({"instances": [[0] * 784], "parameters": {"top_k": 4}})
    reply = client.post(
        "/predict", data=document, content_type="application/json", query_string={"top_k": "2"}
    ).get_json()
    assert len(reply["predictions"][0]["top_k"]) == 4


def test_the_predictions_document_of_a_probability_matrix():
    probabilities = np.zeros((2, 10), np.float32)
    probabilities[0, [1, 2, 7]] = [0.25, 0.5, 0.25]
    probabilities[1, [3, 8]] = [0.5, 0.5]
    predicted = probabilities.argmax(axis=1)
    document = predictions(probabilities, predicted, 3, NAMES)
    assert [(p["class_id"], p["label"]) for p in document] == [(2, "c2"), (3, "c3")]
    for row, item in zip(probabilities, document, strict=True):
        np.testing.assert_array_equal(item["probabilities"], row)
    # equal probabilities keep class order: 1 before 7, 3 before 8, then the first zero (class 0)
    assert [[(t["class_id"], t["label"], float(t["probability"])) for t in p["top_k"]] for p in document] == [
        [(2, "c2", 0.5), (1, "c1", 0.25), (7, "c7", 0.25)],
        [(3, "c3", 0.5), (8, "c8", 0.5), (0, "c0", 0.0)],
    ]
    assert all("top_k" not in item for item in predictions(probabilities, predicted, None, NAMES))


@pytest.mark.parametrize(
    "body,content_type,status",
    [(b"\0" * 784, "application/octet-stream", "200 OK"), (b"\0" * 783, "application/octet-stream", "400 BAD REQUEST")],
    ids=["answered", "refused"],
)
def test_the_plain_handler_s_reply_headers_give_the_json_type_and_the_body_s_length(app, body, content_type, status):
    reply = Client(app).post("/predict", data=body, content_type=content_type)
    assert reply.status == status
    assert reply.headers["Content-Type"] == "application/json"
    assert int(reply.headers["Content-Length"]) == len(reply.get_data()) > 0


def test_drift_counts_a_caller_by_the_identity_cloud_run_verified_when_configured(make_app):
    """CALLER_IDENTITY=cloud_run_iam: the caller is the ID token's email (service/caller.py), not its address; the
    route passes the configured identity to drift's client buckets."""
    import base64

    from service.caller import client_bucket

    claims = base64.urlsafe_b64encode(json.dumps({"email": "scorer@example.iam"}).encode()).decode().rstrip("=")
    token = f"Bearer eyJhbGciOiJSUzI1NiJ9.{claims}.c2ln"
    by_identity, by_address = client_bucket("id:scorer@example.iam"), client_bucket("ip:203.0.113.50")
    assert by_identity != by_address, "the test needs the two keys in different buckets"
    client = make_app(DRIFT_SAMPLE_EVERY="1", CALLER_IDENTITY="cloud_run_iam").test_client()
    images, _ = generated_images(3, seed=32)
    reply = client.post(
        "/predict",
        data=images.tobytes(),
        content_type="application/octet-stream",
        headers={"X-Serverless-Authorization": token},
        environ_base={"REMOTE_ADDR": "203.0.113.50"},
    )
    assert reply.status_code == 200, reply.get_json()
    text = client.get("/metrics").get_data(as_text=True)
    assert f'fmnist_drift_client_images{{client="{by_identity:02d}"}} 3.0' in text
    assert f'fmnist_drift_client_images{{client="{by_address:02d}"}}' not in text


def test_the_inference_histogram_observes_the_request_s_inference_time(client):
    import time

    from prometheus_client import REGISTRY

    def observed() -> tuple[float, float]:
        sample = REGISTRY.get_sample_value
        return sample("fmnist_inference_duration_seconds_count"), sample("fmnist_inference_duration_seconds_sum")

    images, _ = generated_images(2, seed=33)
    count, total = observed()
    started = time.perf_counter()
    reply = client.post("/predict", data=images.tobytes(), content_type="application/octet-stream")
    elapsed = time.perf_counter() - started
    assert reply.status_code == 200
    after_count, after_total = observed()
    assert after_count == count + 1
    assert 0 < after_total - total <= elapsed  # the inference, within the request's own time
