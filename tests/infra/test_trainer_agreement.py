"""The names the trainer's Vertex AI adapters derive are the names this stack declares (no shared runtime code,
so a test keeps the two in step)."""
from __future__ import annotations

import pytest

from infra.images import source_tag
from infra.naming import Names

vertex = pytest.importorskip("trainer.vertex", reason="trainer/vertex.py not in this checkout")


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_trainer_derives_the_declared_names(settings_by_env, synth, env):
    settings, names = settings_by_env[env], Names(settings_by_env[env])
    for image in ("trainer", "service"):
        assert vertex.image_uri(settings, image) == f"{names.image_repository(image)}:{source_tag(image)}"
    for role in ("trainer", "service"):
        assert vertex.service_account(settings, role) == names.service_account_email(role)
    assert vertex.endpoint_name(settings).endswith(f"/endpoints/{synth.one(env, 'google_vertex_ai_endpoint')['name']}")
    key = synth.one(env, "google_kms_crypto_key")
    ring = synth.one(env, "google_kms_key_ring")
    assert vertex.kms_key(settings).endswith(f"/keyRings/{ring['name']}/cryptoKeys/{key['name']}")
