"""The optional Vertex AI Workbench instance: absent by default, and with `infra.workbench.enabled: true` private,
idle-stopping, CMEK-encrypted, run by its own least-privilege account, watched by the budget, removed by destroy
where the environment allows it, and passing the policy scan (checkov) with 0 failed."""

from __future__ import annotations

import json
import shutil

import pytest

from infra.components.workbench import APIS, BUCKET_ACCESS
from infra.naming import Names
from tests.infra.conftest import ENVIRONMENTS, Synth, _synthesize
from tests.infra.test_policies import needs_checkov

WORKBENCH_ON = {
    "FMNIST_INFRA__WORKBENCH__ENABLED": "true",
    "FMNIST_INFRA__WORKBENCH__MACHINE_TYPE": "n2-standard-4",
    "FMNIST_INFRA__WORKBENCH__IDLE_SHUTDOWN_MINUTES": "45",
    "FMNIST_INFRA__WORKBENCH__USERS": "['group:ml-team@example.com']",
}
WORKBENCH_TYPES = (
    "google_workbench_instance",
    "google_compute_network",
    "google_compute_subnetwork",
    "google_compute_firewall",
    "google_compute_router",
    "google_compute_router_nat",
)


@pytest.fixture(scope="module")
def workbench_synth(tmp_path_factory) -> Synth:
    return _synthesize(tmp_path_factory.mktemp("cdktf-workbench"), environ=WORKBENCH_ON)


def ref(resource_type: str, key: str, attribute: str) -> str:
    return f"${{{resource_type}.{key}.{attribute}}}"


def workbench_account(synth: Synth, env: str) -> str:
    accounts = synth.resources(env, "google_service_account")
    return next(key for key, sa in accounts.items() if sa["account_id"].endswith("-workbench"))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_off_by_default_nothing_of_it_is_declared(synth, env):
    stack = synth.stack(env)["resource"]
    assert not set(WORKBENCH_TYPES) & set(stack)
    assert not any(sa["account_id"].endswith("-workbench") for sa in stack["google_service_account"].values())
    assert not {s["service"] for s in stack["google_project_service"].values()} & set(APIS)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_on_one_private_instance_with_the_configured_machine_and_idle_shutdown(workbench_synth, env):
    instance = workbench_synth.one(env, "google_workbench_instance")
    setup = instance["gce_setup"]
    assert instance["name"] == f"fmnist-{env}-workbench" and instance["location"] == "europe-west4-b"
    assert setup["machine_type"] == "n2-standard-4"
    assert setup["metadata"]["idle-timeout-seconds"] == str(45 * 60)
    assert setup["metadata"]["notebook-disable-root"] == "true"
    assert setup["disable_public_ip"] is True
    assert "instance_owners" not in instance  # access is by acting as its account (infra.workbench.users)
    assert not instance.get("disable_proxy_access")  # JupyterLab through the Workbench proxy, not an IP
    assert setup["shielded_instance_config"] == {
        "enable_integrity_monitoring": True,
        "enable_secure_boot": True,
        "enable_vtpm": True,
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_on_its_subnet_reaches_google_privately_and_the_internet_only_through_nat(workbench_synth, env):
    (subnet_key, subnet), *others = workbench_synth.resources(env, "google_compute_subnetwork").items()
    assert not others
    assert subnet["private_ip_google_access"] is True and subnet["log_config"]["flow_sampling"] > 0
    interface = workbench_synth.one(env, "google_workbench_instance")["gce_setup"]["network_interfaces"]
    assert interface == [{"network": subnet["network"], "subnet": ref("google_compute_subnetwork", subnet_key, "id")}]
    nat = workbench_synth.one(env, "google_compute_router_nat")
    assert nat["subnetwork"][0]["name"] == ref("google_compute_subnetwork", subnet_key, "id")
    firewall = workbench_synth.one(env, "google_compute_firewall")
    assert firewall["direction"] == "INGRESS" and firewall["deny"] == [{"protocol": "all"}]
    assert "allow" not in firewall and firewall["log_config"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_on_both_disks_use_the_stacks_key_and_its_agents_may_use_it(workbench_synth, env):
    setup = workbench_synth.one(env, "google_workbench_instance")["gce_setup"]
    (key_name,) = workbench_synth.resources(env, "google_kms_crypto_key")
    key = ref("google_kms_crypto_key", key_name, "id")
    for disk in (setup["boot_disk"], setup["data_disks"]):
        assert (disk["disk_encryption"], disk["kms_key"]) == ("CMEK", key)
    grants = {
        g["member"].rsplit("@", 1)[-1]
        for g in workbench_synth.resources(env, "google_kms_crypto_key_iam_member").values()
        if g["crypto_key_id"] == key
    }
    assert {"compute-system.iam.gserviceaccount.com", "gcp-sa-notebooks.iam.gserviceaccount.com"} <= grants


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_on_its_own_account_holds_only_what_the_notebooks_need(workbench_synth, env, settings_by_env):
    account = workbench_account(workbench_synth, env)
    member = f"serviceAccount:{ref('google_service_account', account, 'email')}"
    instance = workbench_synth.one(env, "google_workbench_instance")
    assert instance["gce_setup"]["service_accounts"] == [{"email": ref("google_service_account", account, "email")}]

    project_roles = workbench_synth.resources(env, "google_project_iam_member").values()
    assert not [b for b in project_roles if b["member"] == member], "no project-level role for the workbench"
    names = Names.of(settings_by_env[env])
    buckets = workbench_synth.resources(env, "google_storage_bucket")
    bucket_name = {ref("google_storage_bucket", k, "name"): b["name"] for k, b in buckets.items()}
    grants = {
        (bucket_name[b["bucket"]], b["role"])
        for b in workbench_synth.resources(env, "google_storage_bucket_iam_member").values()
        if b["member"] == member
    }
    assert grants == {(names.bucket(kind), role) for kind, role in BUCKET_ACCESS}
    invokers = workbench_synth.resources(env, "google_cloud_run_v2_service_iam_member").values()
    assert [b["role"] for b in invokers if b["member"] == member] == ["roles/run.invoker"]

    acting = {
        b["member"]
        for b in workbench_synth.resources(env, "google_service_account_iam_member").values()
        if b["service_account_id"] == ref("google_service_account", account, "name")
    }
    deployer = next(k for k, sa in workbench_synth.resources(env, "google_service_account").items() if "deployer" in k)
    assert acting == {f"serviceAccount:{ref('google_service_account', deployer, 'email')}", "group:ml-team@example.com"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_on_the_budget_watches_the_apis_it_enables(workbench_synth, env):
    services = workbench_synth.resources(env, "google_project_service")
    mine = {k for k, s in services.items() if s["service"] in APIS}
    assert {services[k]["service"] for k in mine} == set(APIS)
    assert all(services[k]["disable_on_destroy"] is False for k in mine)  # like every API of the stack
    budget = workbench_synth.one(env, "google_billing_budget")
    assert {f"google_project_service.{k}" for k in mine} <= set(budget["depends_on"])


def test_on_destroy_removes_it_in_dev_and_is_refused_in_prod(workbench_synth, settings_by_env):
    assert settings_by_env["dev"].infra.deletion_protection is False
    assert settings_by_env["prod"].infra.deletion_protection is True
    assert workbench_synth.one("dev", "google_workbench_instance")["lifecycle"] == {"prevent_destroy": False}
    assert workbench_synth.one("prod", "google_workbench_instance")["lifecycle"] == {"prevent_destroy": True}
    for resource_type in WORKBENCH_TYPES[1:]:  # the network around it holds no data: never protected
        assert not workbench_synth.one("prod", resource_type).get("lifecycle", {}).get("prevent_destroy")


@needs_checkov
def test_on_the_policy_scan_passes_with_0_failed_and_checks_the_instance(workbench_synth, tmp_path):
    from infra.scan import scan

    result = scan(workbench_synth.outdir, tmp_path / "junit.xml")
    assert result.status == 0, [(f.stack, f.check_id, f.resource) for f in result.failed]
    checked = {(f.stack, f.check_id) for f in result.passed if "workbench" in f.resource}
    for env in ENVIRONMENTS:  # CMEK disks, private instance, flow logs, Private Google Access, a firewall
        assert {(env, c) for c in ("CKV2_GCP_27", "CKV2_GCP_28", "CKV_GCP_26", "CKV_GCP_74", "CKV2_GCP_18")} <= checked


@needs_checkov
def test_the_scan_fails_a_workbench_with_a_public_ip_or_google_managed_disks(workbench_synth, tmp_path):
    from infra.scan import scan

    outdir = tmp_path / "out"
    shutil.copytree(workbench_synth.outdir, outdir)
    shutil.rmtree(outdir / "stacks" / "prod")
    path = outdir / "stacks" / "dev" / "cdk.tf.json"
    stack = json.loads(path.read_text())
    setup = next(iter(stack["resource"]["google_workbench_instance"].values()))["gce_setup"]
    setup["disable_public_ip"] = False
    setup["boot_disk"] = {"disk_encryption": "GMEK"}
    setup["data_disks"] = {"disk_encryption": "GMEK"}
    path.write_text(json.dumps(stack))
    result = scan(outdir, tmp_path / "junit.xml")
    failed = {f.check_id for f in result.failed if "workbench" in f.resource}
    assert {"CKV2_GCP_27", "CKV2_GCP_28"} <= failed
