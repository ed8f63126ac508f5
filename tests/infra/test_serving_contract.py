"""The Cloud Run container's environment and probes, read by the service's own configuration parser: what the
stack declares is what the service accepts, and a container with no promoted model yet can become ready.

The service side (start healthy on an empty registry, answer /predict with 503 until a champion exists) is tested
in tests/service; here the infra side: the probes hit the route and port the service serves its health on, the
startup budget covers a cold start with a model download, and no setting the stack passes is rejected."""

from __future__ import annotations

import dataclasses
import json

import pytest

from contracts.registry_index import parse_record
from contracts.rollout import Thresholds
from contracts.serving import PORT
from service.config import ServiceConfig
from settings import ServiceSettings

ENVS = ("dev", "prod")
STARTUP_BUDGET_S = 60  # cold start (0.35 s measured locally) plus downloading and warming up a model from GCS


def _container(synth, env: str) -> dict:
    return synth.one(f"serving-{env}", "google_cloud_run_v2_service")["template"]["containers"][0]


def a_public_key(reference: str) -> str:
    """A P-256 public key in PEM where the stack has a Terraform reference to the KMS key's public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    assert reference.startswith("${data.google_kms_crypto_key_version."), reference
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _cloud_run_environment(container: dict) -> dict[str, str]:
    """What the container sees on Cloud Run: the declared variables, a 32-character value for each one mapped from
    Secret Manager, plus PORT and K_SERVICE, which Cloud Run sets."""
    declared = {e["name"]: e.get("value", "s" * 32) for e in container["env"]}
    assert "PORT" not in declared, "Cloud Run sets PORT itself (from the container port)"
    # Terraform fills in the signing key's public key; tests/infra/test_index_signing.py checks which key it is
    declared["INDEX_PUBLIC_KEY"] = a_public_key(declared["INDEX_PUBLIC_KEY"])
    return {**declared, "PORT": str(container["ports"]["container_port"]), "K_SERVICE": "fmnist-predict"}


@pytest.mark.parametrize("env", ENVS)
def test_the_service_accepts_every_variable_the_stack_sets(synth, env, settings_by_env):
    container = _container(synth, env)
    config = ServiceConfig.from_env(_cloud_run_environment(container))
    assert config.model_uri == settings_by_env[env].names.model_uri
    assert config.workers == settings_by_env[env].service.workers
    assert config.page_enabled is settings_by_env[env].service.page_enabled
    service = settings_by_env[env].service
    assert (config.model_poll_s, config.model_artifact) == (service.model_poll_s, service.model_artifact)
    assert config.require_digests is service.require_digests is True  # production refuses unverifiable models
    assert config.admin_enabled and config.admin_token == "s" * 32  # the operator token, from Secret Manager


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("probe", ["startup_probe", "liveness_probe"])
def test_probes_hit_the_service_health_route_and_port(synth, env, probe):
    container = _container(synth, env)
    config = ServiceConfig.from_env(_cloud_run_environment(container))
    http_get = container[probe]["http_get"]
    assert (http_get["path"], http_get["port"]) == (config.health_route, config.port)
    assert config.port == PORT == container["ports"]["container_port"]


@pytest.mark.parametrize("env", ENVS)
def test_startup_probe_leaves_time_for_a_cold_start_with_a_model_download(synth, env):
    startup = _container(synth, env)["startup_probe"]
    budget = startup["initial_delay_seconds"] + startup["period_seconds"] * startup["failure_threshold"]
    assert budget >= STARTUP_BUDGET_S
    assert startup["timeout_seconds"] <= startup["period_seconds"]
    liveness = _container(synth, env)["liveness_probe"]
    assert liveness["failure_threshold"] * liveness["period_seconds"] >= 60, "one slow request must not restart it"


# ---- the same service settings on Cloud Run and on a Vertex AI deployed model ------------------------------------

# config `service:` key -> the ServiceConfig attribute the service reads it into
SERVICE_READS = {
    "drift_psi_threshold": "drift_psi_threshold",
    "max_instances_per_request": "max_instances",
    "page_enabled": "page_enabled",
    "workers": "workers",
    "model_poll_s": "model_poll_s",
    "model_artifact": "model_artifact",
    "require_digests": "require_digests",
}
ROLLOUT_READS = {  # Cloud Run only: the Vertex AI endpoint's traffic split is the canary there (contracts.serving)
    "challenger": "challenger",
    "rollout_mode": "mode",
    "canary_percent": "canary_percent",
    "shadow_sample_every": "sample_every",
}


def _not_default(field) -> str:
    """A YAML scalar for a `service:` key that differs from its default, so a value the builder ignores shows."""
    default, kind = field.default, field.annotation
    choices = getattr(kind, "__args__", ())
    if choices and all(isinstance(c, str) for c in choices):
        return next(c for c in choices if c != default)
    if isinstance(default, bool):
        return "false" if default else "true"
    if isinstance(default, int):
        return str(default + 3)
    if isinstance(default, float):
        return str(min(default * 2 + 1.5, 99.0) if default < 50 else default / 2)
    if isinstance(default, str):
        return "candidate"
    raise AssertionError(f"service.{field}: no non-default value known for {kind}; extend _not_default")


# every rollout threshold the service reads, off its default (the ground-truth four were once not settable)
CHANGED_THRESHOLDS = {
    "min_requests": "700",
    "min_agreement": "0.97",
    "max_latency_ratio": "1.8",
    "max_error_rate": "0.02",
    "min_clients": "12",
    "max_client_requests": "40",
    "min_labels": "300",
    "min_label_posters": "3",
    "max_poster_labels": "120",
    "max_accuracy_drop": "0.03",
}


@pytest.fixture(scope="module")
def changed_service(tmp_path_factory):
    """dev with every `service:` key off its default: its settings and its synthesized Cloud Run container."""
    from infra.app import build_app, plan_environments
    from settings import load_config

    environ = {f"FMNIST_SERVICE__{k.upper()}": _not_default(f) for k, f in ServiceSettings.model_fields.items()}
    environ |= {f"FMNIST_ROLLOUT__{k.upper()}": v for k, v in CHANGED_THRESHOLDS.items()}
    outdir = tmp_path_factory.mktemp("cdktf-service")
    build_app(plan_environments(["dev"], environ=environ), outdir=str(outdir)).synth()
    stack = json.loads((outdir / "stacks" / "serving-dev" / "cdk.tf.json").read_text())
    [service] = stack["resource"]["google_cloud_run_v2_service"].values()
    return load_config("dev", environ=environ), service["template"]["containers"][0]


def test_cloud_run_and_vertex_ai_get_the_same_service_settings_for_every_key(changed_service):
    from trainer.cloud.deploy_model import build_deploy

    settings, container = changed_service
    defaults = ServiceSettings()
    assert all(getattr(settings.service, k) != getattr(defaults, k) for k in ServiceSettings.model_fields)
    cloud_run = ServiceConfig.from_env(_cloud_run_environment(container))
    record = parse_record("v1", {"source": "custom", "metrics": {"accuracy": 0.9}}, "index.json")
    upload = build_deploy(settings, "v1", record, ["champion"], parent_exists=True).upload
    declared = upload["serving_container_environment_variables"]
    assert not {"MODEL_URI", "AIP_STORAGE_URI", "AIP_HTTP_PORT"} & set(declared), "Vertex AI sets these itself"
    vertex = ServiceConfig.from_env(
        {
            **declared,  # what Vertex AI adds from the upload and the deployment:
            "AIP_STORAGE_URI": f"gs://copy-of/{record.path}",
            "AIP_HTTP_PORT": str(upload["serving_container_ports"][0]),
            "AIP_HEALTH_ROUTE": upload["serving_container_health_route"],
            "AIP_PREDICT_ROUTE": upload["serving_container_predict_route"],
            "AIP_MODE": "ONLINE",
        }
    )
    unmapped = set(ServiceSettings.model_fields) - set(SERVICE_READS) - set(ROLLOUT_READS)
    assert not unmapped, f"service: keys {sorted(unmapped)} reach neither platform: map them in contracts.serving"
    for key, attribute in SERVICE_READS.items():
        wanted = getattr(settings.service, key)
        assert getattr(cloud_run, attribute) == getattr(vertex, attribute) == wanted, f"service.{key}"
    assert cloud_run.rollout is not None and vertex.rollout is None
    for key, attribute in ROLLOUT_READS.items():
        assert getattr(cloud_run.rollout, attribute) == getattr(settings.service, key), f"service.{key}"
    assert cloud_run.rollout.thresholds == settings.rollout.thresholds()
    assert {k: str(getattr(cloud_run.rollout.thresholds, k)) for k in CHANGED_THRESHOLDS} == CHANGED_THRESHOLDS
    unsettable = {f.name for f in dataclasses.fields(Thresholds)} - set(CHANGED_THRESHOLDS)
    assert not unsettable, f"rollout thresholds {sorted(unsettable)}: add them to config `rollout:` and here"
    assert (cloud_run.port, cloud_run.health_route, cloud_run.predict_route) == (
        vertex.port,
        vertex.health_route,
        vertex.predict_route,
    )
    assert declared["FMNIST_ENV"] == "dev" and declared["FMNIST_MODEL_VERSION"] == "v1"
