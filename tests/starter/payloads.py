"""The requests Google Cloud sends the starter, built as Google documents them (one function per sender).

- Eventarc -> Cloud Run, binary content mode: `ce-*` headers, the event data as the JSON body. For Pub/Sub the
  data is the push envelope `{"message": {"data": <base64>, "attributes", "messageId", "publishTime"},
  "subscription"}` and `ce-source` names the topic (`//pubsub.googleapis.com/projects/<p>/topics/<t>`).
- A Cloud Storage notification (payload JSON_API_V1) is a Pub/Sub message whose attributes are `bucketId`,
  `objectId`, `objectGeneration`, `eventType`, `payloadFormat`, `notificationConfig`, `eventTime`, and whose data is
  the object's metadata.
- A Cloud Monitoring Pub/Sub notification's data is `{"version": "1.2", "incident": {"incident_id", "state", ...}}`.
- Cloud Scheduler's HTTP target POSTs its body with `X-CloudScheduler-ScheduleTime` (RFC 3339).
"""

from __future__ import annotations

import base64
import json

PUBSUB = "google.cloud.pubsub.topic.v1.messagePublished"


def _b64(payload: dict) -> str:
    return base64.b64encode(json.dumps(payload).encode()).decode()


def pubsub_envelope(data: dict, attributes: dict[str, str] | None = None, message_id: str = "1") -> dict:
    return {
        "message": {
            "data": _b64(data),
            "attributes": attributes or {},
            "messageId": message_id,
            "publishTime": "2026-12-06T10:00:00.000Z",
        },
        "subscription": "projects/p/subscriptions/eventarc-europe-west4-trigger-sub-000",
    }


def eventarc(project: str, topic: str, envelope: dict, event_id: str = "1") -> tuple[dict[str, str], bytes]:
    headers = {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-type": PUBSUB,
        "ce-source": f"//pubsub.googleapis.com/projects/{project}/topics/{topic}",
        "ce-time": "2026-12-06T10:00:00.000Z",
    }
    return headers, json.dumps(envelope).encode()


def storage_notification(bucket: str, name: str, generation: str, event_type: str = "OBJECT_FINALIZE") -> dict:
    attributes = {
        "bucketId": bucket,
        "objectId": name,
        "objectGeneration": generation,
        "eventType": event_type,
        "payloadFormat": "JSON_API_V1",
        "notificationConfig": f"projects/_/buckets/{bucket}/notificationConfigs/1",
        "eventTime": "2026-12-06T10:00:00.000000Z",
    }
    metadata = {"kind": "storage#object", "bucket": bucket, "name": name, "generation": generation, "size": "2"}
    return pubsub_envelope(metadata, attributes)


def storage_finalized(bucket: str, name: str, generation: str) -> tuple[dict[str, str], bytes]:
    """Eventarc's direct Cloud Storage event (google.cloud.storage.object.v1.finalized)."""
    headers = {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": generation,
        "ce-type": "google.cloud.storage.object.v1.finalized",
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        "ce-subject": f"objects/{name}",
    }
    body = {"kind": "storage#object", "bucket": bucket, "name": name, "generation": generation, "size": "2"}
    return headers, json.dumps(body).encode()


def drift_incident(state: str = "open", incident_id: str = "0.n1k2a3b4c5") -> dict:
    return pubsub_envelope(
        {
            "version": "1.2",
            "incident": {
                "incident_id": incident_id,
                "state": state,
                "policy_name": "fmnist dev: served inputs drift",
                "started_at": 1765015200,
                "summary": "served inputs drift",
            },
        }
    )


def budget(amount: float = 12.5) -> dict:
    data = {"budgetDisplayName": "fmnist", "costAmount": amount, "budgetAmount": 50.0, "currencyCode": "EUR"}
    return pubsub_envelope(data, {"billingAccountId": "000000-000000-000000", "budgetId": "b", "schemaVersion": "1.0"})


def scheduler(trigger: str = "schedule", when: str = "2026-12-07T04:00:00Z") -> tuple[dict[str, str], bytes]:
    headers = {"Content-Type": "application/json", "User-Agent": "Google-Cloud-Scheduler"}
    if when:
        headers["X-CloudScheduler-ScheduleTime"] = when
    return headers, json.dumps({"trigger": trigger}).encode()
