"""The starter's variables end to end in-process: what contracts.starter.starter_environment gives the function for
one environment (each variable from its own name, tested on names that differ per field), and what
starter/config.py makes of them (the refusal naming every missing variable, the Vertex AI parent and endpoint,
local stand-ins, labels, the event filter's sources). tests/starter/test_function.py runs the function in a process
of its own with such variables; this pins each value where a swapped or misspelt one would start runs elsewhere."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from contracts.starter import REQUIRED, StarterEnv, starter_environment
from starter.config import Config, ConfigError
from starter.events import Sources

NAMES = SimpleNamespace(
    project="proj",
    region="europe-west4",
    pipeline_name="fmnist-lifecycle",
    pipeline_template_uri="https://europe-west4-kfp.pkg.dev/proj/repo/fmnist-lifecycle/latest",
    pipeline_root="gs://proj-dev/pipeline-root",
    kms_key_name="projects/proj/locations/europe-west4/keyRings/r/cryptoKeys/k",
    raw_commit_object="raw/_COMMIT",
    new_data_topic="new-data-topic",
    drift_topic="drift-topic",
    labels={"managed_by": "cdktf", "env": "dev", "app": "fmnist-mlops"},
    bucket=lambda kind: f"proj-{kind}",
    bucket_uri=lambda kind: f"gs://proj-{kind}",
    service_account_email=lambda role: f"{role}@proj.iam.gserviceaccount.com",
)


def test_the_function_gets_each_variable_from_its_own_name():
    assert starter_environment(NAMES) == {
        "STARTER_PROJECT": "proj",
        "STARTER_REGION": "europe-west4",
        "STARTER_PIPELINE_NAME": "fmnist-lifecycle",
        "STARTER_TEMPLATE_URI": "https://europe-west4-kfp.pkg.dev/proj/repo/fmnist-lifecycle/latest",
        "STARTER_PIPELINE_ACCOUNT": "pipelines@proj.iam.gserviceaccount.com",
        "STARTER_PIPELINE_ROOT": "gs://proj-dev/pipeline-root",
        "STARTER_KMS_KEY": "projects/proj/locations/europe-west4/keyRings/r/cryptoKeys/k",
        "STARTER_DATASETS_BUCKET": "proj-datasets",
        "STARTER_COMMIT_OBJECT": "raw/_COMMIT",
        "STARTER_NEW_DATA_TOPIC": "new-data-topic",
        "STARTER_DRIFT_TOPIC": "drift-topic",
        "STARTER_DEFERRED_URI": "gs://proj-dev/starter/deferred.json",
        "STARTER_LABELS": '{"app": "fmnist-mlops", "env": "dev", "managed_by": "cdktf"}',  # sorted: a stable plan
    }


def test_every_variable_it_sets_is_required_and_the_local_stand_ins_are_not():
    assert tuple(starter_environment(NAMES)) == REQUIRED
    assert {StarterEnv.AIPLATFORM_ENDPOINT, StarterEnv.STORAGE_EMULATOR_HOST}.isdisjoint(REQUIRED)


def environ(**extra: str) -> dict[str, str]:
    return {**starter_environment(NAMES), **extra}


@pytest.mark.parametrize("blank", ["absent", ""])
def test_missing_variables_are_all_named_with_where_they_come_from(blank):
    given = environ()
    for name in (StarterEnv.REGION, StarterEnv.LABELS):
        if blank == "absent":
            del given[name]
        else:
            given[name] = ""
    with pytest.raises(ConfigError) as caught:
        Config.load(given)
    assert str(caught.value) == (
        "missing STARTER_REGION, STARTER_LABELS: the stack sets them (contracts.starter.starter_environment); "
        "set them by hand only to run the starter outside Google Cloud"
    )


def test_on_google_cloud_the_function_talks_to_the_regional_vertex_ai_endpoint_with_credentials():
    config = Config.load(environ())
    assert config.parent == "projects/proj/locations/europe-west4"
    assert config.aiplatform_endpoint == "https://europe-west4-aiplatform.googleapis.com"
    assert config.local is False
    assert config[StarterEnv.TEMPLATE_URI] == NAMES.pipeline_template_uri


def test_against_local_stand_ins_it_talks_to_the_named_endpoint_without_credentials():
    config = Config.load(environ(STARTER_AIPLATFORM_ENDPOINT="http://127.0.0.1:8089//"))
    assert config.aiplatform_endpoint == "http://127.0.0.1:8089"
    assert config.local is True
    blank = Config.load(environ(STARTER_AIPLATFORM_ENDPOINT=""))
    assert (blank.aiplatform_endpoint, blank.local) == ("https://europe-west4-aiplatform.googleapis.com", False)


def test_the_config_keeps_its_own_copy_of_the_environment():
    given = environ()
    config = Config.load(given)
    given[StarterEnv.PROJECT] = "other"
    assert config.parent == "projects/proj/locations/europe-west4"


def test_labels_and_the_event_filters_sources():
    config = Config.load(environ())
    assert config.labels == {"app": "fmnist-mlops", "env": "dev", "managed_by": "cdktf"}
    assert config.sources == Sources(
        datasets_bucket="proj-datasets",
        commit_object="raw/_COMMIT",
        new_data_topic="new-data-topic",
        drift_topic="drift-topic",
    )
    assert json.loads(config[StarterEnv.LABELS]) == config.labels
