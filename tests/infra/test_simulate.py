"""The simulated plan, apply and destroy (infra/simulate.py): each rule fails on a fixture that repeats a defect
the stacks once had, and passes once the fixture carries the fix."""

from __future__ import annotations

import pytest

from infra.graph_policies import Graph
from infra.simulate import simulate_apply, simulate_destroy, simulate_plan, simulate_stack

KEY = "projects/p/locations/europe-west4/keyRings/fmnist/cryptoKeys/fmnist-cmek"
PUBSUB_API = {"service": "pubsub.googleapis.com"}
SA = "pl-starter@p.iam.gserviceaccount.com"


def _problems(steps) -> dict[str, str | None]:
    return {s.resource: s.problem for s in steps}


def _cmek_topic(wait: bool) -> dict:
    grant = "google_kms_crypto_key_iam_member.pubsub"
    resources = {
        "google_project_service": {"pubsub": PUBSUB_API},
        "google_project_service_identity": {"pubsub": {**PUBSUB_API, "depends_on": ["google_project_service.pubsub"]}},
        "google_kms_crypto_key_iam_member": {
            "pubsub": {
                "crypto_key_id": KEY,
                "role": "roles/cloudkms.cryptoKeyEncrypterDecrypter",
                "member": "serviceAccount:${google_project_service_identity.pubsub.email}",
            }
        },
        "google_pubsub_topic": {
            "topic": {
                "kms_key_name": KEY,
                "depends_on": ["google_project_service.pubsub", "time_sleep.grants" if wait else grant],
            }
        },
    }
    if wait:
        resources["time_sleep"] = {"grants": {"create_duration": "60s", "depends_on": [grant]}}
    return {"resource": resources}


@pytest.mark.parametrize("wait", [False, True])
def test_a_cmek_resource_waits_for_its_agent_s_key_grant(wait):
    problems = _problems(simulate_apply(Graph(_cmek_topic(wait))))
    if wait:
        assert problems["google_pubsub_topic.topic"] is None
    else:
        assert "propagate" in problems["google_pubsub_topic.topic"]
        assert "google_kms_crypto_key_iam_member.pubsub" in problems["google_pubsub_topic.topic"]


def test_an_api_that_is_off_on_a_new_project_fails_the_apply_unless_enabled_before():
    document = {"resource": {"google_pubsub_topic": {"t": {"name": "t"}}}}
    assert "is off on a new project" in _problems(simulate_apply(Graph(document)))["google_pubsub_topic.t"]
    assert (
        _problems(simulate_apply(Graph(document), frozenset({"pubsub.googleapis.com"})))["google_pubsub_topic.t"]
        is None
    )


def _eventarc(fixed: bool) -> dict:
    grants = {
        f"starter_{role.split('.')[-1]}": {"role": role, "member": f"serviceAccount:{SA}"}
        for role in ("roles/eventarc.eventReceiver", "roles/workflows.invoker")
    }
    trigger = {
        "service_account": SA,
        "destination": {"workflow": "w"},
        "matching_criteria": [{"attribute": "type", "value": "google.cloud.pubsub.topic.v1.messagePublished"}],
        "depends_on": ["google_project_service.eventarc"],
    }
    resources: dict = {
        "google_project_service": {"eventarc": {"service": "eventarc.googleapis.com"}},
        "google_project_iam_member": grants,
        "google_eventarc_trigger": {"t": trigger},
    }
    if fixed:
        resources["google_project_service_identity"] = {"eventarc": {"service": "eventarc.googleapis.com"}}
        resources["time_sleep"] = {
            "ready": {
                "depends_on": [
                    "google_project_service_identity.eventarc",
                    *(f"google_project_iam_member.{name}" for name in grants),
                ]
            }
        }
        trigger["depends_on"].append("time_sleep.ready")
    return {"resource": resources}


def test_an_eventarc_trigger_needs_its_agent_and_its_account_s_grants_waited_for():
    problem = _problems(simulate_apply(Graph(_eventarc(False))))["google_eventarc_trigger.t"]
    assert "eventarc service agent" in problem
    assert "roles/eventarc.eventReceiver" in problem and "roles/workflows.invoker" in problem
    assert _problems(simulate_apply(Graph(_eventarc(True))))["google_eventarc_trigger.t"] is None


def test_an_alert_on_a_metric_that_does_not_exist_yet_fails_and_promql_passes():
    threshold = {"filter": 'resource.type = "prometheus_target" AND metric.type = "prometheus.googleapis.com/x/gauge"'}
    builtin = {"filter": 'metric.type = "run.googleapis.com/request_count"'}
    document = {
        "resource": {
            "google_monitoring_alert_policy": {
                "custom": {"conditions": [{"display_name": "x", "condition_threshold": threshold}]},
                "builtin": {"conditions": [{"display_name": "r", "condition_threshold": builtin}]},
                "promql": {
                    "conditions": [{"display_name": "p", "condition_prometheus_query_language": {"query": "x > 0"}}]
                },
            }
        }
    }
    problems = _problems(simulate_apply(Graph(document), frozenset({"monitoring.googleapis.com"})))
    assert "Cannot find metric" in problems["google_monitoring_alert_policy.custom"]
    assert problems["google_monitoring_alert_policy.builtin"] is None
    assert problems["google_monitoring_alert_policy.promql"] is None


def test_a_quota_project_provider_waits_for_the_api_it_names():
    budget = {"provider": "google.billing", "depends_on": ["google_project_service.budgets"]}
    document = {
        "provider": {"google": [{}, {"alias": "billing", "user_project_override": True}]},
        "resource": {
            "google_project_service": {"budgets": {"service": "billingbudgets.googleapis.com"}},
            "google_billing_budget": {"b": budget},
        },
    }
    assert "quota project" in _problems(simulate_apply(Graph(document)))["google_billing_budget.b"]
    document["resource"]["time_sleep"] = {"api": {"depends_on": ["google_project_service.budgets"]}}
    budget["depends_on"].append("time_sleep.api")
    assert _problems(simulate_apply(Graph(document)))["google_billing_budget.b"] is None


def test_an_unset_deletion_protection_whose_default_is_true_fails_the_destroy():
    document = {"resource": {"google_workflows_workflow": {"w": {"name": "w"}}}}
    problem = _problems(simulate_destroy(Graph(document), protect=False, bootstrap=False))[
        "google_workflows_workflow.w"
    ]
    assert "deletion_protection is unset" in problem and "default is true" in problem
    # even a protected environment must decide it explicitly
    assert _problems(simulate_destroy(Graph(document), protect=True, bootstrap=False))["google_workflows_workflow.w"]
    document["resource"]["google_workflows_workflow"]["w"]["deletion_protection"] = False
    assert (
        _problems(simulate_destroy(Graph(document), protect=False, bootstrap=False))["google_workflows_workflow.w"]
        is None
    )


def test_destroy_preconditions_of_buckets_datasets_apis_and_keys():
    document = {
        "resource": {
            "google_storage_bucket": {"full": {"name": "a"}, "forced": {"name": "b", "force_destroy": True}},
            "google_bigquery_dataset": {"d": {"dataset_id": "d"}},
            "google_project_service": {"s": {"service": "pubsub.googleapis.com"}},
            "google_kms_key_ring": {"r": {"name": "r"}},
        }
    }
    problems = _problems(simulate_destroy(Graph(document), protect=False, bootstrap=False))
    assert "force_destroy is unset" in problems["google_storage_bucket.full"]
    assert problems["google_storage_bucket.forced"] is None
    assert "delete_contents_on_destroy" in problems["google_bigquery_dataset.d"]
    assert "switches the API off" in problems["google_project_service.s"]
    assert "409" in problems["google_kms_key_ring.r"]
    assert _problems(simulate_destroy(Graph(document), protect=False, bootstrap=True))["google_kms_key_ring.r"] is None


def test_an_explicit_guard_is_the_intended_refusal_only_where_the_environment_is_protected():
    document = {
        "resource": {"google_storage_bucket": {"b": {"force_destroy": False, "lifecycle": {"prevent_destroy": True}}}}
    }
    assert _problems(simulate_destroy(Graph(document), protect=False, bootstrap=False))["google_storage_bucket.b"]
    steps = list(simulate_destroy(Graph(document), protect=True, bootstrap=False))
    assert steps[0].problem is None and "refused as intended" in steps[0].note


def test_the_docker_provider_in_a_stack_with_other_resources_needs_a_daemon_to_plan():
    document = {
        "provider": {"docker": [{}]},
        "resource": {"docker_image": {"i": {}}, "google_pubsub_topic": {"t": {}}},
    }
    assert "Docker daemon" in _problems(simulate_plan(Graph(document)))["docker_image.i"]
    del document["resource"]["google_pubsub_topic"]
    assert _problems(simulate_plan(Graph(document)))["docker_image.i"] is None


def _bootstrap(*roles: str) -> dict:
    planner = "${google_service_account.planner.email}"
    return {
        "resource": {
            "google_service_account": {"planner": {"account_id": "fmnist-planner"}},
            "google_project_iam_member": {
                role.split("/")[-1]: {"role": role, "member": f"serviceAccount:{planner}"} for role in roles
            },
        }
    }


def test_the_planner_needs_service_usage_consumer_under_a_quota_project_override():
    document = {
        "provider": {"google": [{}, {"alias": "billing", "user_project_override": True}]},
        "resource": {"google_pubsub_topic": {"t": {}}},
    }
    viewer = _problems(
        simulate_stack("dev", document, bootstrap_document=_bootstrap("roles/pubsub.viewer"), refresh=True)
    )
    assert "lack serviceusage.services.use" in viewer["planner:serviceusage.services.use"]
    assert viewer["planner:pubsub.topics.get"] is None
    consumer = simulate_stack(
        "dev",
        document,
        bootstrap_document=_bootstrap("roles/pubsub.viewer", "roles/serviceusage.serviceUsageConsumer"),
        refresh=True,
    )
    assert [s for s in consumer if s.walk == "plan" and s.problem] == []


def test_a_plan_without_refresh_needs_read_permissions_for_data_sources_only():
    document = {
        "resource": {"google_billing_budget": {"b": {}}},
        "data": {"google_kms_crypto_key_version": {"k": {}}},
    }
    problems = _problems(simulate_plan(Graph(document), planner_roles=set(), refresh=False))
    assert set(problems) == {"planner:cloudkms.cryptoKeyVersions.viewPublicKey"}
    refreshed = _problems(simulate_plan(Graph(document), planner_roles=set(), refresh=True))
    assert "lack billing.budgets.get" in refreshed["planner:billing.budgets.get"]


def test_the_shipped_pull_request_plan_does_not_refresh(tmp_path):
    from infra.simulate import pull_request_plan_refreshes

    assert pull_request_plan_refreshes() is False
    build = tmp_path / "cloudbuild-plan.yaml"
    build.write_text("env:\n  - TF_CLI_ARGS_plan=-lock=false\n")
    assert pull_request_plan_refreshes(build) is True


def test_a_resource_type_without_a_known_read_permission_is_a_finding():
    document = {"resource": {"google_made_up_thing": {"x": {}}}}
    problems = _problems(simulate_plan(Graph(document), planner_roles=set()))
    assert "read_permissions.json" in problems["google_made_up_thing.x"]


def _failing(outdir) -> list[str]:
    from infra.simulate import simulate_outdir

    return [
        f"{stack} {s.walk} {s.resource}: {s.problem}"
        for stack, steps in simulate_outdir(outdir).items()
        for s in steps
        if s.problem
    ]


def test_the_synthesized_stacks_plan_apply_and_destroy_cleanly(synth):
    assert _failing(synth.outdir) == []


def test_the_scan_reports_every_walk_on_every_stack(synth):
    from infra.simulate import RULES, evaluate_outdir

    results = evaluate_outdir(synth.outdir)
    assert {(r.stack, r.check_id) for r in results} >= {
        (stack, check) for stack in ("dev", "prod") for check, _ in RULES.values()
    }


SIGNING_KEY_VERSION = {
    "data": {
        "google_kms_crypto_key_version": {
            "public_key": {
                "crypto_key": "projects/p/locations/l/keyRings/r/cryptoKeys/fmnist-index-signing",
                "version": 1,
            }
        }
    }
}


def _deployer_bootstrap(*, project_roles=(), key_roles=(), key_name="fmnist-index-signing") -> dict:
    deployer = "serviceAccount:${google_service_account.deployer.email}"
    return {
        "resource": {
            "google_service_account": {"deployer": {"account_id": "fmnist-deployer"}, "other": {"account_id": "x"}},
            "google_project_iam_member": {
                role.split("/")[-1]: {"role": role, "member": deployer} for role in project_roles
            },
            "google_kms_crypto_key": {"signing": {"name": key_name}},
            "google_kms_crypto_key_iam_member": {
                role.split("/")[-1]: {
                    "crypto_key_id": "${google_kms_crypto_key.signing.id}",
                    "role": role,
                    "member": deployer,
                }
                for role in key_roles
            },
        }
    }


def _deployer_problems(bootstrap: dict) -> dict[str, str | None]:
    steps = simulate_stack("serving-dev", SIGNING_KEY_VERSION, bootstrap_document=bootstrap, refresh=False)
    return {s.resource: s.problem for s in steps if s.resource.startswith("deployer:")}


def test_the_deployer_must_read_the_public_key_that_serving_reads_when_cdktf_deploy_plans():
    """The shipped stacks before this check: serving-<env> reads the index signing key's public key at plan, and
    `cdktf deploy` plans as the deployer, whose roles held no Cloud KMS permission on that key."""
    missing = _deployer_problems(_deployer_bootstrap(project_roles=("roles/run.admin",)))
    problem = missing["deployer:cloudkms.cryptoKeyVersions.viewPublicKey"]
    assert problem is not None and "lack cloudkms.cryptoKeyVersions.viewPublicKey" in problem
    assert "data.google_kms_crypto_key_version.public_key" in problem and "roles/run.admin" in problem
    on_the_key = _deployer_bootstrap(key_roles=("roles/cloudkms.publicKeyViewer",))
    assert _deployer_problems(on_the_key) == {"deployer:cloudkms.cryptoKeyVersions.viewPublicKey": None}
    in_the_project = _deployer_bootstrap(project_roles=("roles/cloudkms.publicKeyViewer",))
    assert _deployer_problems(in_the_project) == {"deployer:cloudkms.cryptoKeyVersions.viewPublicKey": None}


def test_a_grant_on_another_key_or_to_another_account_does_not_count():
    other_key = _deployer_bootstrap(key_roles=("roles/cloudkms.publicKeyViewer",), key_name="fmnist-cmek")
    assert _deployer_problems(other_key)["deployer:cloudkms.cryptoKeyVersions.viewPublicKey"] is not None
    other_account = _deployer_bootstrap(key_roles=("roles/cloudkms.publicKeyViewer",))
    for grant in other_account["resource"]["google_kms_crypto_key_iam_member"].values():
        grant["member"] = "serviceAccount:${google_service_account.other.email}"
    assert _deployer_problems(other_account)["deployer:cloudkms.cryptoKeyVersions.viewPublicKey"] is not None


def test_the_shipped_stacks_let_the_deployer_read_the_public_key_on_that_key_only(synth):
    from infra.simulate import simulate_outdir

    for env in ("dev", "prod"):
        grants = synth.stack(f"bootstrap-{env}")["resource"]["google_kms_crypto_key_iam_member"].values()
        viewers = [grant for grant in grants if grant["role"] == "roles/cloudkms.publicKeyViewer"]
        assert len(viewers) == 1 and "accounts_deployer" in viewers[0]["member"]
        assert viewers[0]["crypto_key_id"].startswith("${google_kms_crypto_key.index_signing_key")
    reads = {
        stack: {s.resource: s.problem for s in steps if s.resource.startswith("deployer:")}
        for stack, steps in simulate_outdir(synth.outdir).items()
    }
    assert reads["serving-dev"] == {"deployer:cloudkms.cryptoKeyVersions.viewPublicKey": None}
    assert all(problem is None for stack in reads.values() for problem in stack.values())


def test_the_deployer_s_problem_names_its_roles_the_permission_and_the_data_source_exactly():
    bootstrap = _deployer_bootstrap(project_roles=("roles/run.admin", "roles/bigquery.admin"))
    assert _deployer_problems(bootstrap)["deployer:cloudkms.cryptoKeyVersions.viewPublicKey"] == (
        "the deployer's roles (roles/bigquery.admin, roles/run.admin) lack cloudkms.cryptoKeyVersions.viewPublicKey, "
        "needed for data.google_kms_crypto_key_version.public_key when `cdktf deploy` plans: grant it in the bootstrap "
        "stack, on the one resource it reads"
    )


def test_only_data_sources_are_the_deployer_s_reads_and_an_unknown_one_does_not_end_the_walk():
    document = {
        "resource": {"google_project": {"p": {"name": "p"}}},  # managed: the deployer's admin roles cover it
        "data": {"google_not_in_the_table": {"u": {}}, **SIGNING_KEY_VERSION["data"]},
    }
    steps = simulate_stack("serving-dev", document, bootstrap_document=_deployer_bootstrap(), refresh=False)
    assert [s.resource for s in steps if s.resource.startswith("deployer:")] == [
        "deployer:cloudkms.cryptoKeyVersions.viewPublicKey"
    ]
