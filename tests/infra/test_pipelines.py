"""Continuous training on the synthesized stacks: the KFP template repository, the pipeline's own least-privilege
accounts (made by the bootstrap stack), the one starter workflow and the three triggers that go through it
(schedule, new data, drift)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from contracts.monitoring_queries import DRIFT_CLIENT_GAUGE
from infra.components.apis import REQUIRED_APIS
from infra.components.pipelines import (
    ACTIVE_STATES,
    DEFER_POLL_SECONDS,
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
    listing = steps["check_active"]
    assert listing["call"].endswith("pipelineJobs.list")
    assert all(state in listing["args"]["filter"] for state in ACTIVE_STATES)
    assert f'display_name="{names.pipeline_name}"' in listing["args"]["filter"]
    create = steps["start"]["try"]
    assert create["call"].endswith("pipelineJobs.create")
    body = create["args"]["body"]
    assert body["templateUri"] == names.pipeline_template_uri
    assert body["serviceAccount"] == names.service_account_email("pipelines")
    assert body["runtimeConfig"] == {"gcsOutputDirectory": names.pipeline_root}
    assert body["encryptionSpec"] == {"kmsKeyName": names.kms_key_name}  # the run's own resources under CMEK
    # one run id per minute: a race gets 409
    assert "text.substring(time.format(sys.now()), 0, 16)" in create["args"]["pipelineJobId"]
    # the connector would otherwise poll the run for up to 1,800 s and fail a healthy run with a timeout
    assert create["args"]["connector_params"] == {"skip_polling": True}
    # a timeout or connection error is a map without `code`: the except branch must not read error.code
    condition = steps["start"]["except"]["steps"][0]["started_this_minute"]["switch"][0]["condition"]
    assert condition == '${default(map.get(error, "code"), 0) == 409}'
    assert "error.code" not in json.dumps(steps["start"]["except"])
    [drift] = steps["drift_filter"]["switch"]  # an open incident retrains; its closing notification does not
    assert drift["condition"] == '${alert.incident.state != "open"}' and drift["return"]["started"] is False


def test_only_a_completed_upload_of_raw_data_starts_a_run(names):
    """The exact commit-marker object, nothing else under raw/ or outside it."""
    steps = {name: body for step in starter_workflow(names, "p")["main"]["steps"] for name, body in step.items()}
    assert names.raw_commit_object == "raw/_COMMIT"
    [only] = steps["new_data_filter"]["switch"]
    assert only["condition"] == '${object != "raw/_COMMIT"}' and only["return"]["started"] is False
    assert steps["new_data"]["assign"][1]["object"].startswith("${default(map.get(event.data.message.attributes")
    # Eventarc's CloudEvent for a Pub/Sub message names the topic in `source`: the route tells new data from drift
    [to_new_data, to_drift] = steps["route"]["switch"]
    pattern = re.search(r'text.match_regex\(source, "([^"]+)"\)', to_new_data["condition"]).group(1)
    source = f"//pubsub.googleapis.com/projects/{names.project}/topics/"
    assert re.search(pattern, source + names.new_data_topic)
    assert not re.search(pattern, source + names.drift_topic)
    assert to_new_data["next"] == "new_data" and to_drift["next"] == "drift"


def test_a_trigger_during_a_run_is_deferred_not_dropped(names):
    """While a run is active the execution waits and checks again; it returns without a run only when a run
    created after it arrived covers it, and fails visibly (not silently) after a day."""
    steps = {name: body for step in starter_workflow(names, "p")["main"]["steps"] for name, body in step.items()}
    assert steps["check_active"]["args"]["orderBy"] == "create_time desc"  # [0] is the newest active run
    no_run, too_long = steps["defer_when_active"]["switch"]
    assert no_run == {"condition": '${not ("pipelineJobs" in active)}', "next": "start"}
    assert "raise" in too_long and "return" not in too_long
    assert steps["defer_when_active"]["next"] == "covered_by_newer_run"
    [covered] = steps["covered_check"]["switch"]
    assert covered["condition"] == "${time.parse(newest.createTime) >= arrived}"
    assert steps["covered_check"]["next"] == "wait"
    sleep, count = steps["wait"]["steps"]
    assert sleep["sleep"] == {"call": "sys.sleep", "args": {"seconds": DEFER_POLL_SECONDS}}
    assert steps["wait"]["next"] == "check_active"
    returns_while_active = [
        name
        for name, body in steps.items()
        if name in ("check_active", "defer_when_active", "wait") and "return" in json.dumps(body)
    ]
    assert returns_while_active == []
    assert {"arrived": "${sys.now()}"} in steps["init"]["assign"]


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
    topics = pipelines(synth, env, "google_pubsub_topic")
    key_of = {topic["name"]: key for key, topic in topics.items()}
    by_topic = {t["transport"]["pubsub"]["topic"]: t for t in triggers.values()}
    assert set(by_topic) == {
        ref("google_pubsub_topic", key_of[n], "id") for n in (names.new_data_topic, names.drift_topic)
    }
    for trigger in triggers.values():
        assert trigger["matching_criteria"] == [{"attribute": "type", "value": PUBSUB_PUBLISHED}]


def test_new_data_is_one_notification_of_the_commit_marker_not_one_event_per_object(synth, env, names):
    """`export-images` writes 70,000 PNGs in the datasets bucket: only raw/_COMMIT may reach the starter."""
    [notification] = pipelines(synth, env, "google_storage_notification").values()
    [bucket_key] = [
        k for k, b in synth.resources(env, "google_storage_bucket").items() if b["name"] == names.bucket("datasets")
    ]
    assert notification["bucket"] == ref("google_storage_bucket", bucket_key, "name")
    assert notification["object_name_prefix"] == names.raw_commit_object
    assert notification["event_types"] == ["OBJECT_FINALIZE"] and notification["payload_format"] == "JSON_API_V1"
    [topic_key] = [
        k for k, t in pipelines(synth, env, "google_pubsub_topic").items() if t["name"] == names.new_data_topic
    ]
    assert notification["topic"] == ref("google_pubsub_topic", topic_key, "id")
    topic = synth.resources(env, "google_pubsub_topic")[topic_key]
    assert topic["kms_key_name"] == names.kms_key_name
    for trigger in pipelines(synth, env, "google_eventarc_trigger").values():
        assert {c["attribute"] for c in trigger["matching_criteria"]} == {"type"}, "no per-object storage trigger"


def test_drift_reaches_the_topic_from_an_alert_on_the_services_own_gauge(synth, env, names):
    [policy] = pipelines(synth, env, "google_monitoring_alert_policy").values()
    [channel_key] = pipelines(synth, env, "google_monitoring_notification_channel")
    [topic_key] = [k for k, t in pipelines(synth, env, "google_pubsub_topic").items() if t["name"] == names.drift_topic]
    assert policy["notification_channels"] == [ref("google_monitoring_notification_channel", channel_key, "id")]
    channel = synth.resources(env, "google_monitoring_notification_channel")[channel_key]
    assert channel["type"] == "pubsub" and channel["labels"]["topic"] == ref("google_pubsub_topic", topic_key, "id")
    # PromQL: a metric-type filter on the gauge would fail with 404 before its first point (issue 23, defect 2)
    # and only from 10 distinct client buckets over every instance in the last hour (issue 24): one client is one
    query = policy["conditions"][0]["condition_prometheus_query_language"]["query"]
    assert query == "count(max by (client) (max_over_time(fmnist_drift_client_detected[1h])) > 0) >= 10"
    assert "condition_threshold" not in policy["conditions"][0]
    assert f'"{DRIFT_CLIENT_GAUGE}"' in (REPO / "service" / "state.py").read_text()  # the name the service exports
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
    (table,) = [t for t in synth.resources(env, "google_bigquery_table").values() if "table_constraints" in t]
    (dataset,) = [d for d in synth.resources(env, "google_bigquery_dataset").values() if "features" in d["description"]]
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


def test_the_starters_vertex_ai_calls_match_the_api_messages(names):
    """Each connector call's arguments are fields of the real request message (google-cloud-aiplatform's protos:
    the connector maps `body` to the resource and the other arguments to request fields), and the run's body parses
    as a PipelineJob, so a misspelled field (`encryptionSpecs`, `kmsKey`) fails here, not at the first trigger."""
    from google.cloud.aiplatform_v1.types import pipeline_service
    from google.cloud.aiplatform_v1.types.pipeline_job import PipelineJob
    from google.protobuf import json_format

    steps = {name: body for step in starter_workflow(names, "p")["main"]["steps"] for name, body in step.items()}
    connector = {"region", "connector_params"}  # the connector's own arguments, not the API's

    def fields(message) -> set[str]:
        return {f.json_name for f in message.pb().DESCRIPTOR.fields}

    listing = steps["check_active"]["args"]
    assert set(listing) - connector <= fields(pipeline_service.ListPipelineJobsRequest)
    create = steps["start"]["try"]["args"]
    assert set(create) - connector - {"body"} <= fields(pipeline_service.CreatePipelineJobRequest)
    body = json.loads(json.dumps(create["body"]).replace("${trigger}", "schedule"))
    job = json_format.ParseDict(body, PipelineJob.pb(PipelineJob()))  # raises on an unknown field
    assert job.encryption_spec.kms_key_name == names.kms_key_name
    assert create["connector_params"] == {"skip_polling": True}
