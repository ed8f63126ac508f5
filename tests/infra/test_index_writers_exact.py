"""Who may write, sign or act as the promoter, value by value on hand-written stack documents: each problem's exact
sentence (it names the stack, the resource's address, the principal, the role and the fix), bindings' members one by
one, which buckets, keys, accounts and roles the rules look at, the IAM conditions that do and do not keep a writer
out of registry/, and how a member's account is recognised."""

from __future__ import annotations

import pytest

from infra.index_writers import _account, problems
from tests.infra.test_index_writers import MODELS, PROMOTER_ACCOUNT, SIGNING_KEY, TRAINER, grant, prefix

PROMOTER = "serviceAccount:fmnist-mlops-dev-promoter@fmnist-mlops-dev.iam.gserviceaccount.com"
DEPLOYER = "serviceAccount:fmnist-mlops-dev-deployer@fmnist-mlops-dev.iam.gserviceaccount.com"
MODELS_REF = "${google_storage_bucket.storage_models_0A1B2C3D.name}"


def stack(kind: str, body: dict, name: str = "dev", key: str = "bad") -> dict:
    return {name: {"resource": {kind: {key: body}}}}


def test_each_problem_is_one_exact_sentence():
    assert list(problems(grant("roles/storage.objectAdmin"), MODELS)) == [
        "dev: google_storage_bucket_iam_member.bad lets trainer write fmnist-mlops-dev-models/registry/index.json "
        "(roles/storage.objectAdmin); only promoter may: limit it with an IAM condition on object names outside "
        "registry/ (infra/components/storage.py does for the trainer)"
    ]
    signer = {"crypto_key_id": SIGNING_KEY, "role": "roles/cloudkms.signerVerifier", "member": TRAINER}
    assert list(problems(stack("google_kms_crypto_key_iam_member", signer, "bootstrap-dev"), MODELS)) == [
        "bootstrap-dev: google_kms_crypto_key_iam_member.bad lets trainer sign the registry index "
        "(roles/cloudkms.signerVerifier); only promoter may (infra/bootstrap.py IndexSigningKey signers)"
    ]
    actor = {"service_account_id": PROMOTER_ACCOUNT, "role": "roles/iam.serviceAccountUser", "member": TRAINER}
    assert list(problems(stack("google_service_account_iam_member", actor, "bootstrap-dev"), MODELS)) == [
        "bootstrap-dev: google_service_account_iam_member.bad lets trainer act as the promoter "
        "(roles/iam.serviceAccountUser); only the deployer may: an account that can run code as the promoter "
        "can promote"
    ]


def test_a_bindings_members_are_judged_one_by_one():
    writers = {"role": "roles/storage.objectCreator", "bucket": MODELS_REF, "members": [PROMOTER, TRAINER, DEPLOYER]}
    assert [
        p.split(" lets ")[1].split(" ")[0]
        for p in problems(stack("google_storage_bucket_iam_binding", writers), MODELS)
    ] == ["trainer"]
    signers = {"crypto_key_id": SIGNING_KEY, "role": "roles/cloudkms.signer", "members": [PROMOTER, DEPLOYER]}
    assert len(list(problems(stack("google_kms_crypto_key_iam_binding", signers), MODELS))) == 1
    actors = {"service_account_id": PROMOTER_ACCOUNT, "role": "roles/owner", "members": [DEPLOYER, TRAINER]}
    assert len(list(problems(stack("google_service_account_iam_binding", actors), MODELS))) == 1


def test_the_models_bucket_is_recognised_by_name_or_by_reference_and_no_other_is_looked_at():
    by_name = {"role": "roles/storage.admin", "bucket": MODELS, "member": TRAINER}
    assert len(list(problems(stack("google_storage_bucket_iam_member", by_name), MODELS))) == 1
    other = {"role": "roles/storage.admin", "bucket": "${google_storage_bucket.storage_datasets_0A1B2C3D.name}"}
    assert list(problems(stack("google_storage_bucket_iam_member", {**other, "member": TRAINER}), MODELS)) == []
    reader = {"role": "roles/storage.objectViewer", "bucket": MODELS_REF, "member": TRAINER}
    assert list(problems(stack("google_storage_bucket_iam_member", reader), MODELS)) == []


@pytest.mark.parametrize("member", [PROMOTER, DEPLOYER])
def test_the_promoter_and_the_deployer_may_write(member):
    body = {"role": "roles/storage.objectAdmin", "bucket": MODELS_REF, "member": member}
    assert list(problems(stack("google_storage_bucket_iam_member", body), MODELS)) == []


def test_only_a_condition_to_prefixes_outside_registry_keeps_a_writer_out():
    def passes(expression: str) -> bool:
        return not list(problems(grant("roles/storage.objectAdmin", {"title": "t", "expression": expression}), MODELS))

    jobs = prefix("jobs/")["expression"]
    bucket_level = 'resource.type == "storage.googleapis.com/Bucket"'
    assert passes(jobs) and passes(f"{bucket_level} || {jobs}") and passes(f"{jobs} || {prefix('runs/')['expression']}")
    assert not passes(f"{jobs} || true")  # anything besides the prefixes may open the rest
    assert not passes(f"{jobs} || {prefix('registry-copies/')['expression']}")  # under "registry" too
    assert not passes(bucket_level)  # no prefix at all
    assert not passes("")


def test_a_signer_of_another_key_or_a_role_that_cannot_sign_passes():
    other_key = {"crypto_key_id": "${google_kms_crypto_key.cmek_0A1B2C3D.id}", "role": "roles/cloudkms.signer"}
    viewer = {"crypto_key_id": SIGNING_KEY, "role": "roles/cloudkms.viewer"}
    for body in (other_key, viewer):
        assert list(problems(stack("google_kms_crypto_key_iam_member", {**body, "member": TRAINER}), MODELS)) == []


def test_acting_as_another_account_or_without_an_act_as_role_passes():
    other = {"service_account_id": "${google_service_account.accounts_trainer_0A1B2C3D.name}"}
    for body in (
        {**other, "role": "roles/iam.serviceAccountUser"},
        {"service_account_id": PROMOTER_ACCOUNT, "role": "roles/viewer"},
    ):
        assert list(problems(stack("google_service_account_iam_member", {**body, "member": TRAINER}), MODELS)) == []


def test_problems_come_writers_first_then_signers_then_actors_by_stack_name():
    writer = {"role": "roles/storage.objectAdmin", "bucket": MODELS_REF, "member": TRAINER}
    signer = {"crypto_key_id": SIGNING_KEY, "role": "roles/cloudkms.signer", "member": TRAINER}
    stacks = {
        "b": {
            "resource": {
                "google_kms_crypto_key_iam_member": {"s": signer},
                "google_storage_bucket_iam_member": {"w": writer},
            }
        },
        "a": {"resource": {"google_kms_crypto_key_iam_member": {"s": signer}}},
    }
    assert [p.split(" lets ")[0] for p in problems(stacks, MODELS)] == [
        "b: google_storage_bucket_iam_member.w",
        "a: google_kms_crypto_key_iam_member.s",
        "b: google_kms_crypto_key_iam_member.s",
    ]


@pytest.mark.parametrize(
    ("member", "account"),
    [
        ("serviceAccount:${google_service_account.accounts_promoter_0A1B2C3D.email}", "promoter"),
        ("serviceAccount:fmnist-mlops-dev-pl-starter@p.iam.gserviceaccount.com", "starter"),
        ("serviceAccount:fmnist-mlops-dev-ci-checks@p.iam.gserviceaccount.com", "checks"),
        ("serviceAccount:fmnist-mlops-dev-planner@p.iam.gserviceaccount.com", "planner"),
        ("serviceAccount:fmnist-mlops-dev-workbench@p.iam.gserviceaccount.com", "workbench"),
        ("fmnist-mlops-dev-trainer", "trainer"),
        ("serviceAccount:${google_service_account.accounts_promoter_0a1b2c3d.email}", None),  # not a cdktf suffix
        ("serviceAccount:mypromoter@p.iam.gserviceaccount.com", None),  # no "-promoter" ending
        ("user:someone@example.com", None),
    ],
)
def test_a_members_account_is_its_stack_role_or_the_member_itself(member, account):
    assert _account(member) == (member if account is None else account)


def test_a_stack_without_resources_has_no_problem():
    assert list(problems({"outputs-only": {"output": {}}, "dev": {"resource": {}}}, MODELS)) == []


def test_a_harmless_grant_does_not_hide_a_later_one_of_the_same_kind():
    """Every grant is judged, whatever comes before it in the same resource type."""
    harmless_writers = {
        "reader": {"role": "roles/storage.objectViewer", "bucket": MODELS_REF, "member": TRAINER},
        "other_bucket": {"role": "roles/storage.admin", "bucket": "fmnist-mlops-dev-datasets", "member": TRAINER},
        "promoter": {"role": "roles/storage.objectAdmin", "bucket": MODELS_REF, "member": PROMOTER},
    }
    signer = {"crypto_key_id": SIGNING_KEY, "role": "roles/cloudkms.signer", "member": TRAINER}
    actor = {"service_account_id": PROMOTER_ACCOUNT, "role": "roles/iam.serviceAccountUser", "member": TRAINER}
    for kind, harmless, bad in (
        ("google_storage_bucket_iam_member", harmless_writers, {"role": "roles/storage.admin", "bucket": MODELS_REF}),
        ("google_kms_crypto_key_iam_member", {"viewer": {**signer, "role": "roles/cloudkms.viewer"}}, signer),
        ("google_service_account_iam_member", {"viewer": {**actor, "role": "roles/viewer"}}, actor),
    ):
        for name, body in harmless.items():
            resources = {kind: {name: body, "bad": {**bad, "member": TRAINER}}}
            (problem,) = problems({"dev": {"resource": resources}}, MODELS)
            assert problem.startswith(f"dev: {kind}.bad lets trainer ")
