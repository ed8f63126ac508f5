"""The bootstrap stack's accounts and the rights of the two that run Terraform (infra/components/accounts.py), the
state bucket (state.py), the service agents (service_agents.py) and the providers (providers.py), pinned value by
value on the synthesized stacks: a dropped condition on projectIamAdmin lets the deployer grant itself anything, a
planner with a writer role lets pull-request code change the project, a wrong agent's email breaks every CMEK grant,
and a quota project on the default provider fails every plan of a fresh project."""

from __future__ import annotations

import pytest

from infra.naming import Names
from tests.infra.conftest import BOOTSTRAP, ENVIRONMENTS

ACCOUNTS = {  # construct id -> (account id suffix, description)
    "checks": ("ci-checks", "Cloud Build on pull requests: tests, synth and policy scan; can write build logs only"),
    "deployer": ("deployer", "Cloud Build on deploy pushes: builds and pushes images, runs cdktf deploy"),
    "pipelines": (
        "pipelines",
        "Vertex AI Pipelines runs of the lifecycle: the steps' buckets, features, Vertex AI",
    ),
    "planner": (
        "planner",
        "Cloud Build on pull requests: cdktf diff with read-only access and the state reader role",
    ),
    "promoter": ("promoter", "the promotion jobs: runs the gate, alone writes and signs the registry index"),
    "service": (
        "service",
        "Cloud Run prediction service: reads the models bucket (request logs go through stdout)",
    ),
    "starter": (
        "pl-starter",
        "starts lifecycle pipeline runs (schedule, new data, drift) as the pipelines account",
    ),
    "trainer": ("trainer", "Vertex AI custom jobs: reads datasets, writes models, runs and TensorBoard logs"),
}
DEPLOYER = [
    "roles/aiplatform.admin",
    "roles/artifactregistry.admin",
    "roles/bigquery.admin",
    "roles/cloudbuild.builds.editor",
    "roles/cloudfunctions.admin",
    "roles/cloudscheduler.admin",
    "roles/eventarc.admin",
    "roles/logging.logWriter",
    "roles/monitoring.admin",
    "roles/pubsub.admin",
    "roles/resourcemanager.projectIamAdmin",
    "roles/run.admin",
    "roles/serviceusage.serviceUsageAdmin",
    "roles/storage.admin",
]
PLANNER = [
    "roles/aiplatform.viewer",
    "roles/artifactregistry.reader",
    "roles/bigquery.metadataViewer",
    "roles/cloudbuild.builds.viewer",
    "roles/cloudfunctions.viewer",
    "roles/cloudkms.publicKeyViewer",
    "roles/cloudkms.viewer",
    "roles/cloudscheduler.viewer",
    "roles/eventarc.viewer",
    "roles/iam.securityReviewer",
    "roles/iam.serviceAccountViewer",
    "roles/logging.logWriter",
    "roles/monitoring.viewer",
    "roles/pubsub.viewer",
    "roles/run.viewer",
    "roles/serviceusage.serviceUsageConsumer",
    "roles/storage.bucketViewer",
]
GRANT_LIMIT = {
    "title": "grants only the stack's roles",
    "description": "the roles infra/components/identity.py grants at project level, and nothing else",
    "expression": "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly("
    '["roles/aiplatform.user", "roles/bigquery.jobUser", "roles/eventarc.eventReceiver", "roles/logging.logWriter", '
    '"roles/monitoring.metricWriter", "roles/pubsub.publisher"])',
}
TOP_LEVEL = {"//", "terraform", "provider", "resource", "data", "output", "variable"}
LABELS = {"app": "fmnist-mlops", "managed_by": "cdktf"}


def without_meta(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "//"}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_stack_s_accounts_are_exact(synth, env, settings_by_env):
    names, stack = Names.of(settings_by_env[env]), BOOTSTRAP[env]
    accounts = {
        path.removeprefix("accounts/"): without_meta(body)
        for path, (kind, _, body) in synth.by_path(stack).items()
        if kind == "google_service_account"
    }
    assert accounts == {
        role: {
            "account_id": f"{names.project}-{suffix}",
            "display_name": f"fmnist {role} ({env})",
            "description": description,
            "project": names.project,
            "depends_on": [synth.by_path(stack)["apis/iam"][1]],
        }
        for role, (suffix, description) in ACCOUNTS.items()
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_deployer_and_planner_hold_exactly_their_roles_and_only_iam_admin_is_conditioned(synth, env, settings_by_env):
    names, stack = Names.of(settings_by_env[env]), BOOTSTRAP[env]
    bindings = {
        path: without_meta(body)
        for path, (kind, _, body) in synth.by_path(stack).items()
        if kind == "google_project_iam_member" and path.startswith("accounts/")
    }
    wait = [synth.by_path(stack)["apis/cloudresourcemanager"][1]]
    expected = {}
    for account, roles in (("deployer", DEPLOYER), ("planner", PLANNER)):
        for role in roles:
            body = {
                "project": names.project,
                "role": role,
                "member": f"serviceAccount:{synth.ref(stack, f'accounts/{account}', 'email')}",
                "depends_on": wait,
            }
            if role == "roles/resourcemanager.projectIamAdmin":
                body["condition"] = GRANT_LIMIT
            expected[f"accounts/{account}_{role.split('/')[1].replace('.', '_')}"] = body
    assert bindings == expected


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_who_may_act_as_which_account_is_exact(synth, env):
    stack = BOOTSTRAP[env]
    grants = {
        path.removeprefix("accounts/"): without_meta(body)
        for path, (kind, _, body) in synth.by_path(stack).items()
        if kind == "google_service_account_iam_member"
    }
    pairs = [("deployer", on) for on in ACCOUNTS] + [
        ("pipelines", "service"),
        ("pipelines", "trainer"),
        ("starter", "pipelines"),
    ]
    assert grants == {
        f"{who}_acts_as_{on}": {
            "service_account_id": synth.ref(stack, f"accounts/{on}", "name"),
            "role": "roles/iam.serviceAccountUser",
            "member": f"serviceAccount:{synth.ref(stack, f'accounts/{who}', 'email')}",
        }
        for who, on in pairs
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_only_the_deployer_manages_costs_on_the_billing_account(synth, env, settings_by_env):
    stack = BOOTSTRAP[env]
    grants = {
        path: without_meta(body)
        for path, (kind, _, body) in synth.by_path(stack).items()
        if kind == "google_billing_account_iam_member"
    }
    assert grants == {
        "accounts/deployer_billing": {
            "billing_account_id": settings_by_env[env].infra.billing_account,
            "role": "roles/billing.costsManager",
            "member": f"serviceAccount:{synth.ref(stack, 'accounts/deployer', 'email')}",
            "depends_on": [synth.by_path(stack)["apis/cloudbilling"][1]],
        }
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_state_bucket_and_its_two_readers_are_exact(synth, env, settings_by_env):
    names, stack = Names.of(settings_by_env[env]), BOOTSTRAP[env]
    found = {p: without_meta(b) for p, (_, _, b) in synth.by_path(stack).items() if p.startswith("state/")}
    dev = env == "dev"
    assert found.pop("state/bucket") == {
        "name": f"fmnist-mlops-{env}-tfstate",
        "location": names.region,
        "uniform_bucket_level_access": True,
        "public_access_prevention": "enforced",
        "force_destroy": dev,
        "labels": {**LABELS, "env": env},
        "versioning": {"enabled": True},
        "lifecycle_rule": [
            {"action": {"type": "Delete"}, "condition": {"days_since_noncurrent_time": 90, "with_state": "ARCHIVED"}}
        ],
        "lifecycle": {"prevent_destroy": not dev},
        "depends_on": [synth.by_path(stack)["apis/storage"][1]],
    }
    assert found == {
        f"state/{account}-{role.split('.')[-1]}": {
            "bucket": synth.ref(stack, "state/bucket", "name"),
            "role": role,
            "member": f"serviceAccount:{synth.ref(stack, f'accounts/{account}', 'email')}",
        }
        for account, role in (("deployer", "roles/storage.objectAdmin"), ("planner", "roles/storage.objectViewer"))
    }


AGENT_APIS = {
    "aiplatform": "aiplatform.googleapis.com",
    "artifactregistry": "artifactregistry.googleapis.com",
    "cloudfunctions": "cloudfunctions.googleapis.com",
    "pubsub": "pubsub.googleapis.com",
    "run": "run.googleapis.com",
}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_service_agents_are_created_through_google_beta_and_their_emails_get_the_key(synth, env, settings_by_env):
    names, paths = Names.of(settings_by_env[env]), synth.by_path(env)
    agents = {p: (kind, without_meta(b)) for p, (kind, _, b) in paths.items() if p.startswith("agents/")}
    assert agents == {
        **{
            f"agents/{agent}": (
                "google_project_service_identity",
                {
                    "project": names.project,
                    "service": api,
                    "provider": "google-beta",
                    "depends_on": [paths[f"apis/{agent}"][1]],
                },
            )
            for agent, api in AGENT_APIS.items()
        },
        "agents/storage": ("google_storage_project_service_account", {"depends_on": [paths["apis/storage"][1]]}),
        "agents/bigquery": ("google_bigquery_default_service_account", {"depends_on": [paths["apis/bigquery"][1]]}),
    }
    # each agent's member, as the key's grants name it: the identity's and BigQuery's `email`, Storage's
    # `email_address`
    attribute = {**dict.fromkeys(AGENT_APIS, "email"), "bigquery": "email", "storage": "email_address"}
    members = {
        agent: synth.body(env, f"kms/{agent}_agent_encrypter")["member"]
        for agent in [*AGENT_APIS, "storage", "bigquery"]
    }
    assert members == {
        agent: f"serviceAccount:{synth.ref(env, f'agents/{agent}', attr)}" for agent, attr in attribute.items()
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_stack_declares_its_providers_exactly(synth, env, settings_by_env):
    names = Names.of(settings_by_env[env])
    google = {"project": names.project, "region": names.region, "default_labels": {**LABELS, "env": env}}
    pinned_google = {"source": "hashicorp/google", "version": "6.50.0"}
    for stack in (BOOTSTRAP[env], f"serving-{env}"):
        assert set(synth.stack(stack)) <= TOP_LEVEL, f"{stack}: a mangled override adds a block of its own"
        assert synth.stack(stack)["provider"] == {"google": [google]}, stack
        assert synth.stack(stack)["terraform"]["required_providers"] == {"google": pinned_google}, stack
    main = synth.stack(env)
    assert main["provider"]["google"] == [
        google,
        {
            "alias": "billing",
            "project": names.project,
            "region": names.region,
            "user_project_override": True,
            "billing_project": names.project,
        },
    ]
    assert main["provider"]["google-beta"] == [{"project": names.project, "region": names.region}]
    required = main["terraform"]["required_providers"]
    assert {k: required[k] for k in ("google", "google-beta")} == {
        "google": pinned_google,
        "google-beta": {"source": "hashicorp/google-beta", "version": "6.50.0"},
    }
    assert synth.stack(f"images-{env}")["provider"] == {
        "docker": [{"registry_auth": [{"address": f"{names.region}-docker.pkg.dev", "username": "oauth2accesstoken"}]}]
    }


@pytest.mark.parametrize(
    "environ",
    [{"FMNIST_INFRA__GRANT_BILLING_ROLES": "false"}, {"FMNIST_INFRA__BILLING_ACCOUNT": "null"}],
    ids=["grant-off", "no-billing-account"],
)
def test_no_billing_grant_without_both_the_switch_and_an_account(tmp_path, environ):
    """The billing grant needs a billing account administrator: off when either is missing (dev's bootstrap
    stack alone, in-process: a stack of its own costs a second of the full synth's five)."""
    import json

    from cdktf import App

    from infra.bootstrap import BootstrapStack
    from settings import load_config

    app = App(outdir=str(tmp_path))
    BootstrapStack(app, load_config("dev", environ=environ))
    app.synth()
    stack = json.loads((tmp_path / "stacks" / BOOTSTRAP["dev"] / "cdk.tf.json").read_text())
    assert "google_billing_account_iam_member" not in stack["resource"]
    assert len(stack["resource"]["google_project_iam_member"]) == len(DEPLOYER) + len(PLANNER) + 1  # + the starter


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_two_accepted_findings_carry_their_check_and_reason(synth, env):
    """The notes infra/checkov_baseline.py turns into the scan's baseline: a wrong check id fails the scan or
    accepts another finding; the reason is what a reviewer reads."""
    notes = {
        path: body["//"]["checkov_skip"]
        for path, (_, _, body) in synth.by_path(BOOTSTRAP[env]).items()
        if path.startswith(("accounts/", "state/")) and "checkov_skip" in body["//"]
    }
    assert notes == {
        "accounts/deployer_cloudbuild_builds_editor": {
            "CKV_GCP_49": "The deployer runs `cdktf deploy` and manages the Cloud Build triggers; the builds run as "
            "the stack's accounts, on which it holds actAs only (account-level, below), and it creates no account."
        },
        "state/bucket": {
            "CKV_GCP_62": "The access-log bucket belongs to the environment stack, which needs this bucket first; "
            "reads and writes of state are in the Cloud Audit Logs of the deployer and planner accounts."
        },
    }


def test_workbench_users_act_as_nothing_while_the_workbench_is_off(tmp_path):
    """Users listed for a Workbench that is off: no account of theirs to act as, and no grant (dev's bootstrap stack
    alone, in-process)."""
    import json

    from cdktf import App

    from infra.bootstrap import BootstrapStack
    from settings import load_config

    app = App(outdir=str(tmp_path))
    settings = load_config("dev", environ={"FMNIST_INFRA__WORKBENCH__USERS": "['group:ml-team@example.com']"})
    assert not settings.infra.workbench.enabled and settings.infra.workbench.users == ["group:ml-team@example.com"]
    BootstrapStack(app, settings)
    app.synth()
    stack = json.loads((tmp_path / "stacks" / BOOTSTRAP["dev"] / "cdk.tf.json").read_text())
    members = {b["member"] for b in stack["resource"]["google_service_account_iam_member"].values()}
    assert "group:ml-team@example.com" not in members
    assert len(members) == 3  # the deployer, pipelines and starter accounts
