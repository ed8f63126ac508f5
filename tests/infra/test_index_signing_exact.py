"""The registry index's signing key (infra/components/index_signing.py) on the synthesized bootstrap stacks, pinned
exactly where test_index_signing.py checks only part: the key's whole body (its ring, labels, destroy guard and
scheduled destruction), the signer grant on that key and no other, and both Terraform addresses (a renamed key
construct would schedule the key that signed every promotion for destruction and make a new one)."""

from __future__ import annotations

import pytest

from infra.naming import Names
from tests.infra.conftest import BOOTSTRAP, ENVIRONMENTS


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_signing_key_and_its_one_signer_are_exact(synth, env, settings_by_env):
    settings = settings_by_env[env]
    names = Names.of(settings)
    stack = BOOTSTRAP[env]
    found = {p: kind for p, (kind, _, _) in synth.by_path(stack).items() if p.startswith("index_signing/")}
    assert found == {
        "index_signing/key": "google_kms_crypto_key",
        "index_signing/signer-0": "google_kms_crypto_key_iam_member",
        "index_signing/public-key-viewer-0": "google_kms_crypto_key_iam_member",
    }
    assert synth.waits(stack, "index_signing/") == {}
    key = synth.body(stack, "index_signing/key")
    assert {k: v for k, v in key.items() if k != "//"} == {
        "name": "fmnist-index-signing",
        "key_ring": synth.ref(stack, "kms/key_ring", "id"),
        "purpose": "ASYMMETRIC_SIGN",
        "version_template": {"algorithm": "EC_SIGN_P256_SHA256", "protection_level": "SOFTWARE"},
        "labels": names.labels,
        "lifecycle": {"prevent_destroy": settings.infra.deletion_protection},
        "destroy_scheduled_duration": "2592000s",
    }
    assert settings.infra.deletion_protection is (env == "prod")
    signer = synth.body(stack, "index_signing/signer-0")
    assert {k: v for k, v in signer.items() if k != "//"} == {
        "crypto_key_id": synth.ref(stack, "index_signing/key", "id"),
        "role": "roles/cloudkms.signerVerifier",
        "member": f"serviceAccount:{synth.ref(stack, 'accounts/promoter', 'email')}",
    }
    viewer = synth.body(stack, "index_signing/public-key-viewer-0")
    assert {k: v for k, v in viewer.items() if k != "//"} == {
        "crypto_key_id": synth.ref(stack, "index_signing/key", "id"),
        "role": "roles/cloudkms.publicKeyViewer",
        "member": f"serviceAccount:{synth.ref(stack, 'accounts/deployer', 'email')}",
    }
