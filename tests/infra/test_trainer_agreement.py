"""The requests the trainer's Vertex AI adapters build name the resources this stack declares.

Both take their names from contracts.cloud; this test closes the loop against the synthesized stack itself, so a
construct that stops using those names (a hard-coded id, say) fails here."""

from __future__ import annotations

import pytest

from contracts.images import source_tag
from contracts.registry_index import parse_record
from trainer.cloud.deploy_model import build_deploy
from trainer.cloud.submit import build_custom_job


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_adapter_requests_name_the_declared_resources(settings_by_env, synth, env):
    settings = settings_by_env[env]
    job = build_custom_job(settings, ["--preset", "smoke"], display_name="fmnist-train-smoke-1")
    record = parse_record("v1", {"source": "custom", "metrics": {"accuracy": 0.9}}, "index.json")
    deploy = build_deploy(settings, "v1", record, ["champion"], parent_exists=True)

    bootstrap = f"bootstrap-{env}"  # accounts and the key outlive the environment's stack
    accounts = {a["account_id"] for a in synth.resources(bootstrap, "google_service_account").values()}
    for email in (job.submit["service_account"], deploy.deploy["service_account"]):
        assert email.split("@")[0] in accounts and email.endswith(f"@{settings.project_id}.iam.gserviceaccount.com")

    repositories = synth.resources(env, "google_artifact_registry_repository").values()
    # the images' repository (the other Docker one holds the starter function's build)
    [repository] = [
        r["repository_id"]
        for r in repositories
        if r["format"] == "DOCKER" and r["repository_id"] != settings.names.functions_repository
    ]
    for uri, image in (
        (job.job["worker_pool_specs"][0]["container_spec"]["image_uri"], "trainer"),
        (deploy.upload["serving_container_image_uri"], "service"),
    ):
        assert uri == f"{settings.region}-docker.pkg.dev/{settings.project_id}/{repository}/{image}:{source_tag(image)}"

    endpoint = synth.one(env, "google_vertex_ai_endpoint")["name"]
    assert deploy.endpoint.endswith(f"/endpoints/{endpoint}")
    ring = synth.one(bootstrap, "google_kms_key_ring")["name"]
    (key,) = (  # the CMEK key, not the registry index's signing key
        k["name"]
        for k in synth.resources(bootstrap, "google_kms_crypto_key").values()
        if k.get("purpose") != "ASYMMETRIC_SIGN"
    )
    for name in (job.job["encryption_spec_key_name"], deploy.upload["encryption_spec_key_name"]):
        assert name.endswith(f"/keyRings/{ring}/cryptoKeys/{key}")
    buckets = {b["name"] for b in synth.resources(env, "google_storage_bucket").values()}
    assert job.job["base_output_dir"].split("/")[2] in buckets
    assert job.init["staging_bucket"].split("/")[2] in buckets
