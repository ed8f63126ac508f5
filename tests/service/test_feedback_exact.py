"""Ground truth, exact and in-process: the record's bounds and refusals word for word, the rows a label and a
sampled prediction write (sqlite, column by column), the row queue's cap, live accuracy for a version of its own
(every figure of /monitoring/accuracy), and the contract's table, view and sink filter as infra deploys them."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time

import numpy as np
import orjson
import pytest
from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric

from contracts import feedback as contract
from contracts.dataset import CLASS_NAMES
from contracts.rollout import Accuracy, Thresholds, wilson_interval
from service import feedback
from service.caller import client_bucket
from service.config import FeedbackConfig
from service.errors import RequestError
from service.feedback import Feedback, PredictionRecord, RowWriter
from tests.service.model_factory import build_registry, generated_images, make_version
from tests.service.test_rollout_server import _with_candidate


def _refused(call) -> RequestError:
    with pytest.raises(RequestError) as refused:
        call()
    return refused.value


def test_the_record_takes_from_1_to_16777215_slots():
    for slots in (0, 1 << 24):
        with pytest.raises(ValueError, match="slots: from 1 to 16777215"):
            PredictionRecord(slots, 60.0)
    assert PredictionRecord(1, 60.0).slots == 1 and PredictionRecord((1 << 24) - 1, 60.0).slots == (1 << 24) - 1


def test_a_held_prediction_is_returned_whole_once_and_its_id_names_its_slot():
    record = PredictionRecord(4, 60.0)
    ids = [record.put("v-exact", np.array([c, 9 - c], np.uint8)) for c in range(6)]
    assert [int(i[:6], 16) for i in ids] == [0, 1, 2, 3, 0, 1]  # the ring: slot, then 40 random bits
    assert len(set(ids)) == 6 and all(len(i) == 16 for i in ids)
    version, classes, age = record.get(ids[5])
    assert (version, classes.tolist()) == ("v-exact", [5, 4]) and 0 <= age < 5
    assert _refused(lambda: record.get(ids[1])).reason == "unknown_request_id"  # evicted by ids[5]
    long_version = "v" * 100
    held = record.put(long_version, np.array([3], np.uint8))
    assert record.get(held)[0] == "v" * 64  # the version is kept to 64 bytes
    record.mark_labelled(held)
    already = _refused(lambda: record.get(held))
    assert (already.status, already.reason, str(already.detail)) == (
        409,
        "already_labelled",
        f"request {held} has its label already",
    )


def test_what_is_not_held_is_unknown_and_the_message_says_why():
    record = PredictionRecord(4, 60.0)
    empty = record.put("v", np.zeros(0, np.uint8))  # nothing to label: no slot is written
    too_many = record.put("v", np.zeros(65, np.uint8))
    beyond = f"{4:06x}{0:010x}"  # a slot this record does not have
    for request_id in (empty, too_many, beyond, "zz" * 8, "0" * 15, "0" * 17):
        refused = _refused(lambda r=request_id: record.get(r))
        assert (refused.status, refused.reason) == (404, "unknown_request_id")
    refused = _refused(lambda: record.get("x" * 70))
    assert refused.detail == (
        f"no recent prediction {'x' * 64 + '...'!r} here: use metadata.request_id of a /predict reply with at most "
        "64 images; it may have been evicted by newer predictions or served by another instance (the label is kept "
        "in the rows for the offline join, but not counted live)"
    )


def test_a_slot_changed_under_its_checksum_reads_as_unknown():
    record = PredictionRecord(2, 60.0)
    request_id = record.put("v", np.array([1, 2], np.uint8))
    record._table[8 + 30] ^= 0xFF  # one byte of the slot's body, as two workers writing at once would leave it
    assert _refused(lambda: record.get(request_id)).reason == "unknown_request_id"


def test_an_expired_prediction_says_how_old_it_is_and_the_limit():
    record = PredictionRecord(2, 2.0)
    request_id = record.put("v", np.array([1], np.uint8))
    offset = 8 + 8  # the slot's predicted-at time, after its 8-byte key
    record._table[offset : offset + 8] = np.float64(time.time() - 30).tobytes()
    body = bytes(record._table[8 : 8 + feedback._BODY_SIZE])
    record._table[8 + feedback._BODY_SIZE : 8 + feedback._LABELLED_AT] = feedback.zlib.crc32(body).to_bytes(4, "little")
    expired = _refused(lambda: record.get(request_id))
    assert (expired.status, expired.reason) == (410, "prediction_expired")
    assert expired.detail == (
        f"request {request_id} was predicted 30 s ago; labels are taken for 2 s (FEEDBACK_MAX_AGE_S): post them sooner"
    )


def _counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_label_counts_per_class_and_poster_and_writes_its_rows(tmp_path):
    database = tmp_path / "rows.db"
    service = Feedback(FeedbackConfig(slots=8, sample_every=2, rows=f"sqlite:{database}"))
    service.rows.interval_s = 0.05
    probabilities = np.eye(10, dtype=np.float32)[[3, 5, 5]] * 0.75
    first = service.on_prediction("v-rows", probabilities, np.array([3, 5, 5], np.uint8))  # not sampled
    second = service.on_prediction("v-rows", probabilities, np.array([3, 5, 5], np.uint8))  # sampled
    poster = "ip:10.1.2.3"
    bucket = f"{client_bucket(poster):02d}"
    before = {
        key: _counted(*key[:1], **dict(key[1:]))
        for key in (
            ("fmnist_feedback_labelled_total", ("model_version", "v-rows"), ("class_name", CLASS_NAMES[3])),
            ("fmnist_feedback_correct_total", ("model_version", "v-rows"), ("class_name", CLASS_NAMES[3])),
            ("fmnist_feedback_labelled_total", ("model_version", "v-rows"), ("class_name", CLASS_NAMES[5])),
            ("fmnist_feedback_correct_total", ("model_version", "v-rows"), ("class_name", CLASS_NAMES[5])),
            ("fmnist_feedback_poster_labelled_total", ("model_version", "v-rows"), ("poster", bucket)),
            ("fmnist_feedback_poster_correct_total", ("model_version", "v-rows"), ("poster", bucket)),
        )
    }
    answer = service.label({"request_id": second, "labels": [3, CLASS_NAMES[3], 5]}, poster, list(CLASS_NAMES))
    assert answer == {"request_id": second, "model_version": "v-rows", "labelled": 3, "correct": 2}
    after = {key: _counted(*key[:1], **dict(key[1:])) for key in before}
    assert [after[key] - before[key] for key in before] == [2, 1, 1, 1, 3, 2]
    unknown = f"{7:06x}{0:010x}"
    not_held = {"request_id": unknown, "labels": [1]}
    assert _refused(lambda: service.label(not_held, poster, list(CLASS_NAMES))).status == 404

    deadline = time.monotonic() + 20
    rows: list[tuple] = []
    while len(rows) < 7 and time.monotonic() < deadline:
        time.sleep(0.05)
        if database.exists():
            with sqlite3.connect(database) as connection:
                try:
                    rows = connection.execute(f"SELECT * FROM {contract.TABLE} ORDER BY rowid").fetchall()
                except sqlite3.OperationalError:
                    rows = []
    assert first != second
    assert [row[:8] for row in rows] == [
        ("prediction", second, 0, "v-rows", 3, 0.75, None, None),
        ("prediction", second, 1, "v-rows", 5, 0.75, None, None),
        ("prediction", second, 2, "v-rows", 5, 0.75, None, None),
        ("label", second, 0, "v-rows", 3, None, 3, bucket),
        ("label", second, 1, "v-rows", 5, None, 3, bucket),
        ("label", second, 2, "v-rows", 5, None, 5, bucket),
        ("label", unknown, 0, None, None, None, 1, bucket),  # kept for the offline join
    ]
    assert all(row[8].endswith("Z") and "T" in row[8] for row in rows)


def test_labels_are_checked_against_the_prediction_and_the_message_says_what_to_post():
    service = Feedback(FeedbackConfig(slots=8, rows="off", posters=frozenset({"ip:10.0.0.7"})))
    request_id = service.on_prediction("v", np.zeros((2, 10), np.float32), np.array([1, 2], np.uint8))
    names = list(CLASS_NAMES)
    denied = _refused(lambda: service.label({"request_id": request_id, "labels": [1, 2]}, "ip:10.0.0.8", names))
    assert (denied.status, denied.reason) == (403, "poster_not_allowed")
    mismatch = _refused(lambda: service.label({"request_id": request_id, "labels": [1]}, "ip:10.0.0.7", names))
    assert (mismatch.status, mismatch.reason, mismatch.detail) == (
        400,
        "label_count_mismatch",
        f"request {request_id} had 2 image(s): post one label per image, in order (got 1)",
    )
    usage = 'post {"request_id": "<metadata.request_id of the reply>", "labels": [<class id or name per image>]}'
    bad = _refused(lambda: service.label({"request_id": request_id, "labels": [1, -1]}, "ip:10.0.0.7", names))
    assert (bad.status, bad.reason, bad.detail) == (
        400,
        "invalid_label",
        f"label '-1' is not a class: give an id from 0 to 9 or one of {', '.join(CLASS_NAMES)}",
    )
    long = _refused(lambda: service.label({"request_id": request_id, "labels": ["y" * 50]}, "ip:10.0.0.7", names))
    assert str(long.detail).startswith(f"label {'y' * 40!r} is not a class")  # a long label is cut to 40 characters
    not_an_object = f"expected a JSON object with request_id and labels: {usage}"
    wrong_types = f"request_id must be a string and labels a non-empty list: {usage}"
    for document, detail in (
        ({"request_id": request_id, "labels": [1], "x": 1}, not_an_object),
        ({"request_id": 7, "labels": [1]}, wrong_types),
        ({"request_id": request_id, "labels": "1"}, wrong_types),
    ):
        refused = _refused(lambda d=document: service.label(d, "ip:10.0.0.7", names))
        assert (refused.status, refused.reason, refused.detail) == (400, "invalid_feedback", detail)
    assert service.label({"request_id": request_id, "labels": [0, 9]}, "ip:10.0.0.7", names)["labelled"] == 2


def test_the_row_queue_is_capped_and_what_does_not_fit_is_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(feedback, "_ROW_QUEUE", 3)
    writer = RowWriter(f"sqlite:{tmp_path / 'rows.db'}", interval_s=60.0)  # the thread waits: the queue holds
    before = _counted("fmnist_feedback_rows_dropped_total")
    try:
        writer.add([("r", i) for i in range(5)])
        assert list(writer._queue) == [("r", 0), ("r", 1), ("r", 2)]
        assert _counted("fmnist_feedback_rows_dropped_total") == before + 2
    finally:  # the thread wakes in 60 s: it must find no stand-in row to insert (its error would reach a closed log)
        writer._queue.clear()


def test_live_accuracy_of_a_version_of_its_own_every_figure(make_app, model_dir, tmp_path):
    directory, _ = make_version(model_dir, tmp_path / "acc", "fb-exact-accuracy")
    client = make_app(MODEL_URI=str(directory), FEEDBACK_ROWS="off").test_client()
    images, _ = generated_images(6, seed=11)
    reply = client.post("/predict", data=images.tobytes(), content_type="application/octet-stream").get_json()
    predicted = [p["class_id"] for p in reply["predictions"]]
    truth = [predicted[0], predicted[1], (predicted[2] + 1) % 10, predicted[3], predicted[4], (predicted[5] + 1) % 10]
    request = {"request_id": reply["metadata"]["request_id"], "labels": truth}
    assert client.post("/feedback", json=request).get_json()["correct"] == 4
    report = client.get("/monitoring/accuracy").get_json()
    thresholds = Thresholds()
    assert report["thresholds"] == {
        "min_labels": thresholds.min_labels,
        "min_label_posters": thresholds.min_label_posters,
        "max_poster_labels": thresholds.max_poster_labels,
        "max_accuracy_drop": thresholds.max_accuracy_drop,
    }

    def figures(correct, labelled):
        return {
            "labelled": labelled,
            "correct": correct,
            "accuracy": correct / labelled,
            "interval_95": list(wilson_interval(correct, labelled)),
        }

    classes = {}
    for true, guess in zip(truth, predicted, strict=True):
        right, seen = classes.get(CLASS_NAMES[true], (0, 0))
        classes[CLASS_NAMES[true]] = (right + int(true == guess), seen + 1)
    mine = report["versions"]["fb-exact-accuracy"]
    assert mine == {
        **figures(4, 6),
        "classes": {name: figures(c, n) for name, (c, n) in sorted(classes.items())},
        "credited": {**figures(4, 6), "posters": 1, "enough_for_verdict": False},
    }


def test_the_rows_table_view_and_sink_filter_as_deployed():
    assert contract.sqlite_schema() == (
        "CREATE TABLE IF NOT EXISTS feedback_rows (feedback_event TEXT, request_id TEXT, image_index INTEGER, "
        "model_version TEXT, predicted_class INTEGER, confidence REAL, label INTEGER, poster TEXT, logged_at TEXT)"
    )
    assert contract.view_select("p.d.t") == (
        "SELECT jsonPayload.feedback_event AS feedback_event, jsonPayload.request_id AS request_id, "
        "CAST(jsonPayload.image_index AS INT64) AS image_index, jsonPayload.model_version AS model_version, "
        "CAST(jsonPayload.predicted_class AS INT64) AS predicted_class, jsonPayload.confidence AS confidence, "
        "CAST(jsonPayload.label AS INT64) AS label, jsonPayload.poster AS poster, "
        "TIMESTAMP(jsonPayload.logged_at) AS logged_at FROM `p.d.t` WHERE jsonPayload.feedback_event IS NOT NULL"
    )
    assert contract.sink_filter("proj", "fmnist-predict") == (
        'resource.type="cloud_run_revision" AND resource.labels.service_name="fmnist-predict" AND '
        'logName="projects/proj/logs/run.googleapis.com%2Fstdout" AND jsonPayload.feedback_event:*'
    )
    schema = contract.sink_table_schema()
    assert schema[0] == {
        "name": "timestamp",
        "type": "TIMESTAMP",
        "mode": "NULLABLE",
        "description": "the log entry's time",
    }
    assert {k: v for k, v in schema[1].items() if k != "fields"} == {
        "name": "jsonPayload",
        "type": "RECORD",
        "mode": "NULLABLE",
    }
    assert [(f["name"], f["type"], f["mode"]) for f in schema[1]["fields"]] == [
        ("feedback_event", "STRING", "NULLABLE"),
        ("request_id", "STRING", "NULLABLE"),
        ("image_index", "FLOAT", "NULLABLE"),
        ("model_version", "STRING", "NULLABLE"),
        ("predicted_class", "FLOAT", "NULLABLE"),
        ("confidence", "FLOAT", "NULLABLE"),
        ("label", "FLOAT", "NULLABLE"),
        ("poster", "STRING", "NULLABLE"),
        ("logged_at", "STRING", "NULLABLE"),
    ]
    assert [f["description"] for f in schema[1]["fields"]] == [c.description for c in contract.COLUMNS]
    with sqlite3.connect(":memory:") as connection:  # the schema is valid SQL and takes a row of each column
        connection.execute(contract.sqlite_schema())
        connection.execute(f"INSERT INTO {contract.TABLE} VALUES ({', '.join('?' * 9)})", ("label",) * 9)


def _family(name: str, *samples: tuple[dict[str, str], float]) -> Metric:
    family = Metric(name, "test counter", "counter")
    for labels, value in samples:
        family.add_sample(f"{name}_total", labels, value)
        family.add_sample(f"{name}_created", labels, 1.0)  # not a count: left out
    return family


def test_the_feedback_counters_are_read_per_version_and_class_or_poster_and_summed():
    families = [
        _family(
            "fmnist_feedback_poster_labelled",
            ({"model_version": "v1", "poster": "03"}, 2.0),
            ({"model_version": "v1", "poster": "03"}, 5.0),  # the same key twice (two sources): summed
            ({"model_version": "v1", "poster": "17"}, 1.0),
        ),
        _family("fmnist_feedback_labelled", ({"model_version": "v2", "class_name": "Bag"}, 4.0)),
        _family("fmnist_feedback_rows_dropped", ({}, 3.0)),  # no labels: the empty key
        _family("fmnist_requests", ({"model_version": "v1"}, 9.0)),  # not a feedback counter
    ]
    assert feedback.read_feedback(families) == {
        "fmnist_feedback_poster_labelled_total": {("v1", "03"): 7.0, ("v1", "17"): 1.0},
        "fmnist_feedback_labelled_total": {("v2", "Bag"): 4.0},
        "fmnist_feedback_rows_dropped_total": {("", ""): 3.0},
    }


def test_a_counter_that_is_missing_counts_zero():
    thresholds = Thresholds()
    assert feedback.accuracy_report({}, thresholds)["versions"] == {}
    assert feedback.version_accuracy({}, "v1", 100) == Accuracy(0.0, 0.0, 0)
    # labels counted but no correct counter yet (no label was right): zero right, never an error or a guess
    counters = {
        "fmnist_feedback_labelled_total": {("v1", "Bag"): 3.0},
        "fmnist_feedback_poster_labelled_total": {("v1", "03"): 3.0},
    }
    assert feedback.version_accuracy(counters, "v1", 100) == Accuracy(0.0, 3.0, 1)
    report = feedback.accuracy_report(counters, thresholds)["versions"]["v1"]
    assert (report["correct"], report["accuracy"], report["classes"]["Bag"]["correct"]) == (0.0, 0.0, 0.0)
    assert report["credited"]["correct"] == 0.0


def test_the_figures_are_rounded_to_three_places_and_no_labels_is_no_accuracy():
    counters = {
        "fmnist_feedback_labelled_total": {("v1", "Bag"): 2.00049, ("v1", "Coat"): 0.0},
        "fmnist_feedback_correct_total": {("v1", "Bag"): 1.00049},
    }
    report = feedback.accuracy_report(counters, Thresholds())["versions"]["v1"]
    assert (report["labelled"], report["correct"]) == (2.0, 1.0)
    assert report["classes"]["Coat"] == {"labelled": 0.0, "correct": 0.0, "accuracy": None, "interval_95": [0.0, 1.0]}
    counters["fmnist_feedback_labelled_total"] = {("v1", "Bag"): 2.0}
    counters["fmnist_feedback_correct_total"] = {("v1", "Bag"): 1.0}
    report = feedback.accuracy_report(counters, Thresholds())["versions"]["v1"]
    assert type(report["labelled"]) is float and type(report["correct"]) is float  # JSON 2.0, as every other figure


def test_a_forked_worker_draws_its_own_ids_not_its_parents():
    record = PredictionRecord(8, 60.0)
    record.put("v", np.array([1], np.uint8))  # the parent has drawn its pool
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        try:
            os.write(write, record.put("v", np.array([1], np.uint8)).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    in_child = os.read(read, 64).decode()
    os.close(read)
    in_parent = record.put("v", np.array([1], np.uint8))
    assert len(in_child) == 16 and in_child[6:] != in_parent[6:]  # the random part: the same draws are guessable


def test_a_row_on_cloud_run_is_one_json_line_with_its_columns(capfd):
    row = ("label", "00000a1b2c3d4e5f", 0, "v1", 3, None, 5, "07", "2026-12-06T18:00:00.000000Z")
    feedback._log_rows([row])
    line = capfd.readouterr().out
    assert line.endswith("\n") and line.count("\n") == 1
    assert orjson.loads(line) == {
        "severity": "INFO",
        "message": "ground truth label",  # the entry's summary in Cloud Logging
        **dict(zip(contract.COLUMN_NAMES, row, strict=True)),
    }
    with pytest.raises(ValueError):  # a row of another shape is a bug here, never a silently shorter row
        feedback._log_rows([row[:-1]])


def test_rows_are_flushed_every_fifth_of_a_second_by_default():
    # the longest a local reader of the sqlite rows (the demo, the tests) waits for a label to show
    assert RowWriter("sqlite:unused.db").interval_s == 0.2


def test_the_row_thread_is_a_named_daemon_so_a_worker_can_exit(tmp_path):
    before = set(threading.enumerate())
    RowWriter(f"sqlite:{tmp_path / 'rows.db'}", interval_s=60.0).add([])  # first use in this process: starts it
    started = [t for t in threading.enumerate() if t not in before]
    assert [(t.name, t.daemon) for t in started] == [("feedback-rows", True)]  # a non-daemon one blocks exit


def test_rows_off_writes_none_and_every_nth_prediction_is_sampled(tmp_path):
    assert Feedback(FeedbackConfig(rows="off")).rows is None
    service = Feedback(FeedbackConfig(slots=16, sample_every=3, rows=f"sqlite:{tmp_path / 'rows.db'}"))
    service.rows.interval_s = 60.0  # the thread waits: the queue holds what was sampled
    made = [service.on_prediction("v", np.eye(10)[[c]], np.array([c], np.uint8)) for c in range(7)]
    assert [(row[1], row[4]) for row in service.rows._queue] == [(made[2], 2), (made[5], 5)]  # the 3rd and 6th


def test_an_id_of_64_characters_is_shown_whole_and_a_longer_one_cut():
    record = PredictionRecord(4, 60.0)
    assert f"{'x' * 64!r} here" in _refused(lambda: record.get("x" * 64)).detail
    assert f"{'x' * 64 + '...'!r} here" in _refused(lambda: record.get("x" * 65)).detail


def _wait_for(caplog, text: str) -> list[str]:
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        found = [r.getMessage() for r in caplog.records if text in r.getMessage()]
        if found:
            return found
        time.sleep(0.02)
    return []


def test_a_rows_target_that_cannot_be_written_is_logged_with_its_name(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="service")
    unopenable = f"sqlite:{tmp_path / 'missing' / 'rows.db'}"
    RowWriter(unopenable)._run()  # returns: this worker writes no rows
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot write ground-truth rows to {unopenable}: none will be written by this worker"
    ]
    target = f"sqlite:{tmp_path / 'rows.db'}"
    writer = RowWriter(target, interval_s=0.02)
    writer.add([("label", "short row")])  # two values for nine columns: the batch fails, the thread goes on
    assert _wait_for(caplog, "could not write") == [f"could not write 1 ground-truth rows to {target}"]


def test_64_images_are_held_and_an_empty_prediction_evicts_nothing():
    record = PredictionRecord(1, 60.0)
    held = record.put("v", np.full(64, 7, np.uint8))  # the most a request may have and still take labels
    assert record.get(held)[1].tolist() == [7] * 64
    record.put("v", np.zeros(0, np.uint8))  # nothing to hold: the one slot keeps the earlier prediction
    assert record.get(held)[1].tolist() == [7] * 64


def test_an_id_made_of_all_sixteen_hex_digits_is_taken():
    record = PredictionRecord(0x012346, 60.0)
    feedback._CURSOR.pack_into(record._table, 0, 0x012345)  # the next prediction lands in slot 0x012345
    record._pool, record._at = bytes.fromhex("6789abcdef"), 0  # and draws these random bytes
    request_id = record.put("v", np.array([4], np.uint8))
    assert request_id == "0123456789abcdef" and record.get(request_id)[1].tolist() == [4]


def test_a_poster_not_named_is_refused_and_told_who_decides():
    service = Feedback(FeedbackConfig(posters=frozenset({"sa:labeller@p.iam.gserviceaccount.com"})))
    document = {"request_id": "0" * 16, "labels": [0]}
    refused = _refused(lambda: service.label(document, "ip:10.0.0.9", list(CLASS_NAMES)))
    assert (refused.status, refused.reason, refused.detail) == (
        403,
        "poster_not_allowed",
        "this caller may not post labels: FEEDBACK_POSTERS names who may (ask the operator to add your service "
        "account)",
    )


def test_accuracy_reports_the_configured_rollout_thresholds(make_app, model_dir, linear_model_dir, tmp_path):
    root = _with_candidate(build_registry(tmp_path / "models", model_dir), linear_model_dir)
    env = {"ROLLOUT_MIN_LABELS": "70", "ROLLOUT_MIN_LABEL_POSTERS": "3", "ROLLOUT_MAX_POSTER_LABELS": "11"}
    app = make_app(MODEL_URI=f"{root}@champion", CHALLENGER="candidate", FEEDBACK_ROWS="off", **env)
    thresholds = app.test_client().get("/monitoring/accuracy").get_json()["thresholds"]
    assert thresholds == {
        "min_labels": 70,
        "min_label_posters": 3,
        "max_poster_labels": 11,
        "max_accuracy_drop": Thresholds().max_accuracy_drop,
    }
