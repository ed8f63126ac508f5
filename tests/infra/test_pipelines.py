"""Continuous training on the synthesized stacks: the KFP template repository, the pipeline's own least-privilege
accounts (made by the bootstrap stack), the one starter workflow and the three triggers that go through it
(schedule, new data, drift)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from infra.components.apis import REQUIRED_APIS
from infra.components.pipelines import (
    ACTIVE_STATES,
    DRIFT_METRIC,
    GCS_FINALIZED,
    PIPELINE_APIS,
    PROJECT_ROLES,
    PUBSUB_PUBLISHED,
    starter_workflow,
)
from infra.naming import Names
from tests.infra.conftest import BOOTSTRAP

ENVS = ("dev", "prod")
REPO = Path(__file__).resolve().parents[2]


def pipelines(synth, env: str, resource_type: str) -> dict[str, dict]:
    """This construct's resources of one type (cdktf names them pipelines_<id>_<hash>)."""
    return {k: v for k, v in synth.resources(env, resource_type).items() if k.startswith("pipelines_")}


def ref(resource_type: str, key: str, attribute: str) -> str:
    return f"${{{resource_type}.{key}.{attribute}}}"


def account_key(synth, env: str, account_id: str) -> str:
    """The bootstrap stack's resource key of one account (the environment stack creates none)."""
    accounts = synth.resources(BOOTSTRAP[env], "google_service_account")
    [key] = [k for k, v in accounts.items() if v["account_id"] == account_id]
    return key


def members(synth, env: str, names: Names, role: str) -> set[str]:
    """The IAM member strings the synthesized stacks use for one account: by email in the environment stack, by
    reference in the bootstrap stack that creates it."""
    key = account_key(synth, env, names.service_account_id(role))
    return {names.account_member(role), f"serviceAccount:{ref('google_service_account', key, 'email')}"}


@pytest.fixture(params=ENVS)
def env(request):
    return request.param


@pytest.fixture
def names(env, settings_by_env):
    return Names.of(settings_by_env[env])


def test_the_kfp_repository_holds_the_templates_with_cmek_and_only_the_deployer_writes(synth, env, names):
    [repo] = pipelines(synth, env, "google_artifact_registry_repository").values()
    assert repo["format"] == "KFP" and repo["repository_id"] == names.pipeline_repository
    assert repo["kms_key_name"] == names.kms_key_name  # the bootstrap stack's key
    assert names.pipeline_template_uri == (
        f"https://{names.region}-kfp.pkg.dev/{names.project}/{names.pipeline_repository}/fmnist-lifecycle/latest"
    )
    grants = [
        g
        for g in pipelines(synth, env, "google_artifact_registry_repository_iam_member").values()
        if "kfp" in g["repository"]
    ]
    writers = {g["member"] for g in grants if g["role"] == "roles/artifactregistry.writer"}
    assert writers == {names.account_member("deployer")}


def test_the_pipeline_acts_as_the_trainer_and_service_only_and_the_starter_as_the_pipeline_only(synth, env, names):
    # Account-level IAM on service accounts is service-account admin: the bootstrap stack sets it, not the deployer.
    assert not synth.resources(env, "google_service_account_iam_member")
    act_as = [
        b
        for b in synth.resources(BOOTSTRAP[env], "google_service_account_iam_member").values()
        if b["role"] == "roles/iam.serviceAccountUser"
    ]

    def targets(role: str) -> set[str]:
        member = members(synth, env, names, role)
        keys = {b["service_account_id"].split(".")[1] for b in act_as if b["member"] in member}
        return {synth.resources(BOOTSTRAP[env], "google_service_account")[k]["account_id"] for k in keys}

    assert targets("pipelines") == {names.service_account_id("trainer"), names.service_account_id("service")}
    assert targets("starter") == {names.service_account_id("pipelines")}
    assert len(names.service_account_id("starter")) <= 30 and len(names.service_account_id("pipelines")) <= 30


def test_project_roles_of_the_new_accounts_are_exactly_the_justified_ones(synth, env, names):
    bindings = synth.resources(env, "google_project_iam_member").values()
    for role, grants in PROJECT_ROLES.items():
        found = {b["role"] for b in bindings if b["member"] in members(synth, env, names, role)}
        assert found == {iam_role for iam_role, _ in grants}, role
        assert all(len(why) > 20 for _, why in grants)
    everything = {b["role"] for b in bindings}
    assert not everything & {"roles/owner", "roles/editor", "roles/viewer"}


def test_the_pipeline_reaches_the_buckets_and_feature_table_it_writes_per_resource(synth, env, names):
    pipeline = members(synth, env, names, "pipelines")
    buckets = {
        b["bucket"]: b["role"]
        for b in synth.resources(env, "google_storage_bucket_iam_member").values()
        if b["member"] in pipeline
    }
    assert sorted(buckets.values()) == ["roles/storage.objectAdmin"] * 3
    [dataset] = [
        b for b in synth.resources(env, "google_bigquery_dataset_iam_member").values() if b["member"] in pipeline
    ]
    assert dataset["role"] == "roles/bigquery.dataEditor"


def test_one_starter_workflow_filters_events_skips_active_runs_and_names_runs_by_hour(synth, env, names):
    [workflow] = pipelines(synth, env, "google_workflows_workflow").values()
    assert workflow["name"] == names.pipeline_starter_workflow
    assert workflow["service_account"] == names.service_account_email("starter")
    # Terraform reads `$${` as a literal `${`: what Workflows receives is the definition as written.
    source = json.loads(workflow["source_contents"].replace("$${", "${").replace("%%{", "%{"))
    assert source == starter_workflow(names, names.service_account_email("pipelines"))
    steps = {name: body for step in source["main"]["steps"] for name, body in step.items()}
    # the definition is compared with starter_workflow itself above, so the values that decide are pinned here
    listing = steps["check_active"]
    assert listing["call"] == "googleapis.aiplatform.v1.projects.locations.pipelineJobs.list"
    assert listing["args"]["filter"] == (
        f'display_name="{names.pipeline_name}" AND (state="PIPELINE_STATE_QUEUED" OR state="PIPELINE_STATE_PENDING"'
        ' OR state="PIPELINE_STATE_RUNNING")'
    )
    assert set(ACTIVE_STATES) == {"PIPELINE_STATE_QUEUED", "PIPELINE_STATE_PENDING", "PIPELINE_STATE_RUNNING"}
    [skip] = steps["skip_when_active"]["switch"]
    assert skip["condition"] == '${"pipelineJobs" in active}' and skip["return"]["started"] is False
    create = steps["start"]["try"]
    assert create["call"] == "googleapis.aiplatform.v1.projects.locations.pipelineJobs.create"
    body = create["args"]["body"]
    assert body["templateUri"] == names.pipeline_template_uri
    assert body["serviceAccount"] == names.service_account_email("pipelines")
    assert body["runtimeConfig"] == {"gcsOutputDirectory": names.pipeline_root}
    assert create["args"]["pipelineJobId"] == (  # one run id per hour (YYYYMMDDHH): a race in that hour gets 409
        f'${{"{names.pipeline_name}-" + text.replace_all_regex(text.substring(time.format(sys.now()), 0, 13),'
        ' "[^0-9]", "")}'
    )
    assert steps["start"]["except"]["steps"][0]["started_this_hour"]["switch"][0]["condition"] == "${error.code == 409}"
    assert steps["start"]["except"]["steps"][1] == {"failed": {"raise": "${error}"}}  # any other error fails
    [route_new, route_drift] = steps["route"]["switch"]
    assert route_new == {"condition": f'${{kind == "{GCS_FINALIZED}"}}', "next": "new_data"}
    assert route_drift == {"condition": f'${{kind == "{PUBSUB_PUBLISHED}"}}', "next": "drift"}
    [new_data] = steps["new_data_filter"]["switch"]  # ingest's own writes (not under raw/) do not retrigger
    assert new_data["condition"] == '${not text.match_regex(event.data.name, "^raw/")}'
    assert new_data["return"]["started"] is False
    [drift] = steps["drift_filter"]["switch"]  # an open incident retrains; its closing notification does not
    assert drift["condition"] == '${alert.incident.state != "open"}' and drift["return"]["started"] is False


def test_the_schedule_executes_the_starter_as_the_starter_account(synth, env, names):
    [job] = pipelines(synth, env, "google_cloud_scheduler_job").values()
    [workflow_key] = pipelines(synth, env, "google_workflows_workflow")
    target = job["http_target"]
    workflow = ref("google_workflows_workflow", workflow_key, "id")
    assert target["uri"] == f"https://workflowexecutions.googleapis.com/v1/{workflow}/executions"
    assert json.loads(json.loads(base64.b64decode(target["body"]))["argument"]) == {"trigger": "schedule"}
    assert target["oauth_token"]["service_account_email"] == names.service_account_email("starter")


def test_new_data_and_drift_triggers_go_through_the_same_starter(synth, env, names):
    triggers = pipelines(synth, env, "google_eventarc_trigger")
    [workflow_key] = pipelines(synth, env, "google_workflows_workflow")
    assert len(triggers) == 2
    for trigger in triggers.values():
        assert trigger["destination"] == {"workflow": ref("google_workflows_workflow", workflow_key, "id")}
        assert trigger["service_account"] == names.service_account_email("starter")
    by_type = {
        next(c["value"] for c in t["matching_criteria"] if c["attribute"] == "type"): t for t in triggers.values()
    }
    assert GCS_FINALIZED == "google.cloud.storage.object.v1.finalized"
    assert PUBSUB_PUBLISHED == "google.cloud.pubsub.topic.v1.messagePublished"
    assert by_type[GCS_FINALIZED]["matching_criteria"] == [
        {"attribute": "type", "value": GCS_FINALIZED},
        {"attribute": "bucket", "value": names.bucket("datasets")},
    ]
    assert by_type[PUBSUB_PUBLISHED]["matching_criteria"] == [{"attribute": "type", "value": PUBSUB_PUBLISHED}]
    [topic_key] = pipelines(synth, env, "google_pubsub_topic")
    assert by_type[PUBSUB_PUBLISHED]["transport"]["pubsub"]["topic"] == ref("google_pubsub_topic", topic_key, "id")


def test_drift_reaches_the_topic_from_an_alert_on_the_services_own_gauge(synth, env, names):
    [policy] = pipelines(synth, env, "google_monitoring_alert_policy").values()
    [channel_key] = pipelines(synth, env, "google_monitoring_notification_channel")
    [topic_key] = pipelines(synth, env, "google_pubsub_topic")
    assert policy["notification_channels"] == [ref("google_monitoring_notification_channel", channel_key, "id")]
    channel = synth.resources(env, "google_monitoring_notification_channel")[channel_key]
    assert channel["type"] == "pubsub" and channel["labels"]["topic"] == ref("google_pubsub_topic", topic_key, "id")
    [condition] = policy["conditions"]
    threshold = condition["condition_threshold"]
    assert threshold["filter"] == f'resource.type = "prometheus_target" AND metric.type = "{DRIFT_METRIC}"'
    assert (threshold["comparison"], threshold["threshold_value"]) == ("COMPARISON_GT", 0)  # the gauge is 0 or 1
    assert threshold["duration"] == "300s"
    assert threshold["aggregations"] == [
        {"alignment_period": "300s", "per_series_aligner": "ALIGN_MAX", "cross_series_reducer": "REDUCE_MAX"}
    ]
    gauge = DRIFT_METRIC.split("/")[1]
    assert f'"{gauge}"' in (REPO / "service" / "metrics.py").read_text()  # the name the service exports
    publishers = [b for b in synth.resources(env, "google_pubsub_topic_iam_member").values() if topic_key in b["topic"]]
    assert [b["member"].split("@")[1] for b in publishers] == ["gcp-sa-monitoring-notification.iam.gserviceaccount.com"]
    topic = synth.resources(env, "google_pubsub_topic")[topic_key]
    assert topic["kms_key_name"] == names.kms_key_name


def test_new_apis_are_watched_by_the_budget_and_follow_the_teardown_policy(synth, env, settings_by_env):
    assert set(PIPELINE_APIS) <= set(REQUIRED_APIS)
    services = {
        f"google_project_service.{key}": s
        for key, s in synth.resources(env, "google_project_service").items()
        if s["service"] in PIPELINE_APIS
    }
    assert sorted(s["service"] for s in services.values()) == sorted(PIPELINE_APIS)
    budget = synth.one(env, "google_billing_budget")
    for address, service in services.items():
        assert address in budget["depends_on"], "the budget watches what the stack switches on"
        assert service["disable_on_destroy"] is False
    for resource_type in ("google_workflows_workflow", "google_eventarc_trigger", "google_cloud_scheduler_job"):
        for body in pipelines(synth, env, resource_type).values():
            assert "lifecycle" not in body, f"{resource_type} must not block `cdktf destroy`"


def test_the_pipelines_adapters_name_what_the_stack_declares(synth, env, settings_by_env, names):
    from trainer.cloud.feed_feature_store import build_requests
    from trainer.cloud.import_evaluation import build_import

    settings = settings_by_env[env]
    feed = build_requests(settings, "v-0123456789ab")
    table = synth.one(env, "google_bigquery_table")
    dataset = synth.one(env, "google_bigquery_dataset")
    assert feed.destination == f"{names.project}.{dataset['dataset_id']}.{table['table_id']}"
    view = synth.one(env, "google_vertex_ai_feature_online_store_featureview")
    store = synth.one(env, "google_vertex_ai_feature_online_store")
    assert feed.sync_feature_view["feature_view"].endswith(
        f"/featureOnlineStores/{store['name']}/featureViews/{view['name']}"
    )
    assert feed.job_config["schema"] == json.loads(table["schema"])  # the load schema is the table's
    evaluation = {"metrics": {}, "class_names": ["a"], "confusion_matrix": [[1]]}
    assert build_import(settings, "v1", evaluation).parent.startswith(names.parent_model_name)
    ids = {sa["account_id"] for sa in synth.resources(BOOTSTRAP[env], "google_service_account").values()}
    assert {names.service_account_id("pipelines"), names.service_account_id("starter")} <= ids
