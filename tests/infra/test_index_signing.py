"""The registry index's signing key (issue 25): an asymmetric P-256 key in the bootstrap stack's key ring, whose
signer role only the promoting account holds, and whose version-1 public key is what Cloud Run's service checks."""

from __future__ import annotations

import json

import pytest

from contracts.index_signature import ALGORITHM, INDEX_SIGNING_KEY_ID
from tests.infra.conftest import BOOTSTRAP, ENVIRONMENTS


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_signing_key_is_asymmetric_p256_in_the_bootstrap_stack(synth, env):
    keys = {k["name"]: k for k in synth.resources(BOOTSTRAP[env], "google_kms_crypto_key").values()}
    key = keys[INDEX_SIGNING_KEY_ID]
    assert key["purpose"] == "ASYMMETRIC_SIGN"
    assert key["version_template"] == {"algorithm": ALGORITHM, "protection_level": "SOFTWARE"}
    assert "rotation_period" not in key
    assert not any(k["name"] == INDEX_SIGNING_KEY_ID for k in synth.resources(env, "google_kms_crypto_key").values())


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_only_the_promoting_account_may_sign(synth, env):
    grants = [
        g
        for g in synth.resources(BOOTSTRAP[env], "google_kms_crypto_key_iam_member").values()
        if "index_signing" in json.dumps(g["crypto_key_id"])
    ]
    promoter = "serviceAccount:${google_service_account.accounts_promoter_2DFF2714.email}"
    deployer = "serviceAccount:${google_service_account.accounts_deployer_CAC96D25.email}"
    # the deployer may read the public key only (a viewer role holds no signing permission)
    assert sorted((g["role"], g["member"]) for g in grants) == [
        ("roles/cloudkms.publicKeyViewer", deployer),
        ("roles/cloudkms.signerVerifier", promoter),
    ]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_service_is_given_the_signing_keys_public_key(synth, env, settings_by_env):
    container = synth.one(f"serving-{env}", "google_cloud_run_v2_service")["template"]["containers"][0]
    value = {e["name"]: e["value"] for e in container["env"] if "value" in e}["INDEX_PUBLIC_KEY"]
    assert value == "${data.google_kms_crypto_key_version.index_signing_public_key.public_key[0].pem}"
    data = synth.stack(f"serving-{env}")["data"]["google_kms_crypto_key_version"]["index_signing_public_key"]
    data.pop("//", None)
    assert data.pop("depends_on") == ["google_project_service.apis_cloudkms_3A12B20A"]  # not read on a fresh project
    assert data == {"crypto_key": settings_by_env[env].names.index_signing_key_name, "version": 1}
