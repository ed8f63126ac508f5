"""The Cloud Run container's environment and probes, read by the service's own configuration parser: what the
stack declares is what the service accepts, and a container with no promoted model yet can become ready.

The service side (start healthy on an empty registry, answer /predict with 503 until a champion exists) is tested
in tests/service; here the infra side: the probes hit the route and port the service serves its health on, the
startup budget covers a cold start with a model download, and no setting the stack passes is rejected."""

from __future__ import annotations

import pytest

from infra.components.serving import CONTAINER_PORT
from service.config import ServiceConfig

ENVS = ("dev", "prod")
STARTUP_BUDGET_S = 60  # cold start (0.35 s measured locally) plus downloading and warming up a model from GCS


def _container(synth, env: str) -> dict:
    return synth.one(env, "google_cloud_run_v2_service")["template"]["containers"][0]


def _cloud_run_environment(container: dict) -> dict[str, str]:
    """What the container sees on Cloud Run: the declared variables, a 32-character value for each one mapped from
    Secret Manager, plus PORT and K_SERVICE, which Cloud Run sets."""
    declared = {e["name"]: e.get("value", "s" * 32) for e in container["env"]}
    assert "PORT" not in declared, "Cloud Run sets PORT itself (from the container port)"
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
    assert config.port == CONTAINER_PORT == container["ports"]["container_port"]


@pytest.mark.parametrize("env", ENVS)
def test_startup_probe_leaves_time_for_a_cold_start_with_a_model_download(synth, env):
    startup = _container(synth, env)["startup_probe"]
    budget = startup["initial_delay_seconds"] + startup["period_seconds"] * startup["failure_threshold"]
    assert budget >= STARTUP_BUDGET_S
    assert startup["timeout_seconds"] <= startup["period_seconds"]
    liveness = _container(synth, env)["liveness_probe"]
    assert liveness["failure_threshold"] * liveness["period_seconds"] >= 60, "one slow request must not restart it"
