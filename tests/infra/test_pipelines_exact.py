"""The continuous-training construct's synthesized values that test_pipelines.py leaves open, pinned exactly: each
resource's Terraform address, what each waits for, the grants the triggers need (the storage agent's publisher
role, Eventarc's agent, the monitoring notifier) and what a person reads in the console. A renamed construct id
destroys and recreates its resource (a grant gone while it is replaced); a lost `depends_on` makes the first
deploy fail on a new project (an API off, a grant not yet propagated)."""

from __future__ import annotations

import pytest

from tests.infra.conftest import ENVIRONMENTS

# construct path (under the environment stack) -> resource type: the Terraform address cdktf derives from it
ADDRESSES = {
    "pipelines/datasets-pipelines-objectAdmin": "google_storage_bucket_iam_member",
    "pipelines/models-pipelines-objectAdmin": "google_storage_bucket_iam_member",
    "pipelines/dev-pipelines-objectAdmin": "google_storage_bucket_iam_member",
    "pipelines/features-pipelines-editor": "google_bigquery_dataset_iam_member",
    "pipelines/kfp": "google_artifact_registry_repository",
    "pipelines/kfp-deployer-writer": "google_artifact_registry_repository_iam_member",
    "pipelines/kfp-pipelines-reader": "google_artifact_registry_repository_iam_member",
    "pipelines/kfp-starter-reader": "google_artifact_registry_repository_iam_member",
    "pipelines/starter/source": "google_storage_bucket_object",
    "pipelines/starter/dev-starter-objects": "google_storage_bucket_iam_member",
    "pipelines/starter/images": "google_artifact_registry_repository",
    "pipelines/starter/images-starter-writer": "google_artifact_registry_repository_iam_member",
    "pipelines/starter/function": "google_cloudfunctions2_function",
    "pipelines/starter/invoker": "google_cloud_run_v2_service_iam_member",
    "pipelines/schedule": "google_cloud_scheduler_job",
    "pipelines/sweep": "google_cloud_scheduler_job",
    "pipelines/storage_agent_pubsub_publisher": "google_project_iam_member",
    "pipelines/eventarc-agent": "google_project_service_identity",
    "pipelines/eventarc-grants-propagated": "time_sleep",
    "pipelines/new-data-topic": "google_pubsub_topic",
    "pipelines/new-data-notification": "google_storage_notification",
    "pipelines/new-data": "google_eventarc_trigger",
    "pipelines/drift-topic": "google_pubsub_topic",
    "pipelines/drift-channel": "google_monitoring_notification_channel",
    "pipelines/drift-notifier": "google_pubsub_topic_iam_member",
    "pipelines/drift-alert": "google_monitoring_alert_policy",
    "pipelines/drift": "google_eventarc_trigger",
}
# construct path -> the construct paths it waits for, in order (APIs, KMS and agent grants, the invoker)
WAITS = {
    "pipelines/kfp": ["apis/artifactregistry", "kms/grants-propagated"],
    "pipelines/starter/images": ["apis/artifactregistry", "kms/grants-propagated"],
    "pipelines/starter/function": [
        "apis/cloudfunctions",
        "apis/cloudbuild",
        "apis/run",
        "kms/grants-propagated",
        "pipelines/starter/dev-starter-objects",
        "pipelines/starter/images-starter-writer",
    ],
    "pipelines/schedule": ["apis/cloudscheduler", "pipelines/starter/invoker"],
    "pipelines/sweep": ["apis/cloudscheduler", "pipelines/starter/invoker"],
    "pipelines/storage_agent_pubsub_publisher": ["apis/cloudresourcemanager", "agents/storage"],
    "pipelines/eventarc-agent": ["apis/eventarc"],
    "pipelines/eventarc-grants-propagated": [
        "pipelines/eventarc-agent",
        "pipelines/storage_agent_pubsub_publisher",
        "identity/starter_eventarc_eventReceiver",
        "pipelines/starter/invoker",
    ],
    "pipelines/new-data-topic": ["apis/pubsub", "kms/grants-propagated"],
    "pipelines/new-data-notification": ["pipelines/eventarc-grants-propagated"],
    "pipelines/new-data": ["apis/eventarc", "pipelines/eventarc-grants-propagated", "pipelines/new-data-notification"],
    "pipelines/drift-topic": ["apis/pubsub", "kms/grants-propagated"],
    "pipelines/drift-channel": ["apis/monitoring"],
    "pipelines/drift-notifier": ["pipelines/drift-channel"],
    "pipelines/drift-alert": ["apis/monitoring"],
    "pipelines/drift": ["apis/eventarc", "pipelines/eventarc-grants-propagated"],
}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_resource_keeps_its_terraform_address(synth, env):
    ours = {path: kind for path, (kind, _, _) in synth.by_path(env).items() if path.startswith("pipelines/")}
    assert ours == ADDRESSES


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_resource_waits_for_exactly_what_it_needs(synth, env):
    assert synth.waits(env, "pipelines/") == WAITS


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_triggers_grants_name_their_agents_and_apis(synth, env, settings_by_env):
    names = settings_by_env[env].names
    publisher = synth.body(env, "pipelines/storage_agent_pubsub_publisher")
    assert (publisher["project"], publisher["role"], publisher["member"]) == (
        names.project,
        "roles/pubsub.publisher",
        f"serviceAccount:{synth.ref(env, 'agents/storage', 'email_address')}",
    )
    agent = synth.body(env, "pipelines/eventarc-agent")
    assert (agent["project"], agent["service"], agent["provider"]) == (
        names.project,
        "eventarc.googleapis.com",
        "google-beta",
    )
    notifier = synth.body(env, "pipelines/drift-notifier")
    assert notifier["member"] == (
        "serviceAccount:service-${data.google_project.project.number}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"
    )
    assert (notifier["role"], notifier["topic"]) == (
        "roles/pubsub.publisher",
        synth.ref(env, "pipelines/drift-topic", "name"),
    )
    editor = synth.body(env, "pipelines/features-pipelines-editor")
    assert editor["dataset_id"] == synth.ref(env, "features/dataset", "dataset_id")
    for who in ("deployer-writer", "pipelines-reader", "starter-reader"):
        grant = synth.body(env, f"pipelines/kfp-{who}")
        assert (grant["location"], grant["repository"]) == (names.region, synth.ref(env, "pipelines/kfp", "name"))
    for kind in ("datasets", "models", "dev"):
        grant = synth.body(env, f"pipelines/{kind}-pipelines-objectAdmin")
        assert grant["bucket"] == synth.ref(env, f"storage/{kind}", "name")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_what_a_person_reads_in_the_console_names_the_environment_and_the_reason(synth, env, settings_by_env):
    names = settings_by_env[env].names
    assert synth.body(env, "pipelines/kfp")["description"] == (
        "compiled fmnist-lifecycle pipeline templates (python -m lifecycle compile)"
    )
    assert synth.body(env, "pipelines/schedule")["description"] == "weekly lifecycle run"
    assert synth.body(env, "pipelines/sweep")["description"] == (
        "starts a trigger deferred during a run once no run is active (nothing to do: no run)"
    )
    channel = synth.body(env, "pipelines/drift-channel")
    assert (channel["display_name"], channel["user_labels"]) == (f"fmnist {env} drift -> retraining", names.labels)
    alert = synth.body(env, "pipelines/drift-alert")
    assert alert["user_labels"] == names.labels
    assert alert["notification_channels"] == [synth.ref(env, "pipelines/drift-channel", "id")]
    assert alert["documentation"] == {
        "mime_type": "text/markdown",
        "content": "The prediction service's drift monitor (PSI of the image features and classes against the "
        "champion's training baseline) flags drift from enough distinct clients over every instance (one client "
        "alone never does); the pipeline starter function starts a retraining run.",
    }
