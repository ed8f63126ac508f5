"""The optional Vertex AI Workbench instance: absent by default, and with `infra.workbench.enabled: true` private,
idle-stopping, CMEK-encrypted, run by its own least-privilege account (made by the bootstrap stack), watched by the
budget, removed by destroy where the environment allows it, and passing the policy scan (checkov and the graph
policies) with 0 failed."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter

import pytest

from infra.components.accounts import WORKBENCH_DEPLOYER_ROLES, WORKBENCH_PLANNER_ROLES
from infra.components.workbench import APIS, BUCKET_ACCESS
from infra.naming import Names
from tests.infra.conftest import BOOTSTRAP, ENVIRONMENTS, Synth, _synthesize
from tests.infra.test_inventory import INVENTORY
from tests.infra.test_policies import needs_checkov

WORKBENCH_ON = {
    "FMNIST_INFRA__WORKBENCH__ENABLED": "true",
    "FMNIST_INFRA__WORKBENCH__MACHINE_TYPE": "n2-standard-4",
    "FMNIST_INFRA__WORKBENCH__IDLE_SHUTDOWN_MINUTES": "45",
    "FMNIST_INFRA__WORKBENCH__USERS": "['group:ml-team@example.com']",
}
WORKBENCH_ON_USERS = ("group:ml-team@example.com",)
WORKBENCH_TYPES = (
    "google_workbench_instance",
    "google_compute_network",
    "google_compute_subnetwork",
    "google_compute_firewall",
    "google_compute_router",
    "google_compute_router_nat",
)


def _module_or_per_test(fixture_name: str, config: pytest.Config) -> str:
    """Per test while mutmut maps tests to functions (conftest's `_once_or_per_test` says why), else per module."""
    return "function" if os.environ.get("MUTANT_UNDER_TEST") == "stats" else "module"


@pytest.fixture(scope=_module_or_per_test)
def workbench_synth(tmp_path_factory) -> Synth:
    return _synthesize(tmp_path_factory.mktemp("cdktf-workbench"), environ=WORKBENCH_ON)


def ref(resource_type: str, key: str, attribute: str) -> str:
    return f"${{{resource_type}.{key}.{attribute}}}"


def workbench_account(synth: Synth, env: str) -> str:
    """The key of the Workbench's account in the environment's bootstrap stack (the deployer creates no account)."""
    accounts = synth.resources(BOOTSTRAP[env], "google_service_account")
    return next(key for key, sa in accounts.items() if sa["account_id"].endswith("-workbench"))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_off_by_default_nothing_of_it_is_declared(synth, env):
    stack = synth.stack(env)["resource"]
    assert not set(WORKBENCH_TYPES) & set(stack)
    accounts = synth.resources(BOOTSTRAP[env], "google_service_account").values()
    assert not any(sa["account_id"].endswith("-workbench") for sa in accounts)
    assert not {s["service"] for s in stack["google_project_service"].values()} & set(APIS)
    assert "notebooks.googleapis.com" not in {i["service"] for i in stack["google_project_service_identity"].values()}
    bootstrap_roles = {b["role"] for b in synth.resources(BOOTSTRAP[env], "google_project_iam_member").values()}
    assert not bootstrap_roles & {role for role, _ in (*WORKBENCH_DEPLOYER_ROLES, *WORKBENCH_PLANNER_ROLES)}


@pytest.mark.parametrize("stack", [*ENVIRONMENTS, *BOOTSTRAP.values(), *(f"serving-{env}" for env in ENVIRONMENTS)])
def test_on_the_inventory_grows_by_exactly_the_workbench(workbench_synth, stack):
    added = {
        "google_compute_firewall": 1,
        "google_compute_network": 1,
        "google_compute_router": 1,
        "google_compute_router_nat": 1,
        "google_compute_subnetwork": 1,
        "google_workbench_instance": 1,
        "google_kms_crypto_key_iam_member": 2,  # the Compute Engine and Notebooks agents
        "google_project_service": len(APIS),
        "google_project_service_identity": 1,  # the Notebooks agent
        "google_storage_bucket_iam_member": len(BUCKET_ACCESS),
        "time_sleep": 1,  # after both agents' key grants
    }
    if stack.startswith("serving-"):  # the invoker grant sits with the service (issue 23, defect 7)
        added = {"google_cloud_run_v2_service_iam_member": 1}
    if stack in BOOTSTRAP.values():
        added = {
            "google_project_iam_member": len(WORKBENCH_DEPLOYER_ROLES) + len(WORKBENCH_PLANNER_ROLES),
            "google_service_account": 1,
            "google_service_account_iam_member": 1 + len(WORKBENCH_ON_USERS),  # the deployer and the users act as it
        }
    counts = Counter({t: len(r) for t, r in workbench_synth.stack(stack)["resource"].items()})
    assert dict(counts) == dict(Counter(INVENTORY[stack]) + Counter(added))


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
def test_on_both_disks_use_the_stacks_key_and_its_agents_may_use_it(workbench_synth, env, settings_by_env):
    instance_key, instance = next(iter(workbench_synth.resources(env, "google_workbench_instance").items()))
    setup = instance["gce_setup"]
    keys = workbench_synth.resources(BOOTSTRAP[env], "google_kms_crypto_key")  # the bootstrap stack's keys
    (key_name,) = [name for name, k in keys.items() if k["purpose"] == "ENCRYPT_DECRYPT"]  # CMEK, not index signing
    key = Names.of(settings_by_env[env]).kms_key_name
    assert workbench_synth.resources(BOOTSTRAP[env], "google_kms_crypto_key")[key_name]["name"] == key.split("/")[-1]
    for disk in (setup["boot_disk"], setup["data_disks"]):
        assert (disk["disk_encryption"], disk["kms_key"]) == ("CMEK", key)
    grants = {
        f"google_kms_crypto_key_iam_member.{k}": g
        for k, g in workbench_synth.resources(env, "google_kms_crypto_key_iam_member").items()
        if g["crypto_key_id"] == key and g["role"] == "roles/cloudkms.cryptoKeyEncrypterDecrypter"
    }
    # The Notebooks agent is created in code (Google makes it lazily); the Compute Engine agent comes with its API.
    (notebooks_identity,) = [
        k
        for k, i in workbench_synth.resources(env, "google_project_service_identity").items()
        if i["service"] == "notebooks.googleapis.com"
    ]
    notebooks = f"serviceAccount:{ref('google_project_service_identity', notebooks_identity, 'email')}"
    compute = "serviceAccount:service-${data.google_project.project.number}@compute-system.iam.gserviceaccount.com"
    by_member = {g["member"]: address for address, g in grants.items()}
    assert {compute, notebooks} <= set(by_member)
    services = workbench_synth.resources(env, "google_project_service")
    compute_api = next(f"google_project_service.{k}" for k, s in services.items() if s["service"] == APIS[0])
    assert compute_api in grants[by_member[compute]]["depends_on"]
    assert f"google_project_service_identity.{notebooks_identity}" in grants[by_member[notebooks]]["depends_on"]
    # and the instance is created only once both may use the key: after a wait that follows both grants
    waits = workbench_synth.resources(env, "time_sleep")
    [wait] = [k for k in waits if f"time_sleep.{k}" in instance["depends_on"]]
    assert {by_member[compute], by_member[notebooks]} <= set(waits[wait]["depends_on"]), instance_key


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_on_its_own_account_holds_only_what_the_notebooks_need(workbench_synth, env, settings_by_env):
    names = Names.of(settings_by_env[env])
    account = workbench_account(workbench_synth, env)
    assert workbench_synth.resources(BOOTSTRAP[env], "google_service_account")[account]["account_id"] == (
        names.service_account_id("workbench")
    )
    assert not workbench_synth.resources(env, "google_service_account"), "the deployer creates no account"
    email = names.service_account_email("workbench")
    member = f"serviceAccount:{email}"
    instance = workbench_synth.one(env, "google_workbench_instance")
    assert instance["gce_setup"]["service_accounts"] == [{"email": email}]

    for stack in (env, BOOTSTRAP[env]):
        project_roles = workbench_synth.resources(stack, "google_project_iam_member").values()
        assert not [b for b in project_roles if "workbench" in b["member"]], "no project-level role for the workbench"
    buckets = workbench_synth.resources(env, "google_storage_bucket")
    bucket_name = {ref("google_storage_bucket", k, "name"): b["name"] for k, b in buckets.items()}
    grants = {
        (bucket_name[b["bucket"]], b["role"])
        for b in workbench_synth.resources(env, "google_storage_bucket_iam_member").values()
        if b["member"] == member
    }
    assert grants == {(names.bucket(kind), role) for kind, role in BUCKET_ACCESS}
    invokers = workbench_synth.resources(f"serving-{env}", "google_cloud_run_v2_service_iam_member").values()
    assert [b["role"] for b in invokers if b["member"] == member] == ["roles/run.invoker"]

    # who may act as it: granted by the bootstrap stack (the deployer holds no IAM admin on accounts)
    assert not [
        b
        for b in workbench_synth.resources(env, "google_service_account_iam_member").values()
        if "workbench" in b["service_account_id"]
    ]
    bootstrap_accounts = workbench_synth.resources(BOOTSTRAP[env], "google_service_account")
    acting = {
        (b["member"], b["role"])
        for b in workbench_synth.resources(BOOTSTRAP[env], "google_service_account_iam_member").values()
        if b["service_account_id"] == ref("google_service_account", account, "name")
    }
    deployer = next(
        k for k, sa in bootstrap_accounts.items() if sa["account_id"] == names.service_account_id("deployer")
    )
    assert acting == {
        (f"serviceAccount:{ref('google_service_account', deployer, 'email')}", "roles/iam.serviceAccountUser"),
        ("group:ml-team@example.com", "roles/iam.serviceAccountUser"),
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_on_the_workbench_may_invoke_the_service_and_only_that(workbench_synth, env, settings_by_env):
    """infra/serving_stack.py's grant, whole: on this service, in its region, run.invoker for the Workbench's
    account, at a Terraform address of its own (a renamed grant is revoked and granted again)."""
    names, stack = Names.of(settings_by_env[env]), f"serving-{env}"
    grants = {
        path: {k: v for k, v in body.items() if k != "//"}
        for path, (kind, _, body) in workbench_synth.by_path(stack).items()
        if kind == "google_cloud_run_v2_service_iam_member"
    }
    assert grants.pop("workbench-invoker") == {
        "name": workbench_synth.ref(stack, "serving/service", "name"),
        "location": names.region,
        "role": "roles/run.invoker",
        "member": f"serviceAccount:{names.service_account_email('workbench')}",
    }
    assert list(grants) == ["ramp/moves-the-service"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_on_each_user_acts_as_its_account_at_an_address_of_its_own(workbench_synth, env):
    """infra/components/accounts.py's grant to the configured users, whole, at `workbench_user_<n>` counted from 1
    (a renumbered grant is revoked and granted again while someone works in JupyterLab)."""
    stack = BOOTSTRAP[env]
    users = {
        path: {k: v for k, v in body.items() if k != "//"}
        for path, (_, _, body) in workbench_synth.by_path(stack).items()
        if path.startswith("accounts/workbench_user")
    }
    assert users == {
        "accounts/workbench_user_1": {
            "service_account_id": workbench_synth.ref(stack, "accounts/workbench", "name"),
            "role": "roles/iam.serviceAccountUser",
            "member": "group:ml-team@example.com",
        }
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_on_the_deployer_may_create_it_and_the_planner_read_it(workbench_synth, env):
    bindings = workbench_synth.resources(BOOTSTRAP[env], "google_project_iam_member").values()
    granted = {("deployer" if "deployer" in b["member"] else "planner", b["role"]) for b in bindings}
    assert {("deployer", role) for role, _ in WORKBENCH_DEPLOYER_ROLES} <= granted
    assert {("planner", role) for role, _ in WORKBENCH_PLANNER_ROLES} <= granted
    assert all(len(why) > 20 for _, why in (*WORKBENCH_DEPLOYER_ROLES, *WORKBENCH_PLANNER_ROLES))
    assert all(role.endswith(("Viewer", ".viewer")) for role, _ in WORKBENCH_PLANNER_ROLES), "the planner only reads"


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


@pytest.mark.slow
@needs_checkov
def test_the_scan_fails_a_workbench_with_a_public_ip_or_google_managed_disks(workbench_synth, tmp_path):
    from infra.scan import scan

    outdir = tmp_path / "out"  # the dev stack alone: checkov's time grows with the stacks, and the others pass
    shutil.copytree(workbench_synth.outdir / "stacks" / "dev", outdir / "stacks" / "dev")
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


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_on_the_graph_policies_pass_and_the_instance_needs_both_agents_grants(workbench_synth, env):
    from infra.graph_policies import evaluate_stack

    def problems(document: dict) -> dict[str, str | None]:
        return {r.resource: r.problem for r in evaluate_stack(env, document) if r.check_id == "CKV2_FMNIST_G3"}

    document = workbench_synth.stack(env)
    (key,) = document["resource"]["google_workbench_instance"]
    address = f"google_workbench_instance.{key}"
    assert all(problem is None for problem in problems(document).values())
    assert address in problems(document)

    for wait in document["resource"]["time_sleep"].values():  # the instance waits for both grants: drop one
        wait["depends_on"] = [d for d in wait["depends_on"] if "compute_agent" not in d]
    assert "the compute service agent's key grant" in problems(document)[address]
    identities = document["resource"]["google_project_service_identity"]
    for name in [k for k, i in identities.items() if i["service"] == "notebooks.googleapis.com"]:
        del identities[name]
    assert "nothing in the stack creates the notebooks service agent" in problems(document)[address]


def test_on_the_simulated_plan_apply_and_destroy_pass(workbench_synth):
    from tests.infra.test_simulate import _failing

    assert _failing(workbench_synth.outdir) == []


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_on_every_resource_under_the_workbench_is_exact(workbench_synth, env, settings_by_env):
    """infra/components/workbench.py whole, at its construct paths (a renamed construct is a new address: plan
    destroys the instance and its data disk): each value a wrong one would break, e.g. a public IP, Google-managed
    disks, a write role on the models bucket, flow logs or NAT logs off, an instance made before its key grants."""
    names, stack = Names.of(settings_by_env[env]), env
    declared = {
        path.removeprefix("workbench/"): (kind, {k: v for k, v in body.items() if k != "//"})
        for path, (kind, _, body) in workbench_synth.by_path(stack).items()
        if path.startswith("workbench/")
    }

    def at(path: str, attribute: str) -> str:
        return workbench_synth.ref(stack, path, attribute)

    def address(path: str) -> str:
        return workbench_synth.by_path(stack)[path][1]

    prefix, key = f"fmnist-{env}-workbench", names.kms_key_name
    account = names.service_account_email("workbench")
    api = {"disable_dependent_services": False, "disable_on_destroy": False, "project": names.project}
    cmek = {"disk_encryption": "CMEK", "disk_type": "PD_BALANCED", "kms_key": key}
    encrypter = {"crypto_key_id": key, "role": "roles/cloudkms.cryptoKeyEncrypterDecrypter"}
    bucket_grants = {
        f"{kind}-{role.split('.')[-1]}": (
            "google_storage_bucket_iam_member",
            {"bucket": at(f"storage/{kind}", "name"), "member": f"serviceAccount:{account}", "role": role},
        )
        for kind, role in [
            ("datasets", "roles/storage.objectViewer"),
            ("models", "roles/storage.objectViewer"),
            ("dev", "roles/storage.objectAdmin"),
        ]
    }
    assert declared == {
        "compute": ("google_project_service", {**api, "service": "compute.googleapis.com"}),
        "notebooks": ("google_project_service", {**api, "service": "notebooks.googleapis.com"}),
        **bucket_grants,
        "notebooks_agent": (
            "google_project_service_identity",
            {
                "depends_on": [address("workbench/notebooks")],
                "project": names.project,
                "provider": "google-beta",
                "service": "notebooks.googleapis.com",
            },
        ),
        "compute_agent_encrypter": (
            "google_kms_crypto_key_iam_member",
            {
                **encrypter,
                "member": "serviceAccount:service-${data.google_project.project.number}"
                "@compute-system.iam.gserviceaccount.com",
                "depends_on": [address("apis/cloudkms"), address("workbench/compute")],
            },
        ),
        "notebooks_agent_encrypter": (
            "google_kms_crypto_key_iam_member",
            {
                **encrypter,
                "member": f"serviceAccount:{at('workbench/notebooks_agent', 'email')}",
                "depends_on": [address("apis/cloudkms"), address("workbench/notebooks_agent")],
            },
        ),
        "key-grants-propagated": (
            "time_sleep",
            {
                "create_duration": "60s",
                "provider": "time",
                "depends_on": [
                    address("workbench/compute_agent_encrypter"),
                    address("workbench/notebooks_agent_encrypter"),
                ],
            },
        ),
        "network": (
            "google_compute_network",
            {
                "name": prefix,
                "auto_create_subnetworks": False,
                "routing_mode": "REGIONAL",
                "depends_on": [address("workbench/compute")],
            },
        ),
        "subnet": (
            "google_compute_subnetwork",
            {
                "name": prefix,
                "network": at("workbench/network", "id"),
                "region": names.region,
                "ip_cidr_range": "10.20.0.0/24",
                "private_ip_google_access": True,
                "log_config": {
                    "aggregation_interval": "INTERVAL_10_MIN",
                    "flow_sampling": 0.5,
                    "metadata": "INCLUDE_ALL_METADATA",
                },
            },
        ),
        "deny-ingress": (
            "google_compute_firewall",
            {
                "name": f"{prefix}-deny-ingress",
                "network": at("workbench/network", "id"),
                "direction": "INGRESS",
                "priority": 65534,
                "deny": [{"protocol": "all"}],
                "source_ranges": ["0.0.0.0/0"],
                "log_config": {"metadata": "INCLUDE_ALL_METADATA"},
            },
        ),
        "router": (
            "google_compute_router",
            {"name": prefix, "network": at("workbench/network", "id"), "region": names.region},
        ),
        "nat": (
            "google_compute_router_nat",
            {
                "name": prefix,
                "router": at("workbench/router", "name"),
                "region": names.region,
                "nat_ip_allocate_option": "AUTO_ONLY",
                "source_subnetwork_ip_ranges_to_nat": "LIST_OF_SUBNETWORKS",
                "subnetwork": [{"name": at("workbench/subnet", "id"), "source_ip_ranges_to_nat": ["ALL_IP_RANGES"]}],
                "log_config": {"enable": True, "filter": "ERRORS_ONLY"},
            },
        ),
        "instance": (
            "google_workbench_instance",
            {
                "name": prefix,
                "location": f"{names.region}-b",
                "labels": {"app": "fmnist-mlops", "env": env, "managed_by": "cdktf"},
                "gce_setup": {
                    "machine_type": "n2-standard-4",
                    "disable_public_ip": True,
                    "service_accounts": [{"email": account}],
                    "network_interfaces": [
                        {"network": at("workbench/network", "id"), "subnet": at("workbench/subnet", "id")}
                    ],
                    "boot_disk": cmek,
                    "data_disks": {**cmek, "disk_size_gb": "100"},
                    "shielded_instance_config": {
                        "enable_integrity_monitoring": True,
                        "enable_secure_boot": True,
                        "enable_vtpm": True,
                    },
                    "metadata": {
                        "enable-guest-attributes": "true",
                        "idle-timeout-seconds": "2700",
                        "notebook-disable-root": "true",
                    },
                },
                "lifecycle": {"prevent_destroy": env == "prod"},
                "depends_on": [address("workbench/notebooks"), address("workbench/key-grants-propagated")],
            },
        ),
    }
