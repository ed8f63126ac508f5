"""The pipeline starter's contract: the variables it reads, the triggers it knows, where it records a deferral.

Why here: the starter (starter/, a Cloud Run function) reads these variables and infra/components/pipelines.py
writes them; the function's source archive holds only the starter and this module, so it imports nothing but the
standard library at run time (CloudNames only for the type of `starter_environment`'s argument).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - a type only: the function's archive does not hold contracts.cloud
    from contracts.cloud import CloudNames

# the kinds of trigger, also the `trigger` label of the runs they start
NEW_DATA = "new-data"  # the datasets bucket's raw/_COMMIT marker was written (a completed upload)
DRIFT = "drift"  # the drift alert opened an incident
SCHEDULE = "schedule"  # Cloud Scheduler's weekly run
DEFERRED = "deferred"  # Cloud Scheduler's sweep: start what arrived during a run, once no run is active
MANUAL = "manual"  # a person POSTs {"trigger": "manual"}
HTTP_TRIGGERS = (SCHEDULE, DEFERRED, MANUAL)  # what a plain HTTP request (no CloudEvent) may name
# Vertex AI Pipelines states of a run that is not over yet
ACTIVE_STATES = ("PIPELINE_STATE_QUEUED", "PIPELINE_STATE_PENDING", "PIPELINE_STATE_RUNNING")
DEFERRED_OBJECT = "starter/deferred.json"  # in the dev bucket: the triggers that arrived during a run
ENTRY_POINT = "start"  # starter/main.py's function, the Cloud Run function's entry point
SWEEP_SCHEDULE = "*/30 * * * *"  # how often a deferred trigger is looked at once the run that held it ends


class StarterEnv:
    """Every environment variable the starter reads (starter/config.py), by name."""

    PROJECT = "STARTER_PROJECT"
    REGION = "STARTER_REGION"
    PIPELINE_NAME = "STARTER_PIPELINE_NAME"
    TEMPLATE_URI = "STARTER_TEMPLATE_URI"
    PIPELINE_ACCOUNT = "STARTER_PIPELINE_ACCOUNT"
    PIPELINE_ROOT = "STARTER_PIPELINE_ROOT"
    KMS_KEY = "STARTER_KMS_KEY"
    DATASETS_BUCKET = "STARTER_DATASETS_BUCKET"
    COMMIT_OBJECT = "STARTER_COMMIT_OBJECT"
    NEW_DATA_TOPIC = "STARTER_NEW_DATA_TOPIC"
    DRIFT_TOPIC = "STARTER_DRIFT_TOPIC"
    DEFERRED_URI = "STARTER_DEFERRED_URI"
    LABELS = "STARTER_LABELS"
    # only where the APIs are local stand-ins (tests): Vertex AI's REST endpoint, and the Cloud Storage emulator
    # (the variable google-cloud-storage honours too)
    AIPLATFORM_ENDPOINT = "STARTER_AIPLATFORM_ENDPOINT"
    STORAGE_EMULATOR_HOST = "STORAGE_EMULATOR_HOST"


REQUIRED = tuple(
    value
    for key, value in vars(StarterEnv).items()
    if key.isupper() and key not in ("AIPLATFORM_ENDPOINT", "STORAGE_EMULATOR_HOST")
)


def starter_environment(names: CloudNames) -> dict[str, str]:
    """The function's variables for one environment: every name it needs, computed once by contracts.cloud."""
    return {
        StarterEnv.PROJECT: names.project,
        StarterEnv.REGION: names.region,
        StarterEnv.PIPELINE_NAME: names.pipeline_name,
        StarterEnv.TEMPLATE_URI: names.pipeline_template_uri,
        StarterEnv.PIPELINE_ACCOUNT: names.service_account_email("pipelines"),
        StarterEnv.PIPELINE_ROOT: names.pipeline_root,
        StarterEnv.KMS_KEY: names.kms_key_name,
        StarterEnv.DATASETS_BUCKET: names.bucket("datasets"),
        StarterEnv.COMMIT_OBJECT: names.raw_commit_object,
        StarterEnv.NEW_DATA_TOPIC: names.new_data_topic,
        StarterEnv.DRIFT_TOPIC: names.drift_topic,
        StarterEnv.DEFERRED_URI: f"{names.bucket_uri('dev')}/{DEFERRED_OBJECT}",
        StarterEnv.LABELS: json.dumps(names.labels, sort_keys=True),
    }
