"""infra/iam_table.py on hand-written stacks, row by row: who is shown for a member, what a grant is on, which roles
count as writing, the table's order and the markers' replacement; and `python -m infra.iam_table` as a reviewer
runs it (one synth each: the committed SECURITY.md is the expected output, tests/infra/test_iam_table.py keeps it
fresh)."""

from __future__ import annotations

import pytest

from infra import iam_table
from infra.iam_table import BEGIN, END, SECURITY, replace_between_markers, rows, table

TRAINER = "serviceAccount:fmnist-mlops-dev-trainer@fmnist-mlops-dev.iam.gserviceaccount.com"
MODELS = "${google_storage_bucket.storage_models_D2E069E7.name}"


def _stack(**resources: dict) -> dict:
    return {"resource": resources}


def test_a_grant_s_principal_is_the_account_name_or_the_construct_it_references():
    stack = _stack(
        google_storage_bucket_iam_member={
            "a": {"bucket": MODELS, "role": "roles/storage.objectViewer", "member": TRAINER},
            "b": {
                "bucket": MODELS,
                "role": "roles/storage.objectViewer",
                "member": "serviceAccount:${google_service_account.accounts_pipelines_31D8301F.email}",
            },
            "c": {
                "bucket": MODELS,
                "role": "roles/storage.objectViewer",
                "member": "serviceAccount:${data.google_storage_project_service_account.agents_storage_96A2908A"
                ".email_address}",
            },
            "d": {
                "bucket": MODELS,
                "role": "roles/storage.objectViewer",
                "member": "serviceAccount:service-${data.google_project.project.number}"
                "@gcp-sa-monitoring-notification.iam.gserviceaccount.com",
            },
            "e": {"bucket": MODELS, "role": "roles/storage.objectViewer", "member": "group:ml@example.com"},
            "f": {
                "bucket": MODELS,
                "role": "roles/storage.objectViewer",
                "member": "serviceAccount:billing-budget-alert@system.gserviceaccount.com",
            },
        }
    )
    assert [principal for principal, *_ in rows(stack, "dev")] == [
        "agents_storage",
        "billing-budget-alert@system.gserviceaccount.com",  # not an IAM service account address: kept whole
        "fmnist-mlops-dev-trainer",
        "group:ml@example.com",
        "pipelines",
        "service-project",
    ]


def test_what_a_grant_is_on_is_named_by_its_type_and_target():
    stack = _stack(
        google_storage_bucket_iam_member={"a": {"bucket": MODELS, "role": "r1", "member": "m"}},
        google_kms_crypto_key_iam_member={
            "a": {"crypto_key_id": "${google_kms_crypto_key.kms_key_0F2C1A7E.id}", "role": "r2", "member": "m"}
        },
        google_artifact_registry_repository_iam_member={
            "a": {"repository": "${google_artifact_registry_repository.registry_docker_CC04E101.name}", "role": "r3"}
        },
        google_bigquery_dataset_iam_member={"a": {"dataset_id": "fmnist_features", "role": "r4", "member": "m"}},
        google_pubsub_topic_iam_member={
            "a": {"topic": "${google_pubsub_topic.budget_topic_117BB98E.name}", "role": "r5", "member": "m"}
        },
        google_cloud_run_v2_service_iam_member={"a": {"name": "fmnist-service", "role": "r6", "member": "m"}},
        google_service_account_iam_member={
            "a": {"service_account_id": "${google_service_account.accounts_checks_B77AAD07.name}", "role": "r7"}
        },
        google_project_iam_member={"a": {"project": "p", "role": "r8", "member": "m"}},
        google_kms_crypto_key_iam_binding={"a": {"crypto_key_id": "k", "role": "r9", "members": ["m"]}},
    )
    assert {role: target for _, role, target, *_ in rows(stack, "dev")} == {
        "r1": "storage_bucket: storage_models",
        "r2": "kms_crypto_key: kms_key",
        "r3": "artifact_registry_repository: registry_docker",
        "r4": "bigquery_dataset: fmnist_features",
        "r5": "pubsub_topic: budget_topic",
        "r6": "cloud_run_v2_service: fmnist-service",
        "r7": "service_account: checks",
        "r8": "project",
        "r9": "kms_crypto_key_iam_binding: k",
    }


def test_every_member_of_a_binding_is_a_row_with_its_condition_and_stack_and_other_resources_are_not():
    stack = _stack(
        google_storage_bucket={"models": {"name": "fmnist-models"}},  # not a grant, and listed first
        google_storage_bucket_iam_binding={
            "a": {
                "bucket": "b",
                "role": "roles/storage.objectAdmin",
                "members": ["user:zoe@example.com", "user:ana@example.com"],
                "condition": {"title": "job outputs only", "expression": "true"},
            }
        },
        google_project_iam_member={"a": {"role": "roles/viewer"}},  # no member: shown as unknown, not dropped
    )
    assert rows(stack, "dev") == [
        ("?", "roles/viewer", "project", "", "dev"),
        (
            "user:ana@example.com",
            "roles/storage.objectAdmin",
            "storage_bucket_iam_binding: b",
            "job outputs only",
            "dev",
        ),
        (
            "user:zoe@example.com",
            "roles/storage.objectAdmin",
            "storage_bucket_iam_binding: b",
            "job outputs only",
            "dev",
        ),
    ]


def test_a_stack_without_resources_grants_nothing():
    # a stack of data sources and outputs only (cdktf writes no "resource" key then)
    assert rows({"data": {"google_project": {"p": {}}}, "output": {}}, "images-dev") == []
    assert table({"images-dev": {"output": {}}}) == (
        "| principal | role | on | condition | writes or acts | stack |\n|---|---|---|---|---|---|\n"
    )


@pytest.mark.parametrize(
    ("role", "writes"),
    [
        ("roles/storage.admin", True),
        ("roles/storage.objectCreator", True),
        ("roles/iam.serviceAccountUser", True),
        ("roles/cloudkms.signerVerifier", True),
        ("roles/run.invoker", True),
        ("roles/pubsub.publisher", True),
        ("roles/bigquery.dataEditor", True),
        ("roles/storage.objectViewer", False),
        ("roles/billing.costsManager", False),
        ("projects/fmnist-admin/roles/reader", False),  # a custom role: only its own name is read
    ],
)
def test_which_roles_write_or_act(role, writes):
    stack = _stack(google_project_iam_member={"a": {"role": role, "member": "user:ana@example.com"}})
    assert table({"dev": stack}).splitlines()[2] == (
        f"| user:ana@example.com | `{role}` | project |  | {'yes' if writes else ''} | dev |"
    )


def test_the_table_lists_stacks_in_name_order_under_its_header():
    grant = {"role": "roles/viewer", "member": "user:ana@example.com"}
    stacks = {"serving-dev": _stack(google_project_iam_member={"a": grant}), "dev": _stack()}
    stacks["bootstrap-dev"] = _stack(google_project_iam_member={"a": grant})
    assert table(stacks) == (
        "| principal | role | on | condition | writes or acts | stack |\n"
        "|---|---|---|---|---|---|\n"
        "| user:ana@example.com | `roles/viewer` | project |  |  | bootstrap-dev |\n"
        "| user:ana@example.com | `roles/viewer` | project |  |  | serving-dev |\n"
    )


def test_the_table_replaces_what_is_between_the_markers_and_keeps_the_rest():
    page = f"# Security\n\n{BEGIN}\n| old |\n{END}\n\nRegenerate it; {BEGIN} and {END} mark it.\n"
    assert replace_between_markers(page, "| new |\n") == (
        f"# Security\n\n{BEGIN}\n| new |\n{END}\n\nRegenerate it; {BEGIN} and {END} mark it.\n"
    )


@pytest.mark.parametrize("markers", [(), (BEGIN,), (END,)])
def test_a_page_without_both_markers_is_refused_naming_them(markers):
    with pytest.raises(SystemExit) as refused:
        replace_between_markers("# Security\n" + "\n".join(markers), "| new |\n")
    assert str(refused.value) == f"{SECURITY}: the markers {BEGIN!r} and {END!r} are missing"


def _committed_table() -> str:
    return SECURITY.read_text().split(BEGIN, 1)[1].split(END, 1)[0]


def test_the_command_prints_the_dev_table_of_the_config_not_of_the_shell(capsys, monkeypatch):
    monkeypatch.setenv("FMNIST_INFRA__INVOKERS", "['user:ana@example.com']")  # a reviewer's shell override
    assert iam_table.main([]) == 0
    assert "\n" + capsys.readouterr().out == _committed_table()


def test_the_command_writes_the_table_into_a_stale_page(tmp_path, monkeypatch, capsys):
    page = tmp_path / "SECURITY.md"
    page.write_text(f"# Security\n\n{BEGIN}\n| stale |\n{END}\nafter\n")
    monkeypatch.setattr(iam_table, "SECURITY", page)
    assert iam_table.main(["--env", "dev", "--write"]) == 0
    assert page.read_text() == f"# Security\n\n{BEGIN}{_committed_table()}{END}\nafter\n"
    assert capsys.readouterr().out == f"wrote the IAM table of dev into {page}\n"


def test_the_command_s_help_names_it_and_says_what_it_prints(capsys):
    with pytest.raises(SystemExit) as done:
        iam_table.main(["--help"])
    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("usage: python -m infra.iam_table [-h] [--env ENV] [--write] ")
    assert (
        "`python -m infra.iam_table [--env dev] [--write]`: who holds which role on what, read from the synthesized "
        "stacks. options:"
    ) in out
