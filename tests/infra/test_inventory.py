"""Inventory per environment: resource counts by type and the key values each resource must have."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from cdktf import Testing as CdktfTesting

from contracts import feature_schema
from infra.components.accounts import ACCOUNT_ACT_AS, DEPLOYER_ROLES, PLANNER_ROLES
from infra.components.apis import BOOTSTRAP_APIS, REQUIRED_APIS
from infra.images import source_tag
from infra.naming import STACK_ACCOUNTS, Names
from tests.infra.conftest import BOOTSTRAP

COMMON_INVENTORY = {
    "google_artifact_registry_repository": 1,
    "google_artifact_registry_repository_iam_member": 2,
    "google_bigquery_dataset": 1,
    "google_bigquery_dataset_iam_member": 2,
    "google_bigquery_table": 1,
    "google_billing_budget": 1,
    "google_kms_crypto_key_iam_member": 7,  # one per agent that uses the key
    "google_monitoring_alert_policy": 5,  # Cloud Run 5xx and latency, endpoint errors, failed runs, gate refusals
    "google_monitoring_notification_channel": 1,
    "google_project_iam_member": 5,  # trainer 3, checks 1, the service's metric writer
    "google_project_service": len(REQUIRED_APIS),
    "google_project_service_identity": 5,  # the CMEK users' agents (infra/components/service_agents.py)
    "google_pubsub_topic": 1,
    "google_pubsub_topic_iam_member": 1,
    "google_storage_bucket": 4,
    # the trainer: read models, write its job outputs only; the promoter: write models, read datasets (issue 25)
    "google_storage_bucket_iam_member": 9,
    "google_vertex_ai_endpoint": 1,
    "google_vertex_ai_feature_online_store": 1,
    "google_vertex_ai_feature_online_store_featureview": 1,
    "google_vertex_ai_tensorboard": 1,
    "time_sleep": 2,  # after the agents' key grants; after the quota project's budget API (issue 23)
}
# The lifecycle pipeline (infra/components/pipelines.py): what it adds to every environment's stack.
PIPELINE_INVENTORY = {
    "google_artifact_registry_repository": 2,  # the KFP templates; the starter function's built image
    # images reader; KFP writer (deployer) and two readers; the starter's build pushes its image
    "google_artifact_registry_repository_iam_member": 5,
    "google_bigquery_dataset_iam_member": 1,
    "google_cloud_scheduler_job": 2,  # the weekly run, the sweep of deferred triggers
    "google_cloudfunctions2_function": 1,  # the starter
    "google_cloud_run_v2_service_iam_member": 1,  # the starter account invokes the function
    "google_storage_bucket_object": 1,  # the function's source archive
    "google_eventarc_trigger": 2,  # new data, drift
    "google_monitoring_alert_policy": 1,
    "google_monitoring_notification_channel": 1,
    "google_project_iam_member": 6,  # pipelines 3, starter 2 (its custom role is bootstrap's), the storage agent
    "google_project_service_identity": 1,  # the Eventarc agent
    "time_sleep": 1,  # after the triggers' grants and the Eventarc agent
    "google_pubsub_topic": 2,  # drift; new data (the datasets bucket notifies it of raw/_COMMIT)
    "google_pubsub_topic_iam_member": 1,
    "google_storage_bucket_iam_member": 4,  # the pipelines account on 3 buckets; the starter under dev/starter/
    "google_storage_notification": 1,
}
# Ground truth (infra/components/ground_truth.py): its dataset, the sink's table and the view, the sink, its writer.
GROUND_TRUTH_INVENTORY = {
    "google_bigquery_dataset": 1,
    "google_bigquery_dataset_iam_member": 1,
    "google_bigquery_table": 2,
    "google_logging_project_sink": 1,
}
COMMON_INVENTORY = dict(Counter(COMMON_INVENTORY) + Counter(PIPELINE_INVENTORY) + Counter(GROUND_TRUTH_INVENTORY))
BOOTSTRAP_INVENTORY = {
    "google_billing_account_iam_member": 1,  # the deployer's; the planner has no billing role
    "google_kms_crypto_key": 2,  # CMEK and the registry index's signing key (infra/components/index_signing.py)
    "google_kms_crypto_key_iam_member": 3,  # the deployer administers CMEK; the promoter signs, the deployer reads
    "google_kms_key_ring": 1,
    "google_iam_deny_policy": 1,  # the Vertex AI custom code agent reaches no object or table (issue 25)
    # the deployer's and planner's roles; the starter's custom role (infra/components/starter_role.py)
    "google_project_iam_member": len(DEPLOYER_ROLES) + len(PLANNER_ROLES) + 1,
    "google_project_iam_custom_role": 1,
    "google_project_service": len(BOOTSTRAP_APIS),
    "google_service_account": len(STACK_ACCOUNTS),
    "google_service_account_iam_member": len(STACK_ACCOUNTS) + len(ACCOUNT_ACT_AS),
    "google_storage_bucket": 1,
    "google_storage_bucket_iam_member": 2,
}
# The docker provider's stack and Cloud Run's, apart so that <env> plans and destroys without a daemon (issue 23).
IMAGES_INVENTORY = {"docker_image": 2, "docker_registry_image": 2}
# the run API again, and Cloud KMS for the index signing key's public key read at plan (issue 25)
SERVING_INVENTORY = {
    # the promoter's gate and approval jobs (issue 25) and the ramp's (infra/components/ramp.py)
    "google_cloud_run_v2_job": 3,
    # the pipelines account executes the gate job (no approvers by default); the scheduler the ramp's
    "google_cloud_run_v2_job_iam_member": 3,
    "google_cloud_run_v2_service": 1,
    # the ramp's scheduler tick and the promoter's grants to move the service
    "google_cloud_run_v2_service_iam_member": 1,
    "google_service_account_iam_member": 1,
    "google_project_iam_member": 1,
    "google_cloud_scheduler_job": 1,
    "google_project_service": 4,  # + Secret Manager: the service's secrets below; + Cloud Scheduler: the ramp
    "google_secret_manager_secret": 3,  # the service's operator token, routing key and RunMonitoring config
    "google_secret_manager_secret_iam_member": 3,
    "google_secret_manager_secret_version": 3,
}
INVENTORY = {
    "dev": {**COMMON_INVENTORY, "google_cloudbuild_trigger": 3},  # pull-request checks and plan + deploy on main
    "prod": {**COMMON_INVENTORY, "google_cloudbuild_trigger": 1},  # deploy on release tags only
    **dict.fromkeys(BOOTSTRAP.values(), BOOTSTRAP_INVENTORY),
    **{f"images-{env}": IMAGES_INVENTORY for env in ("dev", "prod")},
    **{f"serving-{env}": SERVING_INVENTORY for env in ("dev", "prod")},
}
ENVS = ("dev", "prod")


@pytest.mark.parametrize("env", sorted(INVENTORY))
def test_resource_counts_by_type(synth, env):
    counts = Counter({t: len(r) for t, r in synth.stack(env)["resource"].items()})
    assert dict(counts) == INVENTORY[env]


def test_local_environment_has_no_stack(synth):
    assert sorted(synth.texts) == [
        "bootstrap-dev",
        "bootstrap-prod",
        "dev",
        "images-dev",
        "images-prod",
        "prod",
        "serving-dev",
        "serving-prod",
    ]


@pytest.mark.parametrize("env", ENVS)
def test_providers_and_versions(synth, env, settings_by_env):
    text, names = synth.texts[env], Names.of(settings_by_env[env])
    assert CdktfTesting.to_have_provider_with_properties(
        text, "google", {"project": names.project, "region": names.region}
    )
    google = {p.get("alias"): p for p in synth.stack(env)["provider"]["google"]}
    assert "user_project_override" not in google[None], "the default provider names no quota project"
    assert google["billing"]["user_project_override"] is True and google["billing"]["billing_project"] == names.project
    billing_users = {
        f"{t}.{n}"
        for t, rs in synth.stack(env)["resource"].items()
        for n, r in rs.items()
        if r.get("provider") == "google.billing"
    }
    assert {u.split(".")[0] for u in billing_users} == {"google_billing_budget"}
    assert not CdktfTesting.to_have_provider(text, "docker"), "only images-<env> needs a Docker daemon"
    assert synth.stack(f"images-{env}")["provider"]["docker"][0]["registry_auth"] == [
        {"address": names.registry_host, "username": "oauth2accesstoken"}
    ], "the registry password comes from DOCKER_REGISTRY_PASS at deploy time, never from state"
    data = synth.stack(env)["data"]
    assert set(data) == {
        "google_project",
        "google_storage_project_service_account",
        "google_bigquery_default_service_account",
    }, "no google_client_config: its access token would be stored in state"
    assert all(d.get("depends_on") for ds in data.values() for d in ds.values()), "no plan-time read on a fresh project"
    required = synth.stack(env)["terraform"]["required_providers"]
    assert required["google"] == {"source": "hashicorp/google", "version": "6.50.0"}
    assert required["google-beta"] == {"source": "hashicorp/google-beta", "version": "6.50.0"}
    assert synth.stack(f"images-{env}")["terraform"]["required_providers"]["docker"]["source"] == "kreuzwerker/docker"
    assert required["time"] == {"source": "hashicorp/time", "version": "0.13.1"}  # the propagation waits


@pytest.mark.parametrize("env", ENVS)
def test_apis_are_enabled_and_never_disabled(synth, env):
    services = synth.resources(env, "google_project_service").values()
    assert sorted(s["service"] for s in services) == sorted(REQUIRED_APIS)
    assert all(s["disable_on_destroy"] is False and s["disable_dependent_services"] is False for s in services)


@pytest.mark.parametrize("env", ENVS)
def test_buckets_are_private_versioned_logged_and_encrypted(synth, env, settings_by_env):
    names = Names.of(settings_by_env[env])
    buckets = {b["name"]: b for b in synth.resources(env, "google_storage_bucket").values()}
    expected = {names.bucket(k) for k in ("dev", "datasets", "models")} | {names.access_log_bucket}
    assert set(buckets) == expected
    # the names agree with what the trainer resolves for the gcp target
    settings = settings_by_env[env]
    assert {settings.dev_bucket, settings.datasets_bucket, settings.models_bucket} == {
        f"gs://{names.bucket(k)}" for k in ("dev", "datasets", "models")
    }
    for name, bucket in buckets.items():
        assert CdktfTesting.to_have_resource_with_properties(
            synth.texts[env],
            "google_storage_bucket",
            {
                "name": name,
                "location": names.region,
                "uniform_bucket_level_access": True,
                "public_access_prevention": "enforced",
                "versioning": {"enabled": True},
            },
        ), name
        assert bucket["uniform_bucket_level_access"] is True, name
        assert bucket["public_access_prevention"] == "enforced", name
        assert bucket["versioning"] == {"enabled": True}, name
        assert bucket["encryption"]["default_kms_key_name"] == names.kms_key_name, name
        assert bucket["lifecycle_rule"], name
        assert bucket["location"] == names.region, name
        if name != names.access_log_bucket:
            assert bucket["logging"]["log_bucket"].startswith("${google_storage_bucket."), name


@pytest.mark.parametrize("env", ENVS)
def test_kms_key_rotates_and_every_agent_can_use_it(synth, env, settings_by_env):
    names = Names.of(settings_by_env[env])
    keys = synth.resources(BOOTSTRAP[env], "google_kms_crypto_key").values()
    (key,) = [k for k in keys if k["purpose"] == "ENCRYPT_DECRYPT"]
    assert key["rotation_period"] == "7776000s" and key["name"] == names.kms_key_id
    assert synth.one(BOOTSTRAP[env], "google_kms_key_ring")["name"] == names.kms_key_ring
    assert not synth.resources(env, "google_kms_crypto_key"), "the key outlives the environment: bootstrap stack"
    identities = synth.resources(env, "google_project_service_identity")
    assert sorted(i["service"] for i in identities.values()) == [
        "aiplatform.googleapis.com",
        "artifactregistry.googleapis.com",
        "cloudfunctions.googleapis.com",  # the starter function's CMEK (infra/components/starter_function.py)
        "eventarc.googleapis.com",  # not a key user: the triggers need it (infra/components/pipelines.py)
        "pubsub.googleapis.com",
        "run.googleapis.com",  # the starter function's CMEK: its instances run on Cloud Run
    ]
    assert all(i["provider"] == "google-beta" for i in identities.values())
    data_agents = (
        ("google_storage_project_service_account", "email_address"),
        ("google_bigquery_default_service_account", "email"),
    )
    grants = synth.resources(env, "google_kms_crypto_key_iam_member").values()
    assert {g["crypto_key_id"] for g in grants} == {names.kms_key_name}
    members = {g["member"] for g in grants}
    assert members == {
        *(
            f"serviceAccount:${{google_project_service_identity.{i}.email}}"
            for i, body in identities.items()
            if body["service"] != "eventarc.googleapis.com"
        ),
        *(f"serviceAccount:${{data.{t}.{n}.{a}}}" for t, a in data_agents for n in synth.stack(env)["data"][t]),
    }
    assert not any("gcp-sa-" in m for m in members), "no hand-written service agent"
    for resource_type, path in (
        ("google_artifact_registry_repository", ("kms_key_name",)),
        ("google_pubsub_topic", ("kms_key_name",)),
        ("google_bigquery_dataset", ("default_encryption_configuration", "kms_key_name")),
        ("google_vertex_ai_endpoint", ("encryption_spec", "kms_key_name")),
        ("google_vertex_ai_tensorboard", ("encryption_spec", "kms_key_name")),
    ):
        for value in synth.resources(env, resource_type).values():
            for part in path:
                value = value[part]
            assert value == names.kms_key_name, resource_type


@pytest.mark.parametrize("env", ENVS)
def test_artifact_registry_has_immutable_tags_and_cleanup(synth, env, settings_by_env):
    assert CdktfTesting.to_have_resource_with_properties(
        synth.texts[env],
        "google_artifact_registry_repository",
        {"format": "DOCKER", "docker_config": {"immutable_tags": True}},
    )
    names = Names.of(settings_by_env[env])
    repositories = {r["repository_id"]: r for r in synth.resources(env, "google_artifact_registry_repository").values()}
    repository = repositories[names.artifact_repository]
    # the starter function's: Cloud Run functions pushes and tags its builds there itself
    assert {k for k, r in repositories.items() if r["format"] == "DOCKER"} == {
        names.artifact_repository,
        names.functions_repository,
    }
    assert repository["docker_config"] == {"immutable_tags": True}
    assert {p["id"] for p in repository["cleanup_policies"]} == {"keep-recent", "delete-untagged"}
    assert repository["cleanup_policy_dry_run"] is False


@pytest.mark.parametrize("env", ENVS)
def test_images_are_tagged_by_source_hash_and_pinned_by_digest(synth, env, settings_by_env):
    names = Names.of(settings_by_env[env])
    built = {i["name"]: i for i in synth.resources(f"images-{env}", "docker_image").values()}
    assert set(built) == {f"{names.image_repository(i)}:{source_tag(i)}" for i in ("trainer", "service")}
    for image in built.values():
        assert image["build"]["context"] == "${path.module}/../../.."
        assert image["triggers"]["source_tag"] in image["name"]
    pushed = synth.resources(f"images-{env}", "docker_registry_image").values()
    assert all(p["keep_remotely"] is True for p in pushed)
    container = synth.one(f"serving-{env}", "google_cloud_run_v2_service")["template"]["containers"][0]
    # the digest images-<env> pushed, read as a cross-stack output (tests/infra/test_stack_split.py)
    assert container["image"].startswith(names.image_repository("service") + "@${data.terraform_remote_state.")
    assert container["image"].endswith("sha256_digest}")


@pytest.mark.parametrize("env", ENVS)
def test_feature_table_schema_comes_from_the_trainer(synth, env, settings_by_env):
    names = Names.of(settings_by_env[env])
    (table,) = [t for t in synth.resources(env, "google_bigquery_table").values() if "table_constraints" in t]
    assert json.loads(table["schema"]) == feature_schema.bigquery_schema()
    assert table["table_id"] == feature_schema.TABLE_NAME
    # a feature view needs one row per entity id: the table holds one dataset version, keyed by image id
    assert table["table_constraints"] == {"primary_key": {"columns": [feature_schema.ENTITY_ID_COLUMN]}}
    assert "dataset_version" not in table["clustering"] and "WRITE_TRUNCATE" in table["description"]
    view = synth.one(env, "google_vertex_ai_feature_online_store_featureview")
    assert view["big_query_source"] == {
        "uri": f"bq://{names.project}.{names.bigquery_dataset}.{feature_schema.TABLE_NAME}",
        "entity_id_columns": [feature_schema.ENTITY_ID_COLUMN],
    }
    assert "optimized" in synth.one(env, "google_vertex_ai_feature_online_store")
    assert not synth.resources(env, "google_vertex_ai_featurestore"), "legacy Featurestore shuts down 2027-02-17"


@pytest.mark.parametrize("env", ENVS)
def test_vertex_endpoint_has_numeric_name_and_tensorboard(synth, env, settings_by_env):
    assert CdktfTesting.to_have_resource_with_properties(
        synth.texts[env],
        "google_vertex_ai_endpoint",
        {"location": settings_by_env[env].region, "display_name": f"fmnist-{env}"},
    )
    endpoint = synth.one(env, "google_vertex_ai_endpoint")
    assert endpoint["name"] == str(settings_by_env[env].infra.endpoint_id) and endpoint["name"].isdigit()
    assert not endpoint["name"].startswith("0")
    assert synth.one(env, "google_vertex_ai_tensorboard")["display_name"] == f"fmnist-{env}"


@pytest.mark.parametrize("env", ENVS)
def test_cloud_run_service(synth, env, settings_by_env):
    settings = settings_by_env[env]
    names = Names.of(settings)
    assert CdktfTesting.to_have_resource_with_properties(
        synth.texts[f"serving-{env}"],
        "google_cloud_run_v2_service",
        {
            "name": names.cloud_run_service,
            "location": names.region,
            "ingress": "INGRESS_TRAFFIC_ALL",
            "template": {
                "scaling": {
                    "min_instance_count": settings.infra.min_instances,
                    "max_instance_count": settings.infra.max_instances,
                }
            },
        },
    )
    service = synth.one(f"serving-{env}", "google_cloud_run_v2_service")
    assert service["template"]["service_account"] == names.service_account_email("service")
    container = service["template"]["containers"][0]
    env_vars = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert env_vars["MODEL_URI"] == f"gs://{settings.bucket_prefix}-models@champion"
    assert env_vars["PAGE_ENABLED"] == "false"
    assert env_vars["DRIFT_PSI_THRESHOLD"] == str(settings.service.drift_psi_threshold)
    assert env_vars["MAX_INSTANCES"] == str(settings.service.max_instances_per_request)
    assert not {"CHALLENGER", "ROLLOUT_MODE", "ROLLOUT_MIN_REQUESTS"} & set(env_vars), "no rollout unless config asks"
    assert container["resources"]["limits"] == {
        "cpu": settings.infra.service_cpu,
        "memory": settings.infra.service_memory,
    }
    for probe in ("startup_probe", "liveness_probe"):
        assert container[probe]["http_get"]["path"] == "/health"
    service_grants = synth.resources(f"serving-{env}", "google_cloud_run_v2_service_iam_member").values()
    assert [g["role"] for g in service_grants] == ["roles/run.developer"], "no invoker unless asked (the ramp's grant)"
    assert not synth.resources(env, "google_cloud_run_v2_service"), "Cloud Run is serving-<env>'s"


@pytest.mark.parametrize("env", ENVS)
def test_service_secrets_are_mounted_readable_by_the_service_alone_and_kept_out_of_state(synth, env, settings_by_env):
    names = Names.of(settings_by_env[env])
    container = synth.one(f"serving-{env}", "google_cloud_run_v2_service")["template"]["containers"][0]
    mounted = {e["name"]: e["value_source"]["secret_key_ref"] for e in container["env"] if "value_source" in e}
    assert set(mounted) == {"ADMIN_TOKEN", "ROUTING_SECRET"} and all(m["version"] == "latest" for m in mounted.values())
    secrets = synth.resources(f"serving-{env}", "google_secret_manager_secret")
    assert {s["secret_id"] for s in secrets.values()} == {
        f"{names.cloud_run_service}-admin-token",
        f"{names.cloud_run_service}-routing-key",
        f"{names.cloud_run_service}-runmonitoring",
    }
    accessors = synth.resources(f"serving-{env}", "google_secret_manager_secret_iam_member").values()
    assert {(a["role"], a["member"]) for a in accessors} == {
        ("roles/secretmanager.secretAccessor", names.account_member("service"))
    }
    versions = synth.resources(f"serving-{env}", "google_secret_manager_secret_version").values()
    for version in (v for v in versions if "secret_data_wo" in v or "secret_data" not in v):
        assert "secret_data" not in version, "a plain secret_data would be stored in the state"
        assert version["secret_data_wo"].startswith("${var.service_") and version["secret_data_wo_version"] == 1
    variables = json.loads(synth.texts[f"serving-{env}"])["variable"]
    for name in ("service_admin_token", "service_routing_key"):
        assert variables[name]["ephemeral"] is True and variables[name]["sensitive"] is True
        assert "default" not in variables[name]


def test_a_configured_challenger_reaches_the_service_environment(variant_synth):
    from service.config import ServiceConfig
    from tests.infra.test_serving_contract import a_public_key

    container = variant_synth.one("serving-dev", "google_cloud_run_v2_service")["template"]["containers"][0]
    env_vars = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    from_secrets = {e["name"] for e in container["env"] if "value_source" in e}
    assert from_secrets == {"ADMIN_TOKEN", "ROUTING_SECRET"}
    env_vars |= dict.fromkeys(from_secrets, "s" * 32)  # what Cloud Run maps onto them from Secret Manager
    env_vars["K_SERVICE"] = "fmnist-predict"  # and what it sets on every instance
    assert env_vars["CALLER_IDENTITY"] == "address"  # this variant's service is public: no verified identity
    assert {k: env_vars[k] for k in ("CHALLENGER", "ROLLOUT_MODE", "CANARY_PERCENT", "ROLLOUT_MIN_REQUESTS")} == {
        "CHALLENGER": "candidate",
        "ROLLOUT_MODE": "canary",
        "CANARY_PERCENT": "5.0",
        "ROLLOUT_MIN_REQUESTS": "2000",
    }
    env_vars["INDEX_PUBLIC_KEY"] = a_public_key(env_vars["INDEX_PUBLIC_KEY"])  # Terraform fills it in
    config = ServiceConfig.from_env(env_vars)  # the service accepts what infra/ writes
    rollout = config.rollout
    assert config.admin_enabled and rollout is not None and rollout.reference.endswith("-models@candidate")
    assert rollout.routing_secret == b"s" * 32
    assert (rollout.canary_percent, rollout.thresholds.min_requests) == (5.0, 2000)


def test_public_endpoint_and_invokers_only_when_config_asks(variant_synth):
    members = sorted(
        m["member"]
        for m in variant_synth.resources("serving-dev", "google_cloud_run_v2_service_iam_member").values()
        if m["role"] == "roles/run.invoker"  # the ramp's developer grant is infra/components/ramp.py's
    )
    assert members == ["allUsers", "group:ml-team@example.com", "user:ana@example.com"]


@pytest.mark.parametrize("env", ENVS)
def test_budget_thresholds_topic_and_channel(synth, env, settings_by_env):
    infra = settings_by_env[env].infra
    budget = synth.one(env, "google_billing_budget")
    assert budget["billing_account"] == infra.billing_account
    assert budget["amount"]["specified_amount"]["units"] == str(int(infra.budget_amount))
    assert [(r["threshold_percent"], r["spend_basis"]) for r in budget["threshold_rules"]] == [
        (0.5, "CURRENT_SPEND"),
        (0.9, "CURRENT_SPEND"),
        (1, "CURRENT_SPEND"),
        (1, "FORECASTED_SPEND"),
    ]
    assert budget["all_updates_rule"]["pubsub_topic"].startswith("${google_pubsub_topic.")
    assert budget["all_updates_rule"]["monitoring_notification_channels"][0].startswith(
        "${google_monitoring_notification_channel."
    )
    assert budget["budget_filter"]["projects"] == ["projects/${data.google_project.project.number}"]
    channels = synth.resources(env, "google_monitoring_notification_channel")
    [channel_key] = [k for k in channels if k in budget["all_updates_rule"]["monitoring_notification_channels"][0]]
    channel = channels[channel_key]
    assert channel["type"] == "email" and channel["labels"] == {"email_address": infra.alert_email}


@pytest.mark.parametrize("env", ENVS)
def test_alert_policies(synth, env, settings_by_env):
    policies = {p["display_name"]: p for p in synth.resources(env, "google_monitoring_alert_policy").values()}
    filters = {
        name: (p["conditions"][0].get("condition_threshold") or {}).get("filter")
        or (p["conditions"][0].get("condition_matched_log") or {}).get("filter")
        or p["conditions"][0]["condition_prometheus_query_language"]["query"]
        for name, p in policies.items()
    }
    assert sorted(filters) == sorted(
        f"fmnist {env}: {what}"
        for what in (
            "Cloud Run 5xx ratio",
            "Cloud Run p99 latency",
            "Vertex AI endpoint errors",
            "served inputs drift",
            "pipeline run failed",
            "quality gate refused a promotion",
        )
    )
    # log-based (issue 24): the trainer's event lines, one notification per 5 minutes at most
    assert filters[f"fmnist {env}: pipeline run failed"] == (
        'jsonPayload.event="pipeline_step_failed" AND jsonPayload.component="trainer"'
    )
    assert filters[f"fmnist {env}: quality gate refused a promotion"] == (
        'jsonPayload.event="gate_refused" AND jsonPayload.component="trainer"'
    )
    for title in ("pipeline run failed", "quality gate refused a promotion"):
        strategy = policies[f"fmnist {env}: {title}"]["alert_strategy"]
        assert strategy["notification_rate_limit"] == {"period": "300s"}  # required by log-based conditions
    assert 'response_code_class = "5xx"' in filters[f"fmnist {env}: Cloud Run 5xx ratio"]
    assert "request_latencies" in filters[f"fmnist {env}: Cloud Run p99 latency"]
    endpoint_id = settings_by_env[env].infra.endpoint_id
    assert f'endpoint_id = "{endpoint_id}"' in filters[f"fmnist {env}: Vertex AI endpoint errors"]
    assert all(p["notification_channels"] for p in policies.values())


def test_cloud_build_triggers(synth, settings_by_env):
    dev = {t["name"]: t for t in synth.resources("dev", "google_cloudbuild_trigger").values()}
    prod = {t["name"]: t for t in synth.resources("prod", "google_cloudbuild_trigger").values()}
    assert dev["fmnist-pull-request-checks"]["substitutions"] == {"_ENV": "dev"}
    repository = {k: dev["fmnist-deploy"]["github"][k] for k in ("owner", "name")}
    # every branch's pull requests, and an outside contributor's only after a maintainer's /gcbrun comment
    pull_requests = {"branch": ".*", "comment_control": "COMMENTS_ENABLED_FOR_EXTERNAL_CONTRIBUTORS_ONLY"}
    assert dev["fmnist-pull-request-checks"]["github"] == {**repository, "pull_request": pull_requests}
    dev_names = Names.of(settings_by_env["dev"])
    assert dev["fmnist-pull-request-checks"]["service_account"].endswith(dev_names.service_account_email("checks"))
    plan = dev["fmnist-pull-request-plan"]
    assert plan["substitutions"] == {"_ENV": "dev", "_PLAN_BUCKET": dev_names.bucket("dev")}
    assert (
        plan["github"] == {**repository, "pull_request": pull_requests} and plan["filename"] == "cloudbuild-plan.yaml"
    )
    assert plan["service_account"].endswith(dev_names.service_account_email("planner"))
    # pull-request code (its build file and infra/) runs as the planner: each plan build waits for an approver
    assert plan["approval_config"] == {"approval_required": True}
    assert "approval_config" not in dev["fmnist-pull-request-checks"]  # the checks account reads nothing
    assert dev["fmnist-deploy"]["github"]["push"] == {"branch": "^main$"}
    assert prod["fmnist-deploy"]["github"]["push"] == {"tag": settings_by_env["prod"].infra.deploy_tag}
    assert prod["fmnist-deploy"]["approval_config"] == {"approval_required": True}
    for trigger in (dev["fmnist-deploy"], prod["fmnist-deploy"]):
        assert trigger["filename"] == "cloudbuild-deploy.yaml"
        assert trigger["substitutions"]["_ACTION"] == "deploy"
        assert trigger["service_account"].endswith("-deployer@" + trigger["service_account"].split("@")[1])
    assert "fmnist-pull-request-checks" not in prod


@pytest.mark.parametrize("env", ENVS)
def test_outputs_for_the_trainer_and_operators(synth, env):
    assert {"service_image", "trainer_image"} <= set(synth.stack(f"images-{env}")["output"])
    assert "service_url" in synth.stack(f"serving-{env}")["output"]
    outputs = synth.stack(env)["output"]
    assert {
        "endpoint",
        "tensorboard",
        "trainer_service_account",
        "models_bucket",
    } <= set(outputs)


@pytest.mark.parametrize("env", ENVS)
def test_every_instance_exports_its_metrics_through_the_prometheus_sidecar(synth, env, settings_by_env):
    from contracts.serving import PORT as CONTAINER_PORT
    from infra.components.metrics_export import CONFIG_DIR, SIDECAR_IMAGE, run_monitoring
    from infra.components.serving import SERVICE_CONTAINER

    template = synth.one(f"serving-{env}", "google_cloud_run_v2_service")["template"]
    service, sidecar = template["containers"]
    assert service["name"] == SERVICE_CONTAINER and service["ports"]["container_port"] == CONTAINER_PORT
    assert service["resources"]["cpu_idle"] is False  # instance-based: scrapes and the poll thread get CPU
    assert sidecar["image"] == SIDECAR_IMAGE and sidecar["depends_on"] == [SERVICE_CONTAINER]
    assert "ports" not in sidecar  # only the service container receives requests
    (mount,) = sidecar["volume_mounts"]
    (volume,) = template["volumes"]
    assert mount == {"name": volume["name"], "mount_path": CONFIG_DIR}
    assert volume["secret"]["items"][0]["path"] == "config.yaml"
    document = next(
        v["secret_data"]
        for v in synth.resources(f"serving-{env}", "google_secret_manager_secret_version").values()
        if "secret_data" in v
    )
    assert document == run_monitoring(CONTAINER_PORT) and "kind: RunMonitoring" in document
    assert f"port: {CONTAINER_PORT}" in document and "path: /metrics" in document
    writers = [
        b
        for b in synth.resources(env, "google_project_iam_member").values()
        if b["role"] == "roles/monitoring.metricWriter"
    ]
    assert [b["member"] for b in writers] == [Names.of(settings_by_env[env]).account_member("service")]
