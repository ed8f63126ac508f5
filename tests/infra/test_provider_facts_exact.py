"""infra/provider_facts.py value by value: the deletion guards and defaults read from the installed bindings, the
tables of service agents and read permissions, and which metrics Cloud Monitoring registers only at their first
point. A wrong fact here makes the simulated apply/destroy (infra/simulate.py) pass a stack that fails on Google
Cloud, so each is pinned exactly."""

from __future__ import annotations

import pytest

from infra import provider_facts
from infra.provider_facts import (
    agents_relied_on,
    deletion_arguments,
    has_binding,
    is_user_defined_metric,
    quota_project_permission,
    read_permission,
    role_permissions,
    service_agents,
)


def _guards(resource_type: str) -> list[tuple[str, bool]]:
    return [(argument.name, argument.default) for argument in deletion_arguments(resource_type)]


def test_each_deletion_guard_and_its_default_is_read_from_the_resource_s_binding():
    assert _guards("google_workflows_workflow") == [("deletion_protection", True)]  # "Defaults to true."
    assert _guards("google_cloud_run_v2_service") == [("deletion_protection", True)]
    assert _guards("google_bigquery_table") == [("deletion_protection", True)]  # "set to true or unset" only
    assert _guards("google_storage_bucket") == [("force_destroy", False)]
    assert _guards("google_bigquery_dataset") == [("delete_contents_on_destroy", False)]
    # its docstring says nothing of the default: provider 6.x switches the API off unless told not to
    assert _guards("google_project_service") == [("disable_on_destroy", True)]


def test_a_guard_carries_the_provider_s_own_documentation():
    [argument] = deletion_arguments("google_workflows_workflow")
    assert argument.resource_type == "google_workflows_workflow"
    assert argument.doc.startswith(
        "Whether Terraform will be prevented from destroying the workflow. Defaults to true."
    )


def test_types_without_a_binding_have_no_guards():
    assert deletion_arguments("google_made_up_thing") == ()
    assert deletion_arguments("docker_image") == ()  # another provider: no google binding to read
    assert deletion_arguments("google_pubsub_topic") == ()  # a binding without any guard


def test_a_binding_is_found_only_for_an_installed_google_resource_type():
    assert has_binding("google_storage_bucket") is True
    assert has_binding("google_made_up_thing") is False
    assert has_binding("docker_image") is False
    assert has_binding("time_sleep") is False


@pytest.mark.parametrize("package", ["no_such_bindings_package", "string"])  # not installed; a module, no package
def test_bindings_that_are_not_an_installed_package_give_no_binding(monkeypatch, package):
    monkeypatch.setitem(provider_facts.BINDING_PACKAGES, "made_", package)
    assert has_binding("made_thing") is False


def test_the_service_agents_table():
    agents = service_agents()
    assert agents["eventarc"] == {
        "api": "eventarc.googleapis.com",
        "email": "service-PROJECT_NUMBER@gcp-sa-eventarc.iam.gserviceaccount.com",
        "created": "lazily",
        "terraform_source": "google_project_service_identity",
    }
    assert agents["storage"]["terraform_source"] == "data.google_storage_project_service_account"
    assert {"aiplatform", "artifactregistry", "cloudfunctions", "run", "bigquery", "pubsub"} <= set(agents)
    assert agents_relied_on("google_eventarc_trigger") == ("eventarc",)
    assert agents_relied_on("google_pubsub_topic") == ()


def test_the_read_permissions_table():
    assert read_permission("google_pubsub_topic") == (True, "pubsub.topics.get")
    assert read_permission("data.google_kms_crypto_key_version") == (True, "cloudkms.cryptoKeyVersions.viewPublicKey")
    assert read_permission("data.terraform_remote_state") == (True, None)  # the state backend, no Google Cloud read
    assert read_permission("google_made_up_thing") == (False, None)
    assert role_permissions("roles/pubsub.viewer") == frozenset({"pubsub.topics.get"})
    assert role_permissions("roles/serviceusage.serviceUsageConsumer") == frozenset(
        {"serviceusage.services.get", "serviceusage.services.list", "serviceusage.services.use"}
    )
    assert role_permissions("roles/made.up") == frozenset()
    assert quota_project_permission() == "serviceusage.services.use"


@pytest.mark.parametrize(
    ("metric", "user_defined"),
    [
        ("custom.googleapis.com/fmnist/accuracy", True),
        ("external.googleapis.com/prometheus/up", True),
        ("prometheus.googleapis.com/fmnist_requests_total/counter", True),
        ("workload.googleapis.com/fmnist/latency", True),
        ("logging.googleapis.com/user/fmnist-errors", True),
        ("logging.googleapis.com/log_entry_count", False),  # built in
        ("run.googleapis.com/request_count", False),
        ("aiplatform.googleapis.com/prediction/online/error_count", False),
    ],
)
def test_which_metrics_exist_only_after_their_first_point(metric, user_defined):
    assert is_user_defined_metric(metric) is user_defined
