"""infra/simulate.py's findings word for word, on hand-written stacks: each message names the resource, the cause and
the fix, so a reviewer acts on it without reading the simulator; and the walks' edges (what counts as made before,
which environment protects, the order of a destroy, the command's output and exit code)."""

from __future__ import annotations

import json

import pytest

from infra import simulate
from infra.graph_policies import Graph, GraphResult
from infra.simulate import (
    RULES,
    evaluate_outdir,
    simulate_apply,
    simulate_destroy,
    simulate_outdir,
    simulate_plan,
    simulate_stack,
)

KEY = "projects/p/locations/europe-west4/keyRings/fmnist/cryptoKeys/fmnist-cmek"
SA = "pl-starter@p.iam.gserviceaccount.com"
PROPAGATE = (
    "is used right after it is made: IAM takes up to minutes to propagate and the provider does not retry "
    "(provider issues 15415, 5103); depend on a time_sleep after the grant"
)
UNSET_FORCE = "force_destroy is unset (false): the delete fails while it holds data"
SOFT_DELETE = "soft-deleted objects stay billed for the retention period (bucket default 7 days)"


def _problems(steps) -> dict[str, str | None]:
    return {s.resource: s.problem for s in steps}


def _apply(document: dict, apis: frozenset[str] = frozenset()) -> dict[str, str | None]:
    return _problems(simulate_apply(Graph({"resource": document}), apis))


def _destroy(document: dict, *, protect: bool | None = False, bootstrap: bool = False) -> dict[str, tuple]:
    steps = simulate_destroy(Graph({"resource": document}), protect=protect, bootstrap=bootstrap)
    return {s.resource: (s.problem, s.note) for s in steps}


# ---- apply ---------------------------------------------------------------------------------------------------------
def test_an_api_is_usable_only_after_its_enablement_and_the_enablement_itself_needs_none():
    off = "calls pubsub.googleapis.com, which is off on a new project and not enabled before it"
    assert _apply({"google_pubsub_topic": {"t": {}}}) == {"google_pubsub_topic.t": off}
    enabled_elsewhere = {"google_project_service": {"p": {"service": "pubsub.googleapis.com"}}}
    assert _apply({**enabled_elsewhere, "google_pubsub_topic": {"t": {}}}) == {
        "google_project_service.p": None,
        "google_pubsub_topic.t": off,  # enabled in the stack, but not before the topic: Terraform runs both at once
    }
    waits = {"google_pubsub_topic": {"t": {"depends_on": ["google_project_service.p"]}}}
    assert _apply({**enabled_elsewhere, **waits})["google_pubsub_topic.t"] is None
    assert _apply({"time_sleep": {"w": {}}, "docker_image": {"i": {}}}) == {
        "time_sleep.w": None,
        "docker_image.i": None,
    }


def test_a_quota_project_provider_s_message_names_the_api_and_its_enablement():
    budget = {"provider": "google.billing", "depends_on": ["google_project_service.budgets"]}
    document = {
        "provider": {"google": [{}, {"alias": "billing", "user_project_override": True}, {"alias": "plain"}]},
        "resource": {
            "google_project_service": {"budgets": {"service": "billingbudgets.googleapis.com"}},
            "google_billing_budget": {"b": budget, "plain": {**budget, "provider": "google.plain"}},
        },
    }
    problems = _problems(simulate_apply(Graph(document)))
    assert problems["google_billing_budget.b"] == (
        "its provider sends the project as quota project (user_project_override), whose billingbudgets.googleapis.com "
        "was enabled seconds before by google_project_service.budgets: enablement takes minutes to propagate; wait "
        "for it"
    )
    assert problems["google_billing_budget.plain"] is None  # no quota project: usable once enabled


def _cmek_topic(grant: bool, made_before: bool, wait: bool) -> dict:
    api = {"service": "pubsub.googleapis.com"}
    address = "google_kms_crypto_key_iam_member.pubsub"
    resources: dict = {
        "google_project_service": {"pubsub": api},
        "google_project_service_identity": {"pubsub": {**api, "depends_on": ["google_project_service.pubsub"]}},
        "google_pubsub_topic": {"topic": {"kms_key_name": KEY, "depends_on": ["google_project_service.pubsub"]}},
    }
    if grant:
        resources["google_kms_crypto_key_iam_member"] = {
            "pubsub": {
                "crypto_key_id": KEY,
                "role": "roles/cloudkms.cryptoKeyEncrypterDecrypter",
                "member": "serviceAccount:${google_project_service_identity.pubsub.email}",
            }
        }
    if made_before:
        resources["google_pubsub_topic"]["topic"]["depends_on"].append("time_sleep.grants" if wait else address)
    if wait:
        resources["time_sleep"] = {"grants": {"depends_on": [address]}}
    return resources


@pytest.mark.parametrize(
    ("grant", "made_before", "wait", "problem"),
    [
        (False, False, False, "uses the CMEK key, but the pubsub service agent is never granted it"),
        (
            True,
            False,
            False,
            "the pubsub agent's key grant (google_kms_crypto_key_iam_member.pubsub) is not made before it",
        ),
        (True, True, False, f"the pubsub agent's key grant (google_kms_crypto_key_iam_member.pubsub) {PROPAGATE}"),
        (True, True, True, None),
    ],
)
def test_a_cmek_resource_s_key_grant_messages(grant, made_before, wait, problem):
    assert _apply(_cmek_topic(grant, made_before, wait))["google_pubsub_topic.topic"] == problem


def test_a_key_grant_of_another_role_or_to_another_agent_is_no_grant():
    resources = _cmek_topic(True, True, True)
    resources["google_kms_crypto_key_iam_member"]["pubsub"]["role"] = "roles/cloudkms.viewer"
    assert _apply(resources)["google_pubsub_topic.topic"] == (
        "uses the CMEK key, but the pubsub service agent is never granted it"
    )
    resources = _cmek_topic(True, True, True)
    resources["google_project_service_identity"]["pubsub"]["service"] = "run.googleapis.com"
    assert _apply(resources)["google_pubsub_topic.topic"] == (
        "uses the CMEK key, but the pubsub service agent is never granted it"
    )
    resources = _cmek_topic(True, True, True)  # a KMS resource naming the key is not a CMEK user
    resources["google_kms_crypto_key_iam_member"]["other"] = {"crypto_key_id": KEY, "role": "roles/viewer"}
    assert _apply(resources, frozenset({"cloudkms.googleapis.com"}))["google_kms_crypto_key_iam_member.other"] is None


def _trigger(*, agent: bool, grants: tuple[str, ...], made_before: bool, workflow: bool = True) -> dict:
    trigger = {
        "service_account": SA,
        "destination": {"workflow": "w"} if workflow else {"cloud_run_service": {"service": "s"}},
        "matching_criteria": [{"attribute": "type", "value": "google.cloud.pubsub.topic.v1.messagePublished"}],
        "depends_on": ["google_project_service.eventarc"],
    }
    resources: dict = {
        "google_project_service": {"eventarc": {"service": "eventarc.googleapis.com"}},
        "google_project_iam_member": {
            f"starter_{role.split('.')[-1]}": {"role": role, "member": f"serviceAccount:{SA}"} for role in grants
        },
        "google_eventarc_trigger": {"t": trigger},
    }
    if agent:
        resources["google_project_service_identity"] = {"eventarc": {"service": "eventarc.googleapis.com"}}
        trigger["depends_on"].append("google_project_service_identity.eventarc")
    if made_before:
        resources["time_sleep"] = {
            "ready": {"depends_on": [f"google_project_iam_member.starter_{r.split('.')[-1]}" for r in grants]}
        }
        trigger["depends_on"].append("time_sleep.ready")
    return resources


RECEIVER, INVOKER = "roles/eventarc.eventReceiver", "roles/workflows.invoker"


def test_an_eventarc_trigger_s_messages_name_the_agent_and_each_grant():
    assert _apply(_trigger(agent=False, grants=(), made_before=False))["google_eventarc_trigger.t"] == (
        "needs the eventarc service agent (service-PROJECT_NUMBER@gcp-sa-eventarc.iam.gserviceaccount.com), which "
        "Google creates lazily: nothing before it creates it (google_project_service_identity); "
        f"its account {SA} is never granted {RECEIVER}; its account {SA} is never granted {INVOKER}"
    )
    assert _apply(_trigger(agent=True, grants=(RECEIVER, INVOKER), made_before=False))["google_eventarc_trigger.t"] == (
        f"{RECEIVER} of its account (google_project_iam_member.starter_eventReceiver) is not made before it; "
        f"{INVOKER} of its account (google_project_iam_member.starter_invoker) is not made before it"
    )
    # a Cloud Run destination: no workflows.invoker needed
    cloud_run = _trigger(agent=True, grants=(RECEIVER,), made_before=True, workflow=False)
    assert _apply(cloud_run)["google_eventarc_trigger.t"] is None


def test_a_grant_to_another_account_does_not_count_and_a_trigger_without_an_account_needs_none():
    resources = _trigger(agent=True, grants=(RECEIVER,), made_before=True, workflow=False)
    resources["google_project_iam_member"]["starter_eventReceiver"]["member"] = "serviceAccount:other@p.iam"
    assert _apply(resources)["google_eventarc_trigger.t"] == f"its account {SA} is never granted {RECEIVER}"
    del resources["google_eventarc_trigger"]["t"]["service_account"]
    assert _apply(resources)["google_eventarc_trigger.t"] is None


def _gcs_trigger(grant: bool, wait: bool) -> dict:
    agent = "${data.google_storage_project_service_account.gcs.email_address}"
    trigger = {
        "matching_criteria": [
            {"attribute": "bucket", "value": "b"},
            {"attribute": "type", "value": "google.cloud.storage.object.v1.finalized"},
        ],
        "depends_on": ["google_project_service.eventarc", "google_project_service_identity.eventarc"],
    }
    resources: dict = {
        "google_project_service": {"eventarc": {"service": "eventarc.googleapis.com"}},
        "google_project_service_identity": {"eventarc": {"service": "eventarc.googleapis.com"}},
        "google_eventarc_trigger": {"t": trigger},
        "google_project_iam_member": {
            "gcs_viewer": {"role": "roles/pubsub.viewer", "member": f"serviceAccount:{agent}"},
            "other_publisher": {"role": "roles/pubsub.publisher", "member": f"serviceAccount:{SA}"},
        },
    }
    if grant:
        resources["google_project_iam_member"]["gcs_publisher"] = {
            "role": "roles/pubsub.publisher",
            "member": f"serviceAccount:{agent}",
        }
        trigger["depends_on"].append("time_sleep.w" if wait else "google_project_iam_member.gcs_publisher")
    if wait:
        resources["time_sleep"] = {"w": {"depends_on": ["google_project_iam_member.gcs_publisher"]}}
    return resources


@pytest.mark.parametrize(
    ("grant", "wait", "problem"),
    [
        (False, False, "the Cloud Storage agent is never granted roles/pubsub.publisher"),
        (
            True,
            False,
            f"the Cloud Storage agent's pubsub.publisher grant (google_project_iam_member.gcs_publisher) {PROPAGATE}",
        ),
        (True, True, None),
    ],
)
def test_a_cloud_storage_trigger_needs_the_storage_agent_s_publisher_grant_waited_for(grant, wait, problem):
    document = {"resource": _gcs_trigger(grant, wait), "data": {"google_storage_project_service_account": {"gcs": {}}}}
    problems = _problems(simulate_apply(Graph(document), frozenset({"eventarc.googleapis.com"})))
    assert problems["google_eventarc_trigger.t"] == problem


def _alert(*conditions: dict, depends_on: tuple[str, ...] = ()) -> dict:
    return {"conditions": list(conditions), "depends_on": list(depends_on)}


def test_an_alert_s_metric_message_and_where_metrics_are_read():
    metric = 'metric.type = "custom.googleapis.com/fmnist/accuracy"'
    policies = {
        "threshold": _alert({"display_name": "low", "condition_threshold": {"filter": metric}}),
        "absent": _alert({"display_name": "gone", "condition_absent": {"filter": metric}}),
        "ratio": _alert(
            {
                "display_name": "ratio",
                "condition_threshold": {
                    "filter": 'metric.type = "run.googleapis.com/request_count"',
                    "denominator_filter": metric,
                },
            }
        ),
        "declared": _alert(
            {"display_name": "d", "condition_threshold": {"filter": metric}},
            depends_on=("google_monitoring_metric_descriptor.accuracy",),
        ),
        "logged": _alert(
            {
                "display_name": "l",
                "condition_threshold": {"filter": 'metric.type = "logging.googleapis.com/user/errors"'},
            },
            depends_on=("google_logging_metric.errors",),
        ),
        "unlogged": _alert(
            {
                "display_name": "u",
                "condition_threshold": {"filter": 'metric.type = "logging.googleapis.com/user/errors"'},
            }
        ),
    }
    document = {
        "google_monitoring_alert_policy": policies,
        "google_monitoring_metric_descriptor": {"accuracy": {"type": "custom.googleapis.com/fmnist/accuracy"}},
        "google_logging_metric": {"errors": {"name": "errors"}},
    }
    problems = _apply(document, frozenset({"monitoring.googleapis.com", "logging.googleapis.com"}))

    def message(name: str, metric_type: str = "custom.googleapis.com/fmnist/accuracy") -> str:
        return (
            f"condition '{name}' names {metric_type}, which Cloud Monitoring registers only at its first point: "
            "creating the policy on a new project fails with 404 'Cannot find metric(s)'; use "
            "condition_prometheus_query_language or declare the metric"
        )

    assert problems["google_monitoring_alert_policy.threshold"] == message("low")
    assert problems["google_monitoring_alert_policy.absent"] == message("gone")
    assert problems["google_monitoring_alert_policy.ratio"] == message("ratio")
    assert problems["google_monitoring_alert_policy.declared"] is None
    assert problems["google_monitoring_alert_policy.logged"] is None
    assert problems["google_monitoring_alert_policy.unlogged"] == message("u", "logging.googleapis.com/user/errors")


# ---- plan ----------------------------------------------------------------------------------------------------------
def test_the_docker_provider_message_counts_the_other_resources():
    document = {
        "resource": {
            "docker_image": {"i": {}},
            "docker_registry_image": {"r": {}},
            "google_pubsub_topic": {"a": {}, "b": {}},
        },
        "data": {"google_project": {"p": {}}},
    }
    message = (
        "uses the docker provider, which pings a Docker daemon when it is configured: planning or destroying the 2 "
        "other resources of this stack needs a daemon; give the images a stack of their own"
    )
    assert _problems(simulate_plan(Graph(document))) == {"docker_image.i": message, "docker_registry_image.r": message}


def test_the_planner_s_steps_name_each_missing_permission_its_roles_and_its_first_user():
    document = {
        "provider": {"google": [{"user_project_override": True}]},
        "resource": {
            "google_pubsub_topic": {"t1": {}, "t2": {}},
            "google_billing_budget": {"b": {}},
            "time_sleep": {"w": {}},
        },
        "data": {"google_made_up_thing": {"x": {}}},
    }
    roles = {"roles/pubsub.viewer", "roles/billing.viewer"}
    steps = list(simulate_plan(Graph(document), roles, refresh=True))
    assert [(s.walk, s.resource, s.problem) for s in steps] == [
        (
            "plan",
            "data.google_made_up_thing.x",
            "no read permission known for data.google_made_up_thing: add it to read_permissions.json",
        ),
        ("plan", "planner:billing.budgets.get", None),
        ("plan", "planner:pubsub.topics.get", None),
        (
            "plan",
            "planner:serviceusage.services.use",
            "the planner's roles (roles/billing.viewer, roles/pubsub.viewer) lack serviceusage.services.use, needed "
            "for provider.google (user_project_override)",
        ),
    ]
    lacking = _problems(simulate_plan(Graph(document), {"roles/billing.viewer"}, refresh=True))
    assert lacking["planner:pubsub.topics.get"] == (
        "the planner's roles (roles/billing.viewer) lack pubsub.topics.get, needed for google_pubsub_topic.t1"
    )
    assert list(simulate_plan(Graph(document))) == []  # no planner known: only the docker check


def _bootstrap(**grants: dict) -> dict:
    return {
        "resource": {
            "google_service_account": {
                "planner": {"account_id": "fmnist-mlops-dev-planner"},
                "trainer": {"account_id": "fmnist-mlops-dev-trainer"},
            },
            "google_project_service": {"pubsub": {"service": "pubsub.googleapis.com"}},
            **grants,
        }
    }


def test_the_planner_s_roles_are_its_project_and_billing_grants_in_the_bootstrap_stack():
    planner, trainer = "${google_service_account.planner.email}", "${google_service_account.trainer.email}"
    bootstrap = _bootstrap(
        google_project_iam_member={
            "a": {"role": "roles/pubsub.viewer", "member": f"serviceAccount:{planner}"},
            "b": {"role": "roles/billing.viewer", "member": f"serviceAccount:{trainer}"},
        },
        google_billing_account_iam_member={
            "c": {"role": "roles/logging.viewer", "member": f"serviceAccount:{planner}"}
        },
        google_storage_bucket_iam_member={"d": {"role": "roles/storage.admin", "member": f"serviceAccount:{planner}"}},
    )
    document = {"resource": {"google_pubsub_topic": {"t": {}}, "google_billing_budget": {"b": {}}}}
    steps = simulate_stack("dev", document, bootstrap_document=bootstrap, refresh=True)
    assert _problems(s for s in steps if s.walk == "plan") == {
        "planner:billing.budgets.get": (
            "the planner's roles (roles/logging.viewer, roles/pubsub.viewer) lack billing.budgets.get, needed for "
            "google_billing_budget.b"
        ),
        "planner:pubsub.topics.get": None,
    }
    # the bootstrap stack enabled pubsub: the topic may call it on the environment's project
    assert _problems(s for s in steps if s.walk == "apply")["google_pubsub_topic.t"] is None


def test_a_stack_plans_as_the_shipped_pull_request_build_does_without_refresh():
    bootstrap = _bootstrap()
    document = {"resource": {"google_billing_budget": {"b": {}}}, "data": {"google_kms_crypto_key_version": {"k": {}}}}
    plan = [s.resource for s in simulate_stack("dev", document, bootstrap_document=bootstrap) if s.walk == "plan"]
    # the planner's data-source read, then the deployer's (`cdktf deploy` plans too)
    assert plan == [
        "planner:cloudkms.cryptoKeyVersions.viewPublicKey",
        "deployer:cloudkms.cryptoKeyVersions.viewPublicKey",
    ]
    assert [s.walk for s in simulate_stack("dev", document)] == ["apply", "destroy"]  # no bootstrap: no planner


# ---- destroy -------------------------------------------------------------------------------------------------------
def test_the_destroy_messages_of_unset_guards():
    assert _destroy(
        {
            "google_workflows_workflow": {"w": {}},
            "google_storage_bucket": {"b": {}},
            "google_bigquery_dataset": {"d": {}},
            "google_project_service": {"s": {"service": "pubsub.googleapis.com"}},
            "google_dns_managed_zone": {
                "z": {}
            },  # force_destroy unset: only a bucket holds data the stack did not make
        }
    ) == {
        "google_workflows_workflow.w": (
            "deletion_protection is unset and the provider's default is true (Whether Terraform will be prevented "
            "from destroying the work...)",
            "",
        ),
        "google_storage_bucket.b": (UNSET_FORCE, SOFT_DELETE),
        "google_bigquery_dataset.d": (
            "delete_contents_on_destroy is unset (false): the delete fails while it holds data",
            "",
        ),
        "google_project_service.s": (
            "disable_on_destroy is unset (the provider's default is true): destroy switches the API off, which fails "
            "while other services depend on it",
            "",
        ),
        "google_dns_managed_zone.z": (None, ""),
    }


@pytest.mark.parametrize("protect", [False, None])
def test_the_destroy_messages_of_explicit_guards_where_the_environment_is_not_protected(protect):
    found = _destroy(
        {
            "google_workflows_workflow": {"w": {"deletion_protection": True}, "off": {"deletion_protection": False}},
            "google_storage_bucket": {"b": {"force_destroy": False}, "f": {"force_destroy": True}},
            "google_bigquery_dataset": {
                "d": {"delete_contents_on_destroy": "false"},
                "e": {"delete_contents_on_destroy": "true"},
            },
            "google_project_service": {"s": {"disable_on_destroy": "true"}, "kept": {"disable_on_destroy": False}},
            "google_dns_managed_zone": {"z": {"force_destroy": False}},
            "google_pubsub_topic": {"t": {"lifecycle": {"prevent_destroy": True}}},
        },
        protect=protect,
    )
    assert found == {
        "google_workflows_workflow.w": ("deletion_protection is true", ""),
        "google_workflows_workflow.off": (None, ""),
        "google_storage_bucket.b": ("force_destroy is false: the delete fails while it holds data", SOFT_DELETE),
        "google_storage_bucket.f": (None, SOFT_DELETE),
        "google_bigquery_dataset.d": ("delete_contents_on_destroy is false: the delete fails while it holds data", ""),
        "google_bigquery_dataset.e": (None, ""),
        "google_project_service.s": (
            "disable_on_destroy is true: destroy switches the API off, which fails while other services depend on it",
            "",
        ),
        "google_project_service.kept": (None, ""),
        "google_dns_managed_zone.z": ("force_destroy is false: the delete fails while it holds data", ""),
        "google_pubsub_topic.t": ("lifecycle.prevent_destroy fails the destroy plan", ""),
    }


def test_a_protected_environment_refuses_as_intended_only_what_it_decided():
    found = _destroy(
        {
            "google_workflows_workflow": {"w": {"deletion_protection": True}, "unset": {}},
            "google_storage_bucket": {"b": {"force_destroy": False, "lifecycle": {"prevent_destroy": True}}},
        },
        protect=True,
    )
    assert found == {
        "google_workflows_workflow.w": (None, "refused as intended: deletion_protection is true"),
        "google_workflows_workflow.unset": (
            "deletion_protection is unset and the provider's default is true (Whether Terraform will be prevented "
            "from destroying the work...)",
            "",
        ),
        "google_storage_bucket.b": (
            None,
            "refused as intended: force_destroy is false: the delete fails while it holds data; "
            f"lifecycle.prevent_destroy fails the destroy plan; {SOFT_DELETE}",
        ),
    }


def test_kms_keys_belong_in_the_bootstrap_stack():
    resources = {"google_kms_key_ring": {"r": {}}, "google_kms_crypto_key": {"k": {}}}
    problem = (
        "Google never deletes key rings or keys: the next deploy of this stack gets 409; keep it in the bootstrap stack"
    )
    assert _destroy(resources) == {"google_kms_crypto_key.k": (problem, ""), "google_kms_key_ring.r": (problem, "")}
    note = "never deleted by Google: removed from state, versions scheduled for destruction"
    assert _destroy(resources, bootstrap=True) == {
        "google_kms_crypto_key.k": (None, note),
        "google_kms_key_ring.r": (None, note),
    }


def test_an_endpoint_is_destroyed_only_where_every_destroy_path_undeploys_its_models(monkeypatch):
    resources = {"google_vertex_ai_endpoint": {"e": {}}}
    assert _destroy(resources)["google_vertex_ai_endpoint.e"] == (
        None,
        "models the SDK deployed are undeployed first (make destroy / cloudbuild-deploy.yaml)",
    )
    monkeypatch.setattr(simulate, "DESTROY_PATHS", ("Makefile", "cloudbuild-plan.yaml"))  # the plan has no guard
    assert _destroy(resources)["google_vertex_ai_endpoint.e"] == (
        "an endpoint with deployed models cannot be deleted: every destroy path must run undeploy-all and "
        "infra.endpoint_guard first",
        "",
    )


def test_the_destroy_paths_guard_only_when_every_one_exists_and_names_the_guard(tmp_path):
    guard = simulate._destroy_paths_guard_the_endpoint
    assert guard(tmp_path) is False
    (tmp_path / "Makefile").write_text("destroy:\n\tpython -m infra.endpoint_guard\n")
    assert guard(tmp_path) is False  # cloudbuild-deploy.yaml missing
    (tmp_path / "cloudbuild-deploy.yaml").write_text("steps: []\n")
    assert guard(tmp_path) is False
    (tmp_path / "cloudbuild-deploy.yaml").write_text("args: [python, -m, infra.endpoint_guard]\n")
    assert guard(tmp_path) is True


def test_a_destroy_removes_dependents_before_what_they_depend_on():
    document = {
        "resource": {
            "google_pubsub_topic": {"a": {"depends_on": ["time_sleep.z"]}, "b": {}},
            "time_sleep": {"z": {"depends_on": ["data.google_project.p"]}},
        },
        "data": {"google_project": {"p": {}}},
    }
    steps = simulate_destroy(Graph(document), protect=False, bootstrap=False)
    assert [s.resource for s in steps] == ["google_pubsub_topic.b", "google_pubsub_topic.a", "time_sleep.z"]


# ---- stacks on disk and the command --------------------------------------------------------------------------------
def _outdir(tmp_path, stacks: dict[str, dict]):
    for name, document in stacks.items():
        (tmp_path / "stacks" / name).mkdir(parents=True)
        (tmp_path / "stacks" / name / "cdk.tf.json").write_text(json.dumps(document))
    return tmp_path


def _workflow_stacks(tmp_path):
    workflow = {
        "google_workflows_workflow": {"w": {"deletion_protection": True, "depends_on": ["google_project_service.wf"]}}
    }
    bootstrap = {
        "resource": {
            "google_project_service": {"wf": {"service": "workflows.googleapis.com", "disable_on_destroy": False}}
        }
    }
    return _outdir(
        tmp_path,
        {
            "bootstrap-dev": bootstrap,
            "dev": {"resource": workflow},  # its bootstrap enabled the API; dev does not protect
            "prod": {"resource": workflow},  # no bootstrap-prod: the API is off; prod protects
            "qa": {"resource": {"time_sleep": {"w": {}}}},  # no config/qa.yaml: protection unknown
        },
    )


def test_every_stack_on_disk_starts_from_its_environment_s_bootstrap_and_protection(tmp_path):
    results = simulate_outdir(_workflow_stacks(tmp_path))
    assert sorted(results) == ["bootstrap-dev", "dev", "prod", "qa"]
    dev = {(s.walk, s.resource): (s.problem, s.note) for s in results["dev"]}
    assert dev == {  # no plan step: the planner's plan reads no resource (-refresh=false) and dev has no data source
        ("apply", "google_workflows_workflow.w"): (None, ""),
        ("destroy", "google_workflows_workflow.w"): ("deletion_protection is true", ""),
    }
    prod = {(s.walk, s.resource): (s.problem, s.note) for s in results["prod"]}
    assert prod == {
        ("apply", "google_workflows_workflow.w"): (
            "calls workflows.googleapis.com, which is off on a new project and not enabled before it",
            "",
        ),
        ("destroy", "google_workflows_workflow.w"): (None, "refused as intended: deletion_protection is true"),
    }
    assert [(s.walk, s.problem) for s in results["qa"]] == [("apply", None), ("destroy", None)]


def test_the_scan_gets_one_check_per_walk(tmp_path):
    outdir = _outdir(tmp_path, {"qa": {"resource": {"google_pubsub_topic": {"t": {}}}}})
    assert evaluate_outdir(outdir) == [
        GraphResult(
            "qa",
            "CKV2_FMNIST_S2",
            "Simulated apply on a new project: APIs, agents, grants, metrics usable when used",
            "google_pubsub_topic.t",
            "calls pubsub.googleapis.com, which is off on a new project and not enabled before it",
        ),
        GraphResult(
            "qa", "CKV2_FMNIST_S3", "Simulated destroy: no delete precondition fails", "google_pubsub_topic.t", None
        ),
    ]
    assert RULES["plan"] == (
        "CKV2_FMNIST_S1",
        "Simulated plan: providers configure offline; the planner can read every resource",
    )


def test_the_command_prints_what_would_fail_and_exits_1(tmp_path, capsys):
    assert simulate.main(["--outdir", str(_workflow_stacks(tmp_path))]) == 1
    assert capsys.readouterr().out == (
        "bootstrap-dev: 2 steps, 0 would fail\n"
        "dev: 2 steps, 1 would fail\n"
        "  destroy FAIL google_workflows_workflow.w: deletion_protection is true\n"
        "prod: 2 steps, 1 would fail\n"
        "  apply   FAIL google_workflows_workflow.w: calls workflows.googleapis.com, which is off on a new project and "
        "not enabled before it\n"
        "qa: 2 steps, 0 would fail\n"
    )


def test_the_command_exits_0_when_nothing_fails_and_verbose_prints_the_notes(tmp_path, capsys, monkeypatch):
    bootstrap = {"google_project_service": {"gcs": {"service": "storage.googleapis.com", "disable_on_destroy": False}}}
    outdir = _outdir(
        tmp_path / "cdktf.out",
        {
            "bootstrap-qa": {"resource": bootstrap},
            "qa": {"resource": {"google_storage_bucket": {"b": {"force_destroy": True}}}},
        },
    )
    assert simulate.main(["--outdir", str(outdir)]) == 0
    assert capsys.readouterr().out == "bootstrap-qa: 2 steps, 0 would fail\nqa: 2 steps, 0 would fail\n"
    monkeypatch.chdir(tmp_path)  # the default --outdir: cdktf.out, where `cdktf synth` writes
    assert simulate.main(["--verbose"]) == 0
    assert capsys.readouterr().out == (
        "bootstrap-qa: 2 steps, 0 would fail\n"
        "  apply   ok   google_project_service.gcs: \n"
        "  destroy ok   google_project_service.gcs: \n"
        "qa: 2 steps, 0 would fail\n"
        "  apply   ok   google_storage_bucket.b: \n"
        f"  destroy ok   google_storage_bucket.b: {SOFT_DELETE}\n"
    )


def test_every_guard_of_a_type_with_two_is_judged():
    found = _destroy(
        {
            "google_bigtable_instance": {
                "kept": {"deletion_protection": False, "force_destroy": False},
                "guarded": {"force_destroy": True},
            }
        }
    )
    assert found == {
        "google_bigtable_instance.guarded": (
            "deletion_protection is unset and the provider's default is true (When the field is set to true or unset "
            "in Terraform state, a...)",
            "",
        ),
        "google_bigtable_instance.kept": ("force_destroy is false: the delete fails while it holds data", ""),
    }


def test_only_a_bootstrap_stack_may_hold_kms_keys():
    document = {"resource": {"google_kms_key_ring": {"r": {}}}}
    destroy = [(s.problem, s.note) for s in simulate_stack("bootstrap-dev", document) if s.walk == "destroy"]
    assert destroy == [(None, "never deleted by Google: removed from state, versions scheduled for destruction")]
    assert simulate_stack("dev", document)[-1].problem == (
        "Google never deletes key rings or keys: the next deploy of this stack gets 409; keep it in the bootstrap stack"
    )


def test_a_key_grant_by_binding_counts_and_a_wait_that_does_not_follow_the_grant_does_not():
    resources = _cmek_topic(True, True, True)
    grant = resources.pop("google_kms_crypto_key_iam_member")["pubsub"]
    grant["members"] = [grant.pop("member")]
    resources["google_kms_crypto_key_iam_binding"] = {"pubsub": grant}
    resources["time_sleep"]["grants"]["depends_on"] = ["google_kms_crypto_key_iam_binding.pubsub"]
    resources["google_pubsub_topic"]["topic"]["depends_on"].append("google_kms_crypto_key_iam_binding.pubsub")
    assert _apply(resources)["google_pubsub_topic.topic"] is None
    resources = _cmek_topic(True, True, False)
    resources["time_sleep"] = {"elsewhere": {"depends_on": ["google_project_service.pubsub"]}}
    resources["google_pubsub_topic"]["topic"]["depends_on"].append("time_sleep.elsewhere")
    assert _apply(resources)["google_pubsub_topic.topic"] == (
        f"the pubsub agent's key grant (google_kms_crypto_key_iam_member.pubsub) {PROPAGATE}"
    )


def test_the_command_s_help_names_it_and_says_what_it_checks(capsys):
    with pytest.raises(SystemExit) as done:
        simulate.main(["--help"])
    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("usage: python -m infra.simulate [-h] [--outdir OUTDIR] [--verbose] ")
    assert (
        "A simulated `terraform plan`, `apply` and `destroy` over a synthesized `cdk.tf.json`: what would fail on a "
        "new options:"
    ) in out


def test_a_bootstrap_stack_without_resources_gives_the_planner_no_role():
    document = {"resource": {"google_billing_budget": {"b": {}}}}
    steps = simulate_stack("dev", document, bootstrap_document={"output": {}}, refresh=True)
    assert [(s.resource, s.problem) for s in steps if s.walk == "plan"] == [
        (
            "planner:billing.budgets.get",
            "the planner's roles () lack billing.budgets.get, needed for google_billing_budget.b",
        )
    ]


def test_every_reason_a_destroy_fails_is_listed():
    found = _destroy(
        {"google_workflows_workflow": {"w": {"deletion_protection": True, "lifecycle": {"prevent_destroy": True}}}}
    )
    assert found == {
        "google_workflows_workflow.w": (
            "deletion_protection is true; lifecycle.prevent_destroy fails the destroy plan",
            "",
        )
    }


def test_a_bootstrap_stack_does_not_start_from_the_apis_it_enables_itself(tmp_path):
    bootstrap = {
        "google_project_service": {"pubsub": {"service": "pubsub.googleapis.com", "disable_on_destroy": False}},
        "google_pubsub_topic": {"t": {}},  # not after the enablement: Terraform creates both at once
    }
    results = simulate_outdir(_outdir(tmp_path, {"bootstrap-qa": {"resource": bootstrap}}))
    assert _problems(s for s in results["bootstrap-qa"] if s.walk == "apply")["google_pubsub_topic.t"] == (
        "calls pubsub.googleapis.com, which is off on a new project and not enabled before it"
    )


def test_a_stack_plans_with_refresh_when_the_pull_request_build_refreshes(monkeypatch):
    monkeypatch.setattr(simulate, "pull_request_plan_refreshes", lambda: True)
    document = {"resource": {"google_billing_budget": {"b": {}}}}
    plan = [s.resource for s in simulate_stack("dev", document, bootstrap_document=_bootstrap()) if s.walk == "plan"]
    assert plan == ["planner:billing.budgets.get"]


def test_the_docker_steps_are_plan_steps_and_a_policy_without_conditions_names_no_metric():
    document = {"resource": {"docker_image": {"i": {}}, "google_monitoring_alert_policy": {"p": {}}}}
    steps = list(simulate_plan(Graph(document)))
    assert [(s.walk, s.resource) for s in steps] == [("plan", "docker_image.i")]
    assert (
        _apply(document["resource"], frozenset({"monitoring.googleapis.com"}))["google_monitoring_alert_policy.p"]
        is None
    )


def test_a_cmek_user_served_by_two_agents_needs_both_granted():
    instance = {"google_workbench_instance": {"nb": {"gce_setup": {"boot_disk": {"kms_key": KEY}}}}}
    assert _apply(instance, frozenset({"notebooks.googleapis.com"})) == {
        "google_workbench_instance.nb": "uses the CMEK key, but the compute service agent is never granted it; uses "
        "the CMEK key, but the notebooks service agent is never granted it"
    }


def test_an_alert_policy_lists_its_api_and_its_metric_problems_together():
    metric = 'metric.type = "custom.googleapis.com/fmnist/accuracy"'
    policy = {"conditions": [{"display_name": "low", "condition_threshold": {"filter": metric}}]}
    assert _apply({"google_monitoring_alert_policy": {"p": policy}})["google_monitoring_alert_policy.p"] == (
        "calls monitoring.googleapis.com, which is off on a new project and not enabled before it; condition 'low' "
        "names custom.googleapis.com/fmnist/accuracy, which Cloud Monitoring registers only at its first point: "
        "creating the policy on a new project fails with 404 'Cannot find metric(s)'; use "
        "condition_prometheus_query_language or declare the metric"
    )
