"""The starter's filter on the payloads Google Cloud sends: one run per completed upload, none per file, none for
objects outside raw/, a drift incident when it opens (not when it closes), the schedule; bad input named."""

from __future__ import annotations

import base64
import json

import pytest

from contracts.starter import DEFERRED, DRIFT, MANUAL, NEW_DATA, SCHEDULE
from starter.events import BadEvent, Ignored, Sources, Trigger, parse
from tests.starter import payloads

SOURCES = Sources("p-datasets", "raw/_COMMIT", "fmnist-new-raw-data", "fmnist-drift-alerts")


def eventarc(topic: str, envelope: dict):
    return parse(*payloads.eventarc("p", topic, envelope), SOURCES)


def test_the_commit_marker_in_the_datasets_bucket_is_new_data_keyed_by_its_generation():
    found = eventarc(SOURCES.new_data_topic, payloads.storage_notification("p-datasets", "raw/_COMMIT", "1765015"))
    assert found == Trigger(NEW_DATA, "1765015", "gs://p-datasets/raw/_COMMIT#1765015")
    headers, body = payloads.storage_finalized("p-datasets", "raw/_COMMIT", "1765016")  # a direct storage event
    assert parse(headers, body, SOURCES) == Trigger(NEW_DATA, "1765016", "gs://p-datasets/raw/_COMMIT#1765016")
    push = payloads.storage_notification("p-datasets", "raw/_COMMIT", "7")  # a Pub/Sub push subscription
    assert parse({"Content-Type": "application/json"}, json.dumps(push).encode(), SOURCES).kind == NEW_DATA


@pytest.mark.parametrize(
    ("bucket", "name"),
    [
        ("p-datasets", "raw/train-images-idx3-ubyte.gz"),  # a file of the upload: the marker comes last
        ("p-datasets", "raw/_COMMIT.tmp"),
        ("p-datasets", "raw/sub/_COMMIT"),
        ("p-datasets", "exports/png/train/00001.png"),  # export-images writes 70,000 of these
        ("p-datasets", "_COMMIT"),
        ("p-models", "raw/_COMMIT"),  # another bucket
    ],
)
def test_no_other_object_starts_a_run(bucket, name):
    found = eventarc(SOURCES.new_data_topic, payloads.storage_notification(bucket, name, "5"))
    assert isinstance(found, Ignored) and name in found.reason
    headers, body = payloads.storage_finalized(bucket, name, "5")
    assert isinstance(parse(headers, body, SOURCES), Ignored)


def test_a_deleted_or_overwritten_marker_notification_other_than_finalize_starts_nothing():
    envelope = payloads.storage_notification("p-datasets", "raw/_COMMIT", "5", event_type="OBJECT_DELETE")
    assert eventarc(SOURCES.new_data_topic, envelope) == Ignored("OBJECT_DELETE is not a new object")


def test_a_drift_incident_starts_a_run_when_it_opens_not_when_it_closes():
    opened = eventarc(SOURCES.drift_topic, payloads.drift_incident("open", "0.abc"))
    assert opened == Trigger(DRIFT, "0.abc", "drift incident opened")
    closed = eventarc(SOURCES.drift_topic, payloads.drift_incident("closed", "0.abc"))
    assert isinstance(closed, Ignored) and "closed" in closed.reason


def test_budget_and_unknown_topics_and_event_types_start_nothing():
    assert "budget" in eventarc("fmnist-budget-alerts", payloads.budget()).reason
    assert "not the new-data or the drift topic" in eventarc("other", payloads.drift_incident()).reason
    headers, body = payloads.eventarc("p", SOURCES.drift_topic, payloads.drift_incident())
    headers["ce-type"] = "google.cloud.audit.log.v1.written"
    assert isinstance(parse(headers, body, SOURCES), Ignored)


def test_cloud_scheduler_names_its_run_by_the_scheduled_minute_and_the_sweep_is_its_own_kind():
    assert parse(*payloads.scheduler(SCHEDULE, "2026-12-07T04:00:00Z"), SOURCES) == Trigger(
        SCHEDULE, "202612070400", "Cloud Scheduler 2026-12-07T04:00:00Z"
    )
    assert parse(*payloads.scheduler(DEFERRED), SOURCES).kind == DEFERRED
    assert parse(*payloads.scheduler(MANUAL, ""), SOURCES).kind == MANUAL


@pytest.mark.parametrize(
    ("headers", "body", "names"),
    [
        ({}, b"not json", "not JSON"),
        ({}, b'{"hello": 1}', "CloudEvent"),
        ({}, b'{"trigger": "retrain-now"}', "'retrain-now'"),
        ({"ce-type": payloads.PUBSUB}, b'{"data": 1}', "without a `message`"),
        (*payloads.eventarc("p", "fmnist-drift-alerts", {"message": {"data": "!!"}}), "not base64"),
        (*payloads.eventarc("p", "fmnist-drift-alerts", payloads.pubsub_envelope({"x": 1})), "without an `incident`"),
    ],
)
def test_bad_input_is_refused_with_what_to_send(headers, body, names):
    with pytest.raises(BadEvent) as raised:
        parse(headers, body, SOURCES)
    assert names in str(raised.value)


def test_a_push_message_is_new_data_only_with_an_object_and_a_notification_without_event_type_is_a_finalize():
    push = json.dumps(payloads.drift_incident("open", "0.push")).encode()  # a Pub/Sub push: no topic is named
    assert parse({"Content-Type": "application/json"}, push, SOURCES) == Trigger(
        DRIFT, "0.push", "drift incident opened"
    )
    notification = payloads.storage_notification("p-datasets", "raw/_COMMIT", "9")
    del notification["message"]["attributes"]["eventType"]
    assert eventarc(SOURCES.new_data_topic, notification) == Trigger(NEW_DATA, "9", "gs://p-datasets/raw/_COMMIT#9")


def test_a_commit_marker_without_its_generation_is_refused_naming_the_field():
    with pytest.raises(BadEvent) as raised:
        eventarc(SOURCES.new_data_topic, payloads.storage_notification("p-datasets", "raw/_COMMIT", ""))
    assert str(raised.value) == (
        "raw/_COMMIT without its generation: the notification's objectGeneration names the upload"
    )


def test_a_notification_missing_an_attribute_is_read_as_empty_and_named_in_the_reason():
    def without(attribute: str) -> dict:
        envelope = payloads.storage_notification("p-datasets", "raw/_COMMIT", "11")
        del envelope["message"]["attributes"][attribute]
        return envelope

    assert eventarc(SOURCES.new_data_topic, without("bucketId")) == Ignored(
        "gs:///raw/_COMMIT is not in the datasets bucket"
    )
    assert eventarc(SOURCES.new_data_topic, without("objectId")) == Ignored(
        "gs://p-datasets/ is not the commit marker raw/_COMMIT (one run per upload)"
    )
    with pytest.raises(BadEvent) as raised:
        eventarc(SOURCES.new_data_topic, without("objectGeneration"))
    assert str(raised.value).startswith("raw/_COMMIT without its generation")


def test_a_budget_notification_is_named_as_such_from_any_sender():
    reason = "a budget notification starts no run (it is for people: the budget's e-mail and topic)"
    assert eventarc(SOURCES.drift_topic, payloads.budget()) == Ignored(reason)
    push = json.dumps(payloads.budget()).encode()  # a push subscription names no topic
    assert parse({"Content-Type": "application/json"}, push, SOURCES) == Ignored(reason)


def test_a_drift_message_is_read_exactly_or_refused_with_what_is_wrong():
    incident = payloads.pubsub_envelope({"version": "1.2", "incident": {"state": "open"}}, message_id="77")
    assert eventarc(SOURCES.drift_topic, incident) == Trigger(DRIFT, "77", "drift incident opened")  # the messageId
    listed = payloads.pubsub_envelope({"x": 1})
    listed["message"]["data"] = base64.b64encode(b"[1, 2]").decode()
    for envelope in (listed, payloads.pubsub_envelope({"x": 1}), {"message": {"attributes": {}}}):
        with pytest.raises(BadEvent) as raised:
            eventarc(SOURCES.drift_topic, envelope)
        assert str(raised.value) == (
            "a drift message without an `incident`: Cloud Monitoring's Pub/Sub notification carries one"
        )
    with pytest.raises(BadEvent) as raised:
        eventarc(SOURCES.drift_topic, {"message": {"data": "!!"}})
    assert str(raised.value).startswith("message.data is not base64 (")
    assert str(raised.value).endswith("): Pub/Sub sends message data base64-encoded")


def test_a_cloud_event_whose_source_names_no_topic_is_read_like_a_push():
    headers, body = payloads.eventarc("p", SOURCES.drift_topic, payloads.drift_incident("open", "0.x"))
    headers["ce-source"] = "//pubsub.googleapis.com/projects/p"
    assert parse(headers, body, SOURCES) == Trigger(DRIFT, "0.x", "drift incident opened")


def test_a_storage_event_without_the_object_as_its_data_is_refused_naming_the_event():
    headers, _ = payloads.storage_finalized("p-datasets", "raw/_COMMIT", "5")
    with pytest.raises(BadEvent) as raised:
        parse(headers, b"[1]", SOURCES)
    assert str(raised.value) == "google.cloud.storage.object.v1.finalized without the object's metadata as its data"


def test_a_person_s_request_and_the_sweep_are_keyed_by_the_minute_they_arrive():
    from datetime import UTC, datetime

    now = datetime(2026, 12, 7, 4, 31, 59, tzinfo=UTC)
    assert parse(*payloads.scheduler(MANUAL, ""), SOURCES, now=now) == Trigger(MANUAL, "202612070431", "manual request")
    sweep = parse(*payloads.scheduler(DEFERRED, "2026-12-07T04:30:00Z"), SOURCES, now=now)
    assert sweep == Trigger(DEFERRED, "202612070431", "Cloud Scheduler 2026-12-07T04:30:00Z")


def test_a_structured_cloud_event_is_read_from_data_or_data_base64():
    structured = {"Content-Type": "application/cloudevents+json; charset=utf-8"}
    marker = {"bucket": "p-datasets", "name": "raw/_COMMIT", "generation": "21"}
    event = {"specversion": "1.0", "type": "google.cloud.storage.object.v1.finalized", "source": "//storage", "id": "1"}
    expected = Trigger(NEW_DATA, "21", "gs://p-datasets/raw/_COMMIT#21")
    assert parse(structured, json.dumps({**event, "data": marker}).encode(), SOURCES) == expected
    encoded = base64.b64encode(json.dumps(marker).encode()).decode()
    assert parse(structured, json.dumps({**event, "data_base64": encoded}).encode(), SOURCES) == expected
    drift = {
        **event,
        "type": payloads.PUBSUB,
        "source": "//pubsub.googleapis.com/projects/p/topics/fmnist-drift-alerts",
    }
    closed = parse(structured, json.dumps({**drift, "data": payloads.drift_incident("closed")}).encode(), SOURCES)
    assert closed == Ignored("the drift incident is 'closed', not open (its closing notification)")
    with pytest.raises(BadEvent) as raised:
        parse(structured, json.dumps({**event, "data_base64": "!!"}).encode(), SOURCES)
    assert str(raised.value).startswith("data_base64 is not base64 (")
    assert parse(structured, json.dumps({**event, "type": "other"}).encode(), SOURCES) == Ignored(
        "event type other starts no run"
    )
    assert parse(structured, json.dumps({"source": "s"}).encode(), SOURCES) == Ignored(
        "event type (none) starts no run"
    )


def test_a_storage_event_missing_a_field_is_read_as_empty():
    headers, _ = payloads.storage_finalized("p-datasets", "raw/_COMMIT", "5")
    assert parse(headers, json.dumps({"name": "raw/_COMMIT", "generation": "5"}).encode(), SOURCES) == Ignored(
        "gs:///raw/_COMMIT is not in the datasets bucket"
    )
    assert parse(headers, json.dumps({"bucket": "p-datasets", "generation": "5"}).encode(), SOURCES) == Ignored(
        "gs://p-datasets/ is not the commit marker raw/_COMMIT (one run per upload)"
    )
    with pytest.raises(BadEvent, match="^raw/_COMMIT without its generation"):
        parse(headers, json.dumps({"bucket": "p-datasets", "name": "raw/_COMMIT"}).encode(), SOURCES)
    drift = payloads.eventarc("p", "fmnist-drift-alerts", payloads.drift_incident("open", "0.s"))
    no_source = {k: v for k, v in drift[0].items() if k != "ce-source"}
    assert parse(no_source, drift[1], SOURCES) == Trigger(DRIFT, "0.s", "drift incident opened")
    anonymous = payloads.pubsub_envelope({"version": "1.2", "incident": {"state": "open"}})
    del anonymous["message"]["messageId"]
    assert eventarc(SOURCES.drift_topic, anonymous) == Trigger(DRIFT, "", "drift incident opened")


def test_a_structured_cloud_event_from_another_topic_starts_nothing():
    """The topic is read from a structured event's `source` too: a drift-shaped message on another topic is no drift."""
    structured = {"Content-Type": "application/cloudevents+json"}
    event = {"specversion": "1.0", "type": payloads.PUBSUB, "id": "1", "data": payloads.drift_incident("open", "0.o")}
    other = {**event, "source": "//pubsub.googleapis.com/projects/p/topics/other"}
    assert parse(structured, json.dumps(other).encode(), SOURCES) == Ignored(
        "topic other is not the new-data or the drift topic"
    )


def test_a_schedule_request_without_cloud_scheduler_s_time_is_keyed_by_the_minute_it_arrives():
    from datetime import UTC, datetime

    now = datetime(2026, 12, 7, 4, 31, 59, tzinfo=UTC)
    assert parse(*payloads.scheduler(SCHEDULE, ""), SOURCES, now=now) == Trigger(
        SCHEDULE, "202612070431", "Cloud Scheduler "
    )


def test_the_arrival_minute_is_utc_whatever_the_machine_s_zone(monkeypatch):
    import time
    from datetime import UTC, datetime

    monkeypatch.setenv("TZ", "Asia/Kathmandu")  # +05:45: no whole-hour shift can pass for UTC
    time.tzset()
    try:
        before = datetime.now(UTC).strftime("%Y%m%d%H%M")
        key = parse(*payloads.scheduler(MANUAL, ""), SOURCES).key
        after = datetime.now(UTC).strftime("%Y%m%d%H%M")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert key in {before, after}


def test_an_unknown_body_is_refused_naming_every_accepted_shape():
    with pytest.raises(BadEvent) as raised:
        parse({}, b'{"hello": 1}', SOURCES)
    assert str(raised.value) == (
        "not an event the starter knows: send a CloudEvent (Eventarc), a Pub/Sub push message, or a JSON body "
        "{\"trigger\": one of ['schedule', 'deferred', 'manual']} (Cloud Scheduler, a person)"
    )
