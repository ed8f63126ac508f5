"""What a request to the starter is: a trigger to act on, or an event to ignore (and why).

The shapes are the ones Google Cloud sends (each is a test fixture in tests/starter):
- Eventarc delivers CloudEvents in binary mode (`ce-type`, `ce-source`, ... headers, the data as the body) or, from
  other senders, structured (`application/cloudevents+json`). Of those, a Pub/Sub `messagePublished` from the
  new-data topic (the datasets bucket's notification, prefix-filtered to raw/_COMMIT), from the drift topic (a Cloud
  Monitoring incident), or a Cloud Storage `object.v1.finalized` event (should a direct trigger be declared).
- A Pub/Sub push subscription POSTs the message envelope with no CloudEvent headers.
- Cloud Scheduler POSTs the body its job declares (`{"trigger": "schedule"}`) with `X-CloudScheduler-ScheduleTime`.

New data is one event per completed upload: only the exact commit-marker object in the datasets bucket counts,
never another object under raw/ (the IDX files), nor anything outside it (`export-images` writes 70,000 PNGs in that
bucket). The key of a trigger is what makes a redelivered event the same run: the marker's generation, the
incident's id, the scheduled time.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contracts.starter import DRIFT, HTTP_TRIGGERS, MANUAL, NEW_DATA, SCHEDULE

PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
STORAGE_FINALIZED = "google.cloud.storage.object.v1.finalized"
FINALIZE = "OBJECT_FINALIZE"  # a Cloud Storage notification's eventType for a new object (JSON_API_V1)
SCHEDULE_TIME = "X-CloudScheduler-ScheduleTime"


class BadEvent(ValueError):
    """A request the starter cannot read; the message says what is wrong and what to send instead (HTTP 400)."""


@dataclass(frozen=True)
class Trigger:
    """An event that asks for a run: its kind (the run's `trigger` label) and the key that names its run."""

    kind: str
    key: str
    detail: str = ""


@dataclass(frozen=True)
class Ignored:
    """An event that starts nothing, and why (it is answered 200, so its sender does not retry it)."""

    reason: str


@dataclass(frozen=True)
class Sources:
    """What the filter compares with: the datasets bucket and its marker, the two topics."""

    datasets_bucket: str
    commit_object: str
    new_data_topic: str
    drift_topic: str


def parse(headers: Mapping[str, str], body: bytes, sources: Sources, now: datetime | None = None) -> Trigger | Ignored:
    """The trigger a request carries (headers are matched case-insensitively)."""
    lower = {k.lower(): v for k, v in headers.items()}
    payload = _json(body)
    if "ce-type" in lower:  # binary-mode CloudEvent: the body is the data
        return _cloud_event(lower["ce-type"], lower.get("ce-source", ""), payload, sources)
    if "cloudevents" in lower.get("content-type", "") and isinstance(payload, dict):  # structured mode
        data = payload.get("data")
        if data is None and "data_base64" in payload:
            data = _json(_b64(payload["data_base64"], "data_base64"))
        return _cloud_event(str(payload.get("type", "")), str(payload.get("source", "")), data, sources)
    if isinstance(payload, dict) and isinstance(payload.get("message"), dict):  # a Pub/Sub push envelope
        return _pubsub_message(payload["message"], "", sources)
    if isinstance(payload, dict) and "trigger" in payload:
        return _http(payload, lower.get(SCHEDULE_TIME.lower(), ""), now or datetime.now(UTC))
    raise BadEvent(
        "not an event the starter knows: send a CloudEvent (Eventarc), a Pub/Sub push message, or a JSON body "
        f'{{"trigger": one of {list(HTTP_TRIGGERS)}}} (Cloud Scheduler, a person)'
    )


def _cloud_event(kind: str, source: str, data: Any, sources: Sources) -> Trigger | Ignored:
    if kind == PUBSUB_PUBLISHED:
        if not isinstance(data, dict) or not isinstance(data.get("message"), dict):
            raise BadEvent(f"{PUBSUB_PUBLISHED} without a `message`: the data must be Pub/Sub's push envelope")
        topic = source.rpartition("/topics/")[2] if "/topics/" in source else ""
        return _pubsub_message(data["message"], topic, sources)
    if kind == STORAGE_FINALIZED:
        if not isinstance(data, dict):
            raise BadEvent(f"{STORAGE_FINALIZED} without the object's metadata as its data")
        return _new_object(
            str(data.get("bucket", "")), str(data.get("name", "")), str(data.get("generation", "")), sources
        )
    return Ignored(f"event type {kind or '(none)'} starts no run")


def _pubsub_message(message: dict[str, Any], topic: str, sources: Sources) -> Trigger | Ignored:
    attributes = message.get("attributes") or {}
    if topic == sources.new_data_topic or (not topic and "objectId" in attributes):
        if attributes.get("eventType", FINALIZE) != FINALIZE:
            return Ignored(f"{attributes.get('eventType')} is not a new object")
        return _new_object(
            str(attributes.get("bucketId", "")),
            str(attributes.get("objectId", "")),
            str(attributes.get("objectGeneration", "")),
            sources,
        )
    if "budgetId" in attributes:
        return Ignored("a budget notification starts no run (it is for people: the budget's e-mail and topic)")
    if topic and topic != sources.drift_topic:
        return Ignored(f"topic {topic} is not the new-data or the drift topic")
    data = _json(_b64(message.get("data", ""), "message.data")) if message.get("data") else None
    incident = data.get("incident") if isinstance(data, dict) else None
    if not isinstance(incident, dict):
        raise BadEvent("a drift message without an `incident`: Cloud Monitoring's Pub/Sub notification carries one")
    if incident.get("state") != "open":
        return Ignored(f"the drift incident is {incident.get('state')!r}, not open (its closing notification)")
    return Trigger(DRIFT, str(incident.get("incident_id") or message.get("messageId", "")), "drift incident opened")


def _new_object(bucket: str, name: str, generation: str, sources: Sources) -> Trigger | Ignored:
    if bucket != sources.datasets_bucket:
        return Ignored(f"gs://{bucket}/{name} is not in the datasets bucket")
    if name != sources.commit_object:
        return Ignored(f"gs://{bucket}/{name} is not the commit marker {sources.commit_object} (one run per upload)")
    if not generation:
        raise BadEvent(f"{name} without its generation: the notification's objectGeneration names the upload")
    return Trigger(NEW_DATA, generation, f"gs://{bucket}/{name}#{generation}")


def _http(payload: dict[str, Any], schedule_time: str, now: datetime) -> Trigger:
    kind = payload.get("trigger")
    if kind not in HTTP_TRIGGERS:
        raise BadEvent(f'"trigger": {kind!r}: an HTTP request names one of {list(HTTP_TRIGGERS)}')
    if kind == SCHEDULE and schedule_time:
        key = re.sub(r"[^0-9]", "", schedule_time)[:12]  # the minute Cloud Scheduler ran the job for
    else:
        key = now.strftime("%Y%m%d%H%M")  # a person's (or a sweep's) request: one per minute
    return Trigger(str(kind), key, "manual request" if kind == MANUAL else f"Cloud Scheduler {schedule_time}")


def _json(raw: bytes | str) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BadEvent(f"the body is not JSON ({exc}): every trigger sends JSON") from exc


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadEvent(f"{what} is not base64 ({exc}): Pub/Sub sends message data base64-encoded") from exc
