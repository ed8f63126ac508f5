"""checkov on the synthesized stacks (0 failed), the custom policies (each made to fail), and the baseline that
the suppression notes in code turn into."""

from __future__ import annotations

import json
import os
import subprocess
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest

from infra.checkov_baseline import baseline, read_suppressions, write_baseline
from infra.graph_policies import POLICIES as GRAPH_POLICIES
from infra.scan import POLICIES_DIR, checkov_binary, evaluate, run_checkov_json, scan
from infra.suppressions import suppress

CUSTOM_POLICIES = ("CKV2_FMNIST_1", "CKV2_FMNIST_2", "CKV2_FMNIST_3", "CKV2_FMNIST_4", "CKV2_FMNIST_5")
EXPECTED_NOTES = {
    # CKV_GCP_80: the ground-truth view stores no data and BigQuery takes no encryption configuration on a view
    "dev": {"CKV_GCP_62", "CKV2_GCP_33", "CKV_GCP_121", "CKV_GCP_80"},
    "prod": {"CKV_GCP_62", "CKV2_GCP_33", "CKV_GCP_80"},
    "bootstrap-dev": {"CKV_GCP_62", "CKV_GCP_49", "CKV_GCP_82", "CKV2_FMNIST_3"},
    "bootstrap-prod": {"CKV_GCP_62", "CKV_GCP_49", "CKV2_FMNIST_3"},
    # no note: the docker resources alone need a daemon to plan, and they are this stack (issue 23, defect 7)
    "images-dev": set(),
    "images-prod": set(),
    # run.googleapis.com, enabled first by <env> (whose budget watches the project) and again here
    "serving-dev": {"CKV2_FMNIST_3"},
    "serving-prod": {"CKV2_FMNIST_3"},
}
MAX_NOTES_PER_STACK = 6  # dev: three tables without deletion protection (teardown), the view's CMEK, 62, 33
# The bootstrap stack enables the APIs planning needs before the budget (in the main stack) exists: one note each.
BUDGET_NOTES_PER_BOOTSTRAP = 6


def _checkov_available() -> bool:
    try:
        checkov_binary()
        return True
    except FileNotFoundError:
        return False


needs_checkov = pytest.mark.skipif(not _checkov_available(), reason="checkov not installed (.venv-checkov)")


@pytest.mark.slow
@needs_checkov
def test_synthesized_stacks_pass_checkov_with_custom_policies(checkov_runs, synth):
    result, junit = checkov_runs["scan"].result()
    assert result.status == 0, [(f.stack, f.check_id, f.resource) for f in result.failed]
    assert len(result.passed) > 500
    assert {f.check_id for f in result.passed} >= set(CUSTOM_POLICIES) | {p.id for p in GRAPH_POLICIES}
    assert len(result.suppressed) == len(read_suppressions(synth.outdir))
    root = ElementTree.parse(junit).getroot()
    assert (root.get("failures"), root.get("skipped")) == ("0", str(len(result.suppressed)))
    assert int(root.get("tests")) == len(result.passed) + len(result.suppressed)


def baseline_command(outdir, baseline_path) -> list[str]:
    return [
        checkov_binary(),
        "-d",
        str(outdir),
        "--framework",
        "terraform_json",
        "--external-checks-dir",
        str(POLICIES_DIR),
        "--baseline",
        str(baseline_path),
        "--skip-download",
        "--quiet",
        "--compact",
    ]


@needs_checkov
def test_the_baseline_file_silences_exactly_the_notes_in_checkov_itself(checkov_runs):
    completed = checkov_runs["baseline"].result()
    assert completed.returncode == 0, completed.stdout[-3000:]


@needs_checkov
def test_public_endpoint_passes_only_through_its_suppression_note(checkov_runs, variant_synth):
    notes = read_suppressions(variant_synth.outdir)
    reports = checkov_runs["variant"].result()
    with_notes = evaluate(reports, notes)
    assert with_notes.status == 0
    assert ("CKV2_FMNIST_1", "google_cloud_run_v2_service_iam_member") in {
        (f.check_id, f.resource.split(".")[0]) for f in with_notes.suppressed
    }
    without_public_note = evaluate(reports, [n for n in notes if n.check_id != "CKV2_FMNIST_1"])
    assert [(f.check_id, f.resource.split(".")[0]) for f in without_public_note.failed] == [
        ("CKV2_FMNIST_1", "google_cloud_run_v2_service_iam_member")
    ]


BAD_STACK = {
    "resource": {
        "google_cloud_run_v2_service_iam_member": {
            "public_invoker": {
                "name": "svc",
                "location": "europe-west4",
                "role": "roles/run.invoker",
                "member": "allUsers",
            },
            "team_invoker": {
                "name": "svc",
                "location": "europe-west4",
                "role": "roles/run.invoker",
                "member": "group:team@example.com",
            },
        },
        "google_storage_bucket_iam_binding": {
            "any_google_account": {
                "bucket": "b",
                "role": "roles/storage.objectViewer",
                "members": ["user:a@example.com", "allAuthenticatedUsers"],
            },
            "everyone": {"bucket": "b", "role": "roles/storage.objectViewer", "members": ["allUsers"]},
            "team": {
                "bucket": "b",
                "role": "roles/storage.objectViewer",
                "members": ["group:team@example.com", "user:a@example.com"],
            },
        },
        "google_project_iam_member": {
            "editor": {"project": "p", "role": "roles/editor", "member": "user:a@example.com"},
            "log_writer": {"project": "p", "role": "roles/logging.logWriter", "member": "user:a@example.com"},
        },
        "google_project_service": {"run": {"project": "p", "service": "run.googleapis.com"}},
        "google_storage_bucket": {
            "open_bucket": {"name": "open", "location": "EU", "public_access_prevention": "inherited"},
            "closed_bucket": {"name": "closed", "location": "EU", "public_access_prevention": "enforced"},
        },
    }
}
BUDGET_WITHOUT_THRESHOLDS = {
    "resource": {
        "google_project_service": {"budgets": {"project": "p", "service": "billingbudgets.googleapis.com"}},
        "google_billing_budget": {
            "thresholdless": {
                "billing_account": "000000-000000-000000",
                "amount": {"specified_amount": {"units": "10"}},
                "depends_on": ["google_project_service.budgets"],
            }
        },
    }
}


def _module_or_per_test(fixture_name: str, config: pytest.Config) -> str:
    """Per test while mutmut maps which test reaches which function (as tests/infra/conftest.py's synth)."""
    return "function" if os.environ.get("MUTANT_UNDER_TEST") == "stats" else "module"


# Which tests read each checkov run: only the runs the selected tests read are started.
RUN_READERS = {
    "scan": {"test_synthesized_stacks_pass_checkov_with_custom_policies"},
    "baseline": {"test_the_baseline_file_silences_exactly_the_notes_in_checkov_itself"},
    "variant": {"test_public_endpoint_passes_only_through_its_suppression_note"},
    "custom": {
        "test_custom_policy_fails_on_the_bad_resource",
        "test_budget_policy_fails_without_threshold_rules",
        "test_custom_policy_passes_the_good_resource",
    },
}


@pytest.fixture(scope=_module_or_per_test)
def checkov_runs(request, tmp_path_factory):
    """The module's checkov runs, started together. Each is one checkov process that keeps one core busy for 10-40 s
    while the serial suite keeps the other core idle (issue 26): together they take about half their sum on two
    cores instead of the sum. Only the runs the selected tests read are started; each test waits for its own."""
    if isinstance(request.node, pytest.Function):
        selected = {request.node.originalname}
    else:
        selected = {item.originalname for item in request.session.items if item.module is request.module}
    wanted = [name for name, readers in RUN_READERS.items() if readers & selected]
    work = tmp_path_factory.mktemp("checkov-runs")
    runs = {}  # fixtures and input files are made here, in the test's thread; only checkov runs in the pool
    if "scan" in wanted:
        runs["scan"] = partial(scan_with_junit, request.getfixturevalue("synth").outdir, work / "junit.xml")
    if "baseline" in wanted:
        outdir = request.getfixturevalue("synth").outdir
        command = baseline_command(outdir, write_baseline(outdir, work / "checkov.baseline")[0])
        runs["baseline"] = partial(subprocess.run, command, capture_output=True, text=True)
    if "variant" in wanted:
        runs["variant"] = partial(run_checkov_json, request.getfixturevalue("variant_synth").outdir)
    if "custom" in wanted:
        runs["custom"] = partial(run_checkov_json, bad_stacks(work / "bad-stacks"))
    with ThreadPoolExecutor(max_workers=max(len(runs), 1)) as pool:
        yield StartedRuns({name: pool.submit(run) for name, run in runs.items()})


class StartedRuns(dict):
    def __missing__(self, name: str):
        raise KeyError(f"checkov run {name!r} was not started for this test: add the test's name to RUN_READERS")


def scan_with_junit(outdir, junit):
    return scan(outdir, junit), junit


def bad_stacks(root):
    for name, document in (("bad", BAD_STACK), ("thresholdless", BUDGET_WITHOUT_THRESHOLDS)):
        (root / "stacks" / name).mkdir(parents=True)
        (root / "stacks" / name / "cdk.tf.json").write_text(json.dumps(document))
    return root


@pytest.fixture(scope=_module_or_per_test)
def custom_policy_results(checkov_runs) -> dict:
    result = evaluate(checkov_runs["custom"].result(), suppressions=[])
    return {
        outcome: {(f.check_id, f.resource) for f in findings if f.check_id in CUSTOM_POLICIES}
        for outcome, findings in (("passed", result.passed), ("failed", result.failed))
    }


@needs_checkov
@pytest.mark.parametrize(
    "check_id, resource",
    [
        ("CKV2_FMNIST_1", "google_cloud_run_v2_service_iam_member.public_invoker"),
        ("CKV2_FMNIST_5", "google_storage_bucket_iam_binding.any_google_account"),
        ("CKV2_FMNIST_5", "google_storage_bucket_iam_binding.everyone"),
        ("CKV2_FMNIST_2", "google_project_iam_member.editor"),
        ("CKV2_FMNIST_3", "google_project_service.run"),
        ("CKV2_FMNIST_4", "google_storage_bucket.open_bucket"),
    ],
)
def test_custom_policy_fails_on_the_bad_resource(custom_policy_results, check_id, resource):
    assert (check_id, resource) in custom_policy_results["failed"]


@needs_checkov
def test_budget_policy_fails_without_threshold_rules(custom_policy_results):
    failed = {r for c, r in custom_policy_results["failed"] if c == "CKV2_FMNIST_3"}
    assert failed & {"google_project_service.budgets", "google_billing_budget.thresholdless"}


@needs_checkov
@pytest.mark.parametrize(
    "check_id, resource",
    [
        ("CKV2_FMNIST_1", "google_cloud_run_v2_service_iam_member.team_invoker"),
        ("CKV2_FMNIST_5", "google_storage_bucket_iam_binding.team"),
        ("CKV2_FMNIST_2", "google_project_iam_member.log_writer"),
        ("CKV2_FMNIST_4", "google_storage_bucket.closed_bucket"),
    ],
)
def test_custom_policy_passes_the_good_resource(custom_policy_results, check_id, resource):
    assert (check_id, resource) in custom_policy_results["passed"]


def test_suppression_notes_are_few_deliberate_and_explained(synth):
    notes = read_suppressions(synth.outdir)
    for env, expected in EXPECTED_NOTES.items():
        mine = [n for n in notes if n.stack == env]
        assert {n.check_id for n in mine} == expected
        budget = [n for n in mine if n.check_id == "CKV2_FMNIST_3"]
        assert all(n.resource_type == "google_project_service" for n in budget)
        assert len(budget) <= BUDGET_NOTES_PER_BOOTSTRAP
        assert len(mine) - len(budget) <= MAX_NOTES_PER_STACK
    assert all(len(n.reason) >= 40 for n in notes)


def test_baseline_lists_both_checkov_resource_names(synth, tmp_path):
    path, notes = write_baseline(synth.outdir, tmp_path / "b.json")
    document = json.loads(path.read_text())
    assert document == baseline(notes)
    dev = next(f for f in document["failed_checks"] if f["file"] == "/stacks/dev/cdk.tf.json")
    names = {finding["resource"] for finding in dev["findings"]}
    endpoint = next(n for n in notes if n.stack == "dev" and n.check_id == "CKV2_GCP_33")
    assert {f"resource.{endpoint.logical_id}", f"google_vertex_ai_endpoint.{endpoint.logical_id}"} <= names


def test_a_suppression_needs_a_reason():
    class Resource:
        def add_override(self, path, value):
            raise AssertionError("must not be called")

    with pytest.raises(ValueError, match="needs a reason"):
        suppress(Resource(), "CKV_GCP_62", "because")
