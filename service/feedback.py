"""Ground truth: a bounded record of recent predictions, labels posted for them, live accuracy, and the rows.

The hot path (`Feedback.on_prediction`, one call from the predict view) does no I/O: it writes one fixed-size slot
of a table in anonymous shared memory and, for every FEEDBACK_SAMPLE_EVERY-th request, appends the rows to an
in-memory queue that a background thread writes (JSON lines on stdout for Cloud Logging's sink into BigQuery, or a
local sqlite database).

Why shared memory, bounded in size and age: gunicorn's workers share one listening socket, so a label lands on any
worker of the instance; the table is mapped by the master before the fork (create_app), so every worker reads what
every other one wrote. It is a ring of FEEDBACK_SLOTS predictions (160 bytes each): the instance holds exactly its
last FEEDBACK_SLOTS predictions of at most 64 images, each for at most FEEDBACK_MAX_AGE_S. The id a reply names
for labels (metadata.request_id; X-Request-Id stays the request log's id, which a client may choose) is minted
here: its slot and 40 random bits, so nobody can guess another caller's id. Every slot carries a CRC of its
contents, so a slot two workers wrote at once reads as unknown, never as a wrong prediction. A label for an id the
instance does not hold (evicted, expired, never made, or served by another Cloud Run instance) gets a 4xx reason
code, is written as a label row all the same (BigQuery joins it to the sampled prediction rows), and counts nothing
live. Each prediction takes one label: a second one gets 409.

Who may post labels: any caller the platform lets in (Cloud Run IAM invokers), narrowed by FEEDBACK_POSTERS; each
poster is counted by the bucket of its verified key (service/caller.py), and the rollout verdict caps each bucket
and needs several (contracts.rollout.capped_accuracy), so no poster moves the verdict alone (SECURITY.md).

Metrics (multiprocess counters, summed by /metrics and by the fleet's PromQL): labelled and correct per model
version and true class (the per-class accuracy), and per model version and poster bucket (the capped verdict).
"""

from __future__ import annotations

import logging
import mmap
import os
import sqlite3
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from flask import Flask, Response, request
from prometheus_client import Counter

from contracts.feedback import COLUMN_NAMES, LABEL, PREDICTION, TABLE, sqlite_schema
from contracts.rollout import Accuracy, Thresholds, accuracy_counts, capped_accuracy, wilson_interval
from contracts.serving import ACCURACY_ROUTE, FEEDBACK_ROUTE
from service import metrics
from service.body import read_body
from service.caller import caller_key, client_bucket
from service.config import FEEDBACK_MAX_IMAGES, FeedbackConfig
from service.errors import RequestError

if TYPE_CHECKING:
    from service.state import ServiceState

log = logging.getLogger("service")

LABELLED = Counter(
    "fmnist_feedback_labelled", "Labelled images, by the version that predicted them and the true class",
    ["model_version", "class_name"],
)  # fmt: skip
CORRECT = Counter(
    "fmnist_feedback_correct", "Labelled images the version predicted right, by version and true class",
    ["model_version", "class_name"],
)  # fmt: skip
POSTER_LABELLED = Counter(
    "fmnist_feedback_poster_labelled", "Labelled images by version and label-poster bucket",
    ["model_version", "poster"],
)  # fmt: skip
POSTER_CORRECT = Counter(
    "fmnist_feedback_poster_correct", "Correctly predicted labelled images by version and label-poster bucket",
    ["model_version", "poster"],
)  # fmt: skip
ROWS_DROPPED = Counter("fmnist_feedback_rows_dropped", "Ground-truth rows dropped because the row queue was full")

_HEADER = struct.Struct("<8sdHB64s")  # key (the id's bytes), predicted at (unix s), images, version length, version
_BODY_SIZE = _HEADER.size + FEEDBACK_MAX_IMAGES
SLOT_BYTES = 160  # body, CRC32 (4 bytes), labelled flag (1 byte), padding
_LABELLED_AT = _BODY_SIZE + 4
_ID_CHARS = frozenset("0123456789abcdef")
_CURSOR = struct.Struct("<Q")
_SLOT_BYTES, _RANDOM_BYTES = 3, 5  # an id's 8 bytes: its slot, then random ones
_ROW_QUEUE = 50_000  # rows waiting for the writer thread, per worker


class PredictionRecord:
    """The recent predictions of one instance (module docstring): create it before gunicorn forks."""

    def __init__(self, slots: int, max_age_s: float):
        if not 0 < slots < 1 << (8 * _SLOT_BYTES):
            raise ValueError(f"slots: from 1 to {(1 << (8 * _SLOT_BYTES)) - 1}")
        self.slots, self.max_age_s = slots, max_age_s
        # anonymous and MAP_SHARED: the forked workers share it; the first 8 bytes count the predictions made
        self._table = mmap.mmap(-1, _CURSOR.size + slots * SLOT_BYTES)
        self._versions: dict[str, bytes] = {}
        self._pool: bytes = b""  # random bytes drawn 4 kB at a time (one syscall per 800 ids)
        self._at = 0
        os.register_at_fork(after_in_child=self._forget_pool)  # a worker must never reuse its parent's draws

    def _forget_pool(self) -> None:
        self._pool, self._at = b"", 0

    def put(self, version: str, predicted: np.ndarray) -> str:
        """Hold one prediction in the next slot of the ring; the id labels name it by (16 hex digits: the slot,
        then 40 random bits)."""
        table = self._table
        (made,) = _CURSOR.unpack_from(table, 0)
        _CURSOR.pack_into(table, 0, made + 1)  # two workers in the same instant may share a slot: one is evicted
        slot = made % self.slots
        at = self._at
        if at + _RANDOM_BYTES > len(self._pool):
            self._pool, at = os.urandom(4096), 0
        self._at = at + _RANDOM_BYTES
        key: bytes = slot.to_bytes(_SLOT_BYTES, "big") + self._pool[at : at + _RANDOM_BYTES]
        images = len(predicted)
        if 0 < images <= FEEDBACK_MAX_IMAGES:
            encoded = self._versions.get(version)
            if encoded is None:
                encoded = self._versions[version] = version.encode()[:64]
            body = _HEADER.pack(key, time.time(), images, len(encoded), encoded) + bytes(predicted.tolist())
            body = body.ljust(_BODY_SIZE, b"\0")
            offset = _CURSOR.size + slot * SLOT_BYTES
            table[offset : offset + _LABELLED_AT + 1] = body + zlib.crc32(body).to_bytes(4, "little") + b"\0"
        return key.hex()

    def _offset(self, request_id: str) -> tuple[bytes, int]:
        if len(request_id) != 16 or not set(request_id) <= _ID_CHARS:
            raise _unknown(request_id)
        key = bytes.fromhex(request_id)
        slot = int.from_bytes(key[:_SLOT_BYTES], "big")
        if slot >= self.slots:
            raise _unknown(request_id)
        return key, _CURSOR.size + slot * SLOT_BYTES

    def get(self, request_id: str) -> tuple[str, np.ndarray, float]:
        """(version, predicted classes, age in seconds) of a held prediction; RequestError 404/410/409 otherwise."""
        key, offset = self._offset(request_id)
        raw = self._table[offset : offset + _LABELLED_AT + 1]
        body = raw[:_BODY_SIZE]
        if int.from_bytes(raw[_BODY_SIZE:_LABELLED_AT], "little") != zlib.crc32(body):
            raise _unknown(request_id)
        held, at, images, length, version = _HEADER.unpack_from(body)
        if held != key or not images:
            raise _unknown(request_id)
        age = time.time() - at
        if age > self.max_age_s:
            raise RequestError(
                410,
                "prediction_expired",
                f"request {request_id} was predicted {age:.0f} s ago; labels are taken for "
                f"{self.max_age_s:.0f} s (FEEDBACK_MAX_AGE_S): post them sooner",
            )
        if raw[_LABELLED_AT]:
            raise RequestError(409, "already_labelled", f"request {request_id} has its label already")
        classes = np.frombuffer(body, np.uint8, images, _HEADER.size)
        return version[:length].decode(), classes, age

    def mark_labelled(self, request_id: str) -> None:
        self._table[self._offset(request_id)[1] + _LABELLED_AT] = 1


def _unknown(request_id: str) -> RequestError:
    shown = request_id if len(request_id) <= 64 else request_id[:64] + "..."
    return RequestError(
        404,
        "unknown_request_id",
        f"no recent prediction {shown!r} here: use metadata.request_id of a /predict reply with at most "
        f"{FEEDBACK_MAX_IMAGES} images; it may have been evicted by newer predictions or served by another "
        "instance (the label is kept in the rows for the offline join, but not counted live)",
    )


class RowWriter:
    """Rows from a queue, written by a daemon thread of each worker (started on first use after the fork)."""

    def __init__(self, target: str, interval_s: float = 0.2):
        self.target, self.interval_s = target, interval_s
        self._queue: deque[tuple[Any, ...]] = deque()
        self._pid = 0
        self._wake = threading.Event()

    def add(self, rows: Iterable[tuple[Any, ...]]) -> None:
        if self._pid != os.getpid():
            self._start()
        for row in rows:
            if len(self._queue) >= _ROW_QUEUE:
                ROWS_DROPPED.inc()
                continue
            self._queue.append(row)

    def _start(self) -> None:
        self._pid = os.getpid()
        self._queue.clear()
        threading.Thread(target=self._run, name="feedback-rows", daemon=True).start()

    def _run(self) -> None:
        try:
            write = self._sqlite_writer() if self.target.startswith("sqlite:") else _log_rows
        except Exception:  # the predictions go on; the rows queue up to their cap and are dropped, counted
            log.exception("cannot write ground-truth rows to %s: none will be written by this worker", self.target)
            return
        while True:
            self._wake.wait(self.interval_s)
            batch = []
            while self._queue:
                batch.append(self._queue.popleft())
            if batch:
                try:
                    write(batch)
                except Exception:  # a full disk must not stop the next batches
                    log.exception("could not write %d ground-truth rows to %s", len(batch), self.target)

    def _sqlite_writer(self) -> Any:
        connection = sqlite3.connect(self.target[len("sqlite:") :], timeout=10.0, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(sqlite_schema())
        insert = f"INSERT INTO {TABLE} ({', '.join(COLUMN_NAMES)}) VALUES ({', '.join('?' * len(COLUMN_NAMES))})"

        def write(batch: list[tuple[Any, ...]]) -> None:
            with connection:
                connection.executemany(insert, batch)

        return write


def _log_rows(batch: list[tuple[Any, ...]]) -> None:
    """One JSON line per row on stdout: Cloud Run sends it to Cloud Logging as jsonPayload (the sink's filter
    selects EVENT_FIELD). One write per line (each well under the pipe's atomic 4 kB), so no request line from the
    serving thread can land inside one."""
    for row in batch:
        os.write(1, orjson.dumps({"severity": "INFO", "message": f"ground truth {row[0]}", **_fields(row)}) + b"\n")


def _fields(row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(COLUMN_NAMES, row, strict=True))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Feedback:
    """The record, the rows and the label route's logic for one service (one per instance, before the fork)."""

    def __init__(self, config: FeedbackConfig):
        self.config = config
        self.record = PredictionRecord(config.slots, config.max_age_s)
        self.rows = None if config.rows == "off" else RowWriter(config.rows)
        self._seen = 0
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}

    def on_prediction(self, version: str, probabilities: np.ndarray, predicted: np.ndarray) -> str:
        """Hold the prediction for labels (and sample its rows); the id its reply names for labels."""
        request_id = self.record.put(version, predicted)
        if self.rows is not None:
            self._seen += 1
            if self._seen >= self.config.sample_every:
                self._seen = 0
                confidence = probabilities.max(axis=1).tolist()
                at = _now()
                self.rows.add(
                    (PREDICTION, request_id, i, version, c, confidence[i], None, None, at)
                    for i, c in enumerate(predicted.tolist())
                )
        return request_id

    def label(self, document: object, poster_key: str, class_names: list[str]) -> dict[str, Any]:
        """Count the labels of one earlier prediction (the /feedback route); RequestError with a reason code
        (contracts.feedback.LABEL_REASON_CODES) for anything that is not counted."""
        if self.config.posters and poster_key not in self.config.posters:
            raise RequestError(
                403,
                "poster_not_allowed",
                "this caller may not post labels: FEEDBACK_POSTERS names who may (ask the operator to add your "
                "service account)",
            )
        request_id, labels = _parse(document, class_names)
        poster = f"{client_bucket(poster_key):02d}"
        try:
            version, predicted, _ = self.record.get(request_id)
        except RequestError as refused:
            if refused.reason == "unknown_request_id":  # kept for the offline join (module docstring)
                self._write_labels(request_id, labels, None, None, poster)
            raise
        if len(labels) != len(predicted):
            raise RequestError(
                400,
                "label_count_mismatch",
                f"request {request_id} had {len(predicted)} image(s): post one label per image, in order "
                f"(got {len(labels)})",
            )
        self.record.mark_labelled(request_id)
        truth = np.asarray(labels)
        right = truth == predicted
        for class_id in np.unique(truth).tolist():
            of_class = truth == class_id
            labelled, correct = self._class_counters(version, class_names[class_id])
            labelled.inc(int(of_class.sum()))
            correct.inc(int(right[of_class].sum()))
        POSTER_LABELLED.labels(version, poster).inc(len(labels))
        POSTER_CORRECT.labels(version, poster).inc(int(right.sum()))
        self._write_labels(request_id, labels, version, predicted.tolist(), poster)
        correct = int(right.sum())
        return {"request_id": request_id, "model_version": version, "labelled": len(labels), "correct": correct}

    def _class_counters(self, version: str, name: str) -> tuple[Any, Any]:
        children = self._children.get((version, name))
        if children is None:
            children = self._children[(version, name)] = (
                LABELLED.labels(version, name),
                CORRECT.labels(version, name),
            )
        return children

    def _write_labels(
        self, request_id: str, labels: list[int], version: str | None, predicted: list[int] | None, poster: str
    ) -> None:
        if self.rows is None:
            return
        at = _now()
        self.rows.add(
            (LABEL, request_id, i, version, None if predicted is None else predicted[i], None, label, poster, at)
            for i, label in enumerate(labels)
        )


def _parse(document: object, class_names: list[str]) -> tuple[str, list[int]]:
    usage = 'post {"request_id": "<metadata.request_id of the reply>", "labels": [<class id or name per image>]}'
    if not isinstance(document, dict) or set(document) != {"request_id", "labels"}:
        raise RequestError(400, "invalid_feedback", f"expected a JSON object with request_id and labels: {usage}")
    request_id, labels = document["request_id"], document["labels"]
    if not isinstance(request_id, str) or not isinstance(labels, list) or not labels:
        raise RequestError(400, "invalid_feedback", f"request_id must be a string and labels a non-empty list: {usage}")
    if len(labels) > FEEDBACK_MAX_IMAGES:
        raise RequestError(400, "label_count_mismatch", f"at most {FEEDBACK_MAX_IMAGES} labels: {usage}")
    ids = []
    for label in labels:
        if isinstance(label, str) and label in class_names:
            ids.append(class_names.index(label))
        elif isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(class_names):
            ids.append(label)
        else:
            raise RequestError(
                400,
                "invalid_label",
                f"label {str(label)[:40]!r} is not a class: give an id from 0 to {len(class_names) - 1} or one of "
                f"{', '.join(class_names)}",
            )
    return request_id, ids


# ---- live accuracy from the summed counters (the /monitoring/accuracy route and the rollout verdict) ----------


def read_feedback(families: Iterable[Any]) -> dict[str, dict[tuple[str, str], float]]:
    """{sample name: {(model_version, class_name or poster): value}} of the feedback counters, summed."""
    out: dict[str, dict[tuple[str, str], float]] = {}
    for family in families:
        if not family.name.startswith("fmnist_feedback_"):
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            second = sample.labels.get("class_name", sample.labels.get("poster", ""))
            key = (sample.labels.get("model_version", ""), second)
            table = out.setdefault(sample.name, {})
            table[key] = table.get(key, 0.0) + sample.value
    return out


def version_accuracy(counters: Mapping[str, Mapping[tuple[str, str], float]], version: str, cap: int) -> Accuracy:
    """One version's accuracy with each poster bucket capped (contracts.rollout.capped_accuracy)."""
    labelled = counters.get("fmnist_feedback_poster_labelled_total", {})
    correct = counters.get("fmnist_feedback_poster_correct_total", {})
    return capped_accuracy(
        ((n, correct.get(key, 0.0)) for key, n in sorted(labelled.items()) if key[0] == version), cap
    )


def _figures(correct: float, labelled: float) -> dict[str, Any]:
    low, high = wilson_interval(correct, labelled)
    return {
        "labelled": round(labelled, 3),
        "correct": round(correct, 3),
        "accuracy": correct / labelled if labelled else None,
        "interval_95": [low, high],
    }


def accuracy_report(counters: Mapping[str, Mapping[tuple[str, str], float]], thresholds: Thresholds) -> dict[str, Any]:
    """/monitoring/accuracy: per version, all labels and per true class (Wilson intervals), and the capped
    figures the rollout verdict uses."""
    labelled = counters.get("fmnist_feedback_labelled_total", {})
    correct = counters.get("fmnist_feedback_correct_total", {})
    versions: dict[str, Any] = {}
    for version in sorted({v for v, _ in labelled}):
        rows = {name: (correct.get((v, name), 0.0), n) for (v, name), n in sorted(labelled.items()) if v == version}
        total_correct = sum(c for c, _ in rows.values())
        total = sum(n for _, n in rows.values())
        capped = version_accuracy(counters, version, thresholds.max_poster_labels)
        versions[version] = {
            **_figures(total_correct, total),
            "classes": {name: _figures(c, n) for name, (c, n) in rows.items()},
            "credited": {
                **_figures(capped.correct, capped.labelled),
                "posters": capped.posters,
                "enough_for_verdict": accuracy_counts(capped, thresholds),
            },
        }
    return {
        "versions": versions,
        "thresholds": {
            "min_labels": thresholds.min_labels,
            "min_label_posters": thresholds.min_label_posters,
            "max_poster_labels": thresholds.max_poster_labels,
            "max_accuracy_drop": thresholds.max_accuracy_drop,
        },
    }


def register_routes(app: Flask, state: ServiceState, feedback: Feedback) -> None:
    """POST /feedback (labels for an earlier prediction) and GET /monitoring/accuracy (live accuracy)."""
    config = state.config
    counters = metrics.build_rollout_registry()  # every worker's counters, summed
    thresholds = config.rollout.thresholds if config.rollout is not None else Thresholds()

    @app.post(FEEDBACK_ROUTE)
    def post_feedback() -> Response:
        if request.mimetype != "application/json":
            raise RequestError(
                415, "unsupported_media_type", 'send application/json: {"request_id": "...", "labels": [...]}'
            )
        try:
            document = orjson.loads(read_body(request.environ, config.max_body_bytes))
        except orjson.JSONDecodeError:
            raise RequestError(400, "invalid_feedback", "the body is not JSON") from None
        loaded = state.champion.current
        if loaded is None:
            raise state.unavailable()
        key = caller_key(request.environ, config.caller_identity, config.trusted_proxy_hops)
        body = orjson.dumps(feedback.label(document, key, loaded.class_names))
        return Response(body, mimetype="application/json")

    @app.get(ACCURACY_ROUTE)
    def accuracy() -> Response:
        report = accuracy_report(read_feedback(counters.collect()), thresholds)
        return Response(orjson.dumps(report), mimetype="application/json")
