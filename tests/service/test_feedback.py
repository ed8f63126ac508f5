"""Ground truth: labels for earlier predictions, joined to the record of recent ones, counted as live accuracy.

In-process tests pin every refusal's reason code (never a 5xx for a caller's label); the live test serves test-set
images through the real gunicorn service (2 workers), posts their true labels from two posters, and checks the
accuracy route, /metrics and the sqlite rows against a count made here from the replies.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from contracts.dataset import CLASS_NAMES
from contracts.feedback import COLUMN_NAMES, TABLE
from tests.service.conftest import start_service, stop_service
from tests.service.model_factory import generated_images

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
HEX = set("0123456789abcdef")


def labelled_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n images of the official test set and their labels (Debian dataset-fashion-mnist), else
    generated images with theirs."""
    if not DEBIAN.is_dir():
        return generated_images(n, seed=7)
    from trainer.data.idx import gunzip, parse_idx

    images = parse_idx(gunzip((DEBIAN / "t10k-images-idx3-ubyte.gz").read_bytes(), "images"), "images", 3)
    labels = parse_idx(gunzip((DEBIAN / "t10k-labels-idx1-ubyte.gz").read_bytes(), "labels"), "labels", 1)
    return images[:n].astype(np.uint8), labels[:n].astype(np.uint8)


def _predict(client, images: np.ndarray, headers: dict | None = None):
    reply = client.post(
        "/predict", data=images.astype(np.uint8).tobytes(), content_type="application/octet-stream", headers=headers
    )
    assert reply.status_code == 200, reply.get_json()
    return reply.get_json()


def _label(client, request_id: str, labels: list, **environ):
    reply = client.post("/feedback", json={"request_id": request_id, "labels": labels}, environ_base=environ)
    return reply.status_code, reply.get_json()


@pytest.fixture(scope="module")
def feedback_client(make_app):
    return make_app(FEEDBACK_ROWS="off").test_client()


def test_a_reply_names_the_id_to_label_and_the_label_is_counted_once(feedback_client):
    images, labels = labelled_images(3)
    reply = _predict(feedback_client, images)
    request_id = reply["metadata"]["request_id"]
    assert len(request_id) == 16 and set(request_id) <= HEX
    predicted = [p["class_id"] for p in reply["predictions"]]
    status, body = _label(feedback_client, request_id, [CLASS_NAMES[int(c)] for c in labels])  # names work too
    assert status == 200
    correct = sum(int(p == t) for p, t in zip(predicted, labels.tolist(), strict=True))
    assert body == {"request_id": request_id, "model_version": "test-v1", "labelled": 3, "correct": correct}
    status, body = _label(feedback_client, request_id, labels.tolist())
    assert (status, body["error"]) == (409, "already_labelled")


def test_a_client_chosen_request_id_is_not_the_one_labels_use(feedback_client):
    reply = feedback_client.post(
        "/predict",
        data=labelled_images(1)[0].tobytes(),
        content_type="application/octet-stream",
        headers={"X-Request-Id": "0000000000000000"},
    )
    assert reply.headers["X-Request-Id"] == "0000000000000000"  # the log's id, the client's to choose
    minted = reply.get_json()["metadata"]["request_id"]
    assert minted != "0000000000000000" and len(minted) == 16
    assert _label(feedback_client, "0000000000000000", [0])[1]["error"] == "unknown_request_id"


@pytest.mark.parametrize(
    ("document", "status", "reason"),
    [
        ({"request_id": "ffffffffffffffff", "labels": [1]}, 404, "unknown_request_id"),
        ({"request_id": "not an id at all", "labels": [1]}, 404, "unknown_request_id"),
        ({"request_id": "ffffffffffffffff", "labels": [10]}, 400, "invalid_label"),
        ({"request_id": "ffffffffffffffff", "labels": ["Cat"]}, 400, "invalid_label"),
        ({"request_id": "ffffffffffffffff", "labels": [True]}, 400, "invalid_label"),
        ({"request_id": "ffffffffffffffff", "labels": []}, 400, "invalid_feedback"),
        ({"request_id": "ffffffffffffffff"}, 400, "invalid_feedback"),
        ([1, 2], 400, "invalid_feedback"),
        ({"request_id": "ffffffffffffffff", "labels": [1] * 65}, 400, "label_count_mismatch"),
    ],
)
def test_labels_that_are_not_counted_get_a_reason_code(feedback_client, document, status, reason):
    reply = feedback_client.post("/feedback", json=document)
    assert (reply.status_code, reply.get_json()["error"]) == (status, reason)


def test_one_label_per_image(feedback_client):
    reply = _predict(feedback_client, labelled_images(2)[0])
    status, body = _label(feedback_client, reply["metadata"]["request_id"], [1])
    assert (status, body["error"]) == (400, "label_count_mismatch")
    assert "had 2 image(s)" in body["detail"]


def test_a_request_over_the_recorded_size_takes_no_label(feedback_client):
    reply = _predict(feedback_client, generated_images(65, seed=1)[0])
    status, body = _label(feedback_client, reply["metadata"]["request_id"], [0] * 64)
    assert (status, body["error"]) == (404, "unknown_request_id")


def test_the_instance_holds_its_last_predictions_and_no_more(make_app):
    client = make_app(FEEDBACK_ROWS="off", FEEDBACK_SLOTS="16").test_client()
    ids = [_predict(client, labelled_images(1)[0])["metadata"]["request_id"] for _ in range(17)]
    assert _label(client, ids[0], [0])[1]["error"] == "unknown_request_id"  # the 17th took its slot
    assert [_label(client, i, [0])[0] for i in ids[1:]] == [200] * 16
    forged = f"{int(ids[5], 16) ^ 1:016x}"  # the right slot, a wrong random part
    assert _label(client, forged, [0])[1]["error"] == "unknown_request_id"


def test_an_old_prediction_expires(make_app):
    client = make_app(FEEDBACK_ROWS="off", FEEDBACK_MAX_AGE_S="0.05").test_client()
    request_id = _predict(client, labelled_images(1)[0])["metadata"]["request_id"]
    time.sleep(0.1)
    status, body = _label(client, request_id, [0])
    assert (status, body["error"]) == (410, "prediction_expired")


def test_only_the_named_posters_may_post(make_app):
    client = make_app(FEEDBACK_ROWS="off", FEEDBACK_POSTERS="ip:10.0.0.7", TRUSTED_PROXY_HOPS="1").test_client()
    request_id = _predict(client, labelled_images(1)[0])["metadata"]["request_id"]
    status, body = _label(client, request_id, [0], HTTP_X_FORWARDED_FOR="10.0.0.8")
    assert (status, body["error"]) == (403, "poster_not_allowed")
    assert _label(client, request_id, [0], HTTP_X_FORWARDED_FOR="10.0.0.7")[0] == 200


def test_a_poster_list_of_anything_but_caller_keys_stops_start_up(make_app):
    from service.config import ConfigError

    with pytest.raises(ConfigError, match="FEEDBACK_POSTERS: 'labeller@x' is not a caller key"):
        make_app(FEEDBACK_POSTERS="labeller@x")
    with pytest.raises(ConfigError, match="FEEDBACK_ROWS='sqlite:': expected log"):
        make_app(FEEDBACK_ROWS="sqlite:")


# ---- the real service: gunicorn, 2 workers, test-set labels as the feedback -----------------------------------


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        series, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += float(value)
    return total


def _rows(database: Path, expected: int, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        rows: list[dict] = []
        if database.exists():
            with sqlite3.connect(database) as connection:
                connection.row_factory = sqlite3.Row
                try:
                    rows = [dict(r) for r in connection.execute(f"SELECT * FROM {TABLE}")]
                except sqlite3.OperationalError:  # the table is not created yet
                    rows = []
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_live_accuracy_from_test_set_labels_on_the_real_service(tmp_path, models_root):
    database = tmp_path / "rows.sqlite3"
    server = start_service(
        tmp_path,
        MODEL_URI=f"{models_root}@champion",
        WORKERS="2",
        FEEDBACK_ROWS=f"sqlite:{database}",
        FEEDBACK_SAMPLE_EVERY="1",
        TRUSTED_PROXY_HOPS="1",
    )
    try:
        images, labels = labelled_images(120)
        sent = []  # (request id, predicted, true labels): 60 requests of 1 image, 20 of 3
        for start, size in [(i, 1) for i in range(60)] + [(60 + 3 * i, 3) for i in range(20)]:
            status, _, data = server.request(
                "POST", "/predict", images[start : start + size].tobytes(), {"Content-Type": "application/octet-stream"}
            )
            assert status == 200
            reply = json.loads(data)
            predicted = [p["class_id"] for p in reply["predictions"]]
            sent.append((reply["metadata"]["request_id"], predicted, labels[start : start + size].tolist()))
        for i, (request_id, _, truth) in enumerate(sent):  # two posters, by the address the trusted proxy saw
            headers = {"X-Forwarded-For": f"10.0.0.{1 + i % 2}"}
            status, body = server.json("POST", "/feedback", {"request_id": request_id, "labels": truth}, headers)
            assert status == 200, body  # whichever worker it reaches: the record is shared by the instance
        # each worker draws its own random bytes after the fork: no two ids share their random part
        assert len({request_id[6:] for request_id, _, _ in sent}) == len(sent)
        status, body = server.json("POST", "/feedback", {"request_id": "0000000000000000", "labels": [1]})
        assert (status, body["error"]) == (404, "unknown_request_id")

        flat = [(p, t) for _, predicted, truth in sent for p, t in zip(predicted, truth, strict=True)]
        correct = sum(p == t for p, t in flat)
        status, report = server.json("GET", "/monitoring/accuracy")
        assert status == 200
        version = report["versions"]["test-v1"]
        assert (version["labelled"], version["correct"]) == (120, correct)
        for class_id, name in enumerate(CLASS_NAMES):
            of_class = [p for p, t in flat if t == class_id]
            if of_class:
                figures = version["classes"][name]
                assert (figures["labelled"], figures["correct"]) == (len(of_class), of_class.count(class_id))
                low, high = figures["interval_95"]
                assert low <= figures["accuracy"] <= high
        # two posters, 60 labels each, under the cap of 100: all 120 credited, enough posters but not labels (200)
        assert version["credited"]["labelled"] == 120 and version["credited"]["posters"] == 2
        assert version["credited"]["enough_for_verdict"] is False

        _, _, scraped = server.request("GET", "/metrics")
        text = scraped.decode()
        assert _metric(text, "fmnist_feedback_labelled_total", model_version="test-v1") == 120
        assert _metric(text, "fmnist_feedback_correct_total", model_version="test-v1") == correct
        assert _metric(text, "fmnist_feedback_poster_labelled_total", model_version="test-v1") == 120

        rows = _rows(database, 241)  # 120 prediction rows, 120 label rows, 1 unjoined label row
        kinds = [r["feedback_event"] for r in rows]
        assert (kinds.count("prediction"), kinds.count("label")) == (120, 121)
        assert set(rows[0]) == set(COLUMN_NAMES)
        joined = [r for r in rows if r["feedback_event"] == "label" and r["model_version"] == "test-v1"]
        assert sorted((r["predicted_class"], r["label"]) for r in joined) == sorted(flat)
        assert sum(r["predicted_class"] == r["label"] for r in joined) == correct
        assert {r["poster"] for r in joined} == {f"{b:02d}" for b in _poster_buckets()}
        print(f"\n120 labelled images in {len(sent)} requests: {correct} correct; {len(rows)} sqlite rows")
    finally:
        stop_service(server)


def _poster_buckets() -> set[int]:
    from service.caller import client_bucket

    return {client_bucket("ip:10.0.0.1"), client_bucket("ip:10.0.0.2")}


def test_on_cloud_run_the_rows_are_json_lines_on_stdout_for_the_log_sink(make_app, capfd):
    from service.config import FeedbackConfig

    assert FeedbackConfig.from_env({"K_SERVICE": "fmnist"}).rows == "log"  # off by default elsewhere
    assert FeedbackConfig.from_env({}).rows == "off"
    client = make_app(FEEDBACK_ROWS="log", FEEDBACK_SAMPLE_EVERY="1").test_client()
    images, labels = labelled_images(2)
    capfd.readouterr()
    request_id = _predict(client, images)["metadata"]["request_id"]
    assert _label(client, request_id, labels.tolist())[0] == 200
    rows: list[dict] = []
    deadline = time.monotonic() + 10
    while len(rows) < 4 and time.monotonic() < deadline:  # the writer thread flushes every 0.2 s
        time.sleep(0.1)
        out = capfd.readouterr().out
        rows += [json.loads(line) for line in out.splitlines() if '"feedback_event"' in line]
    assert [(r["feedback_event"], r["image_index"]) for r in rows] == [
        ("prediction", 0),
        ("prediction", 1),
        ("label", 0),
        ("label", 1),
    ]
    assert all(set(COLUMN_NAMES) <= set(r) and r["severity"] == "INFO" for r in rows)
    assert [r["label"] for r in rows[2:]] == labels.tolist() and rows[2]["request_id"] == request_id
