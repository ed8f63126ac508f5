"""Only the promoter can write the registry index, sign it or run code as itself: the synthesized stacks pass, and a
stack that lets another principal write the models bucket (unconditioned, conditioned on registry/, or at project
level), sign with the index key, or act as the promoter fails."""

from __future__ import annotations

import json

import pytest

from infra.index_writers import problems
from tests.infra.conftest import BOOTSTRAP, ENVIRONMENTS

MODELS = "fmnist-mlops-dev-models"
TRAINER = "serviceAccount:fmnist-mlops-dev-trainer@fmnist-mlops-dev.iam.gserviceaccount.com"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_stacks_let_only_the_promoter_write_the_index(synth, env, settings_by_env):
    stacks = {name: json.loads(synth.texts[name]) for name in (env, BOOTSTRAP[env], f"serving-{env}")}
    assert list(problems(stacks, settings_by_env[env].names.bucket("models"))) == []
    models = [g for g in synth.resources(env, "google_storage_bucket_iam_member").values() if "models" in g["bucket"]]
    writers = {
        (g["member"].split("@")[0].rsplit("-", 1)[-1], (g.get("condition") or {}).get("title"))
        for g in models
        if g["role"] == "roles/storage.objectAdmin"
    }
    assert writers == {("trainer", "job outputs only"), ("pipelines", "job outputs only"), ("promoter", None)}
    signers = synth.resources(BOOTSTRAP[env], "google_kms_crypto_key_iam_member")
    assert [g["member"] for g in signers.values() if g["role"] == "roles/cloudkms.signerVerifier"] == [
        "serviceAccount:${google_service_account.accounts_promoter_" + signers_token(synth, env) + ".email}"
    ]


def signers_token(synth, env: str) -> str:
    """The cdktf suffix of the promoter account's logical id in the bootstrap stack."""
    (key,) = [
        k for k in synth.resources(BOOTSTRAP[env], "google_service_account") if k.startswith("accounts_promoter_")
    ]
    return key.removeprefix("accounts_promoter_")


def grant(role: str, condition: dict | None = None, kind: str = "google_storage_bucket_iam_member") -> dict:
    body = {"role": role, "member": TRAINER}
    if kind != "google_project_iam_member":
        body["bucket"] = "${google_storage_bucket.storage_models_0A1B2C3D.name}"
    if condition:
        body["condition"] = condition
    return {"dev": {"resource": {kind: {"bad": body}}}}


def prefix(name: str) -> dict:
    return {"title": "t", "expression": f'resource.name.startsWith("projects/_/buckets/{MODELS}/objects/{name}")'}


@pytest.mark.parametrize(
    "stacks",
    [
        grant("roles/storage.objectAdmin"),
        grant("roles/storage.objectCreator", prefix("registry/")),
        grant("roles/storage.objectAdmin", prefix("")),
        grant("roles/storage.objectAdmin", {"title": "t", "expression": "request.time < timestamp('2100-01-01')"}),
        grant("roles/storage.objectAdmin", kind="google_project_iam_member"),
    ],
    ids=["unconditioned", "registry-prefix", "empty-prefix", "not-a-name-condition", "project-level"],
)
def test_another_writer_of_the_index_fails_the_policy(stacks):
    (problem,) = problems(stacks, MODELS)
    assert "lets trainer write fmnist-mlops-dev-models/registry/index.json" in problem


SIGNING_KEY = "${google_kms_crypto_key.index_signing_key_0A1B2C3D.id}"
PROMOTER_ACCOUNT = "${google_service_account.accounts_promoter_0A1B2C3D.name}"


@pytest.mark.parametrize(
    ("stacks", "expected"),
    [
        (
            {
                "iam": {
                    "google_kms_crypto_key_iam_member": {
                        "bad": {
                            "crypto_key_id": SIGNING_KEY,
                            "role": "roles/cloudkms.signerVerifier",
                            "member": TRAINER,
                        }
                    }
                }
            },
            "lets trainer sign the registry index (roles/cloudkms.signerVerifier)",
        ),
        (
            {
                "google_project_iam_member": {
                    "bad": {"project": "p", "role": "roles/cloudkms.signer", "member": TRAINER}
                }
            },
            "lets trainer sign the registry index (roles/cloudkms.signer)",
        ),
        (
            {
                "google_service_account_iam_member": {
                    "bad": {
                        "service_account_id": PROMOTER_ACCOUNT,
                        "role": "roles/iam.serviceAccountUser",
                        "member": TRAINER,
                    }
                }
            },
            "lets trainer act as the promoter (roles/iam.serviceAccountUser)",
        ),
        (
            {
                "google_service_account_iam_member": {
                    "bad": {
                        "service_account_id": PROMOTER_ACCOUNT,
                        "role": "roles/iam.serviceAccountTokenCreator",
                        "member": "serviceAccount:fmnist-mlops-dev-pl-starter@fmnist-mlops-dev.iam.gserviceaccount.com",
                    }
                }
            },
            "lets starter act as the promoter (roles/iam.serviceAccountTokenCreator)",
        ),
        (
            {
                "google_project_iam_member": {
                    "bad": {
                        "project": "p",
                        "role": "roles/iam.serviceAccountUser",
                        "member": "user:someone@example.com",
                    }
                }
            },
            "lets user:someone@example.com act as the promoter",
        ),
    ],
    ids=["signer-on-the-key", "signer-at-project-level", "actas-promoter", "token-on-promoter", "actas-everyone"],
)
def test_another_signer_or_promoter_impersonator_fails_the_policy(stacks, expected):
    if "iam" in stacks:
        stacks = stacks["iam"]
    (problem,) = problems({"bootstrap-dev": {"resource": stacks}}, MODELS)
    assert expected in problem


def test_the_deployer_may_act_as_the_promoter_and_the_promoter_may_sign():
    deployer = "serviceAccount:fmnist-mlops-dev-deployer@fmnist-mlops-dev.iam.gserviceaccount.com"
    promoter = "serviceAccount:fmnist-mlops-dev-promoter@fmnist-mlops-dev.iam.gserviceaccount.com"
    stacks = {
        "bootstrap-dev": {
            "resource": {
                "google_service_account_iam_member": {
                    "ok": {
                        "service_account_id": PROMOTER_ACCOUNT,
                        "role": "roles/iam.serviceAccountUser",
                        "member": deployer,
                    }
                },
                "google_kms_crypto_key_iam_member": {
                    "ok": {"crypto_key_id": SIGNING_KEY, "role": "roles/cloudkms.signerVerifier", "member": promoter}
                },
            }
        }
    }
    assert list(problems(stacks, MODELS)) == []


def test_a_writer_limited_to_job_outputs_passes():
    assert list(problems(grant("roles/storage.objectAdmin", prefix("jobs/")), MODELS)) == []
