"""The environment contract: Vertex AI variables win over Cloud Run's, defaults as documented, bad values fail."""

import re
from pathlib import Path

import pytest

from service.config import REPO_ROOT, ConfigError, ServiceConfig, default_model_uri


def test_defaults_serve_the_local_champion_on_8080():
    config = ServiceConfig.from_env({})
    assert (config.port, config.health_route, config.predict_route) == (8080, "/health", "/predict")
    assert config.model_uri == f"{REPO_ROOT / '.mlops' / 'models'}@champion"
    assert config.page_enabled is True
    assert (config.workers, config.max_instances, config.drift_psi_threshold) == (2, 256, 0.2)
    assert config.max_body_bytes == 1_500_000


def test_vertex_variables_take_precedence_over_cloud_run():
    config = ServiceConfig.from_env(
        {
            "AIP_HTTP_PORT": "7080",
            "PORT": "9090",
            "AIP_HEALTH_ROUTE": "/v1/health",
            "AIP_PREDICT_ROUTE": "/v1/models/fmnist:predict",
            "AIP_STORAGE_URI": "gs://bucket/model",
            "MODEL_URI": "/elsewhere",
        }
    )
    assert config.port == 7080
    assert (config.health_route, config.predict_route) == ("/v1/health", "/v1/models/fmnist:predict")
    assert config.model_uri == "gs://bucket/model"
    assert config.page_enabled is False  # managed platform: the page is opt-in


# Cloud Run following a registry needs the promoter's public key (tests/service/test_index_verification.py); the
# tests of other variables say they follow an unsigned registry.
UNSIGNED = {"REQUIRE_SIGNED_INDEX": "false"}


def test_cloud_run_port_and_model_uri():
    config = ServiceConfig.from_env(
        {"PORT": "9090", "MODEL_URI": "/models@candidate", "K_SERVICE": "fmnist", **UNSIGNED}
    )
    assert (config.port, config.model_uri, config.page_enabled) == (9090, "/models@candidate", False)
    assert ServiceConfig.from_env({"K_SERVICE": "x", **UNSIGNED, "PAGE_ENABLED": "yes"}).page_enabled is True


def test_storage_root_override_relative_and_absolute(tmp_path):
    assert default_model_uri({"FMNIST_STORAGE_ROOT": str(tmp_path)}) == f"{tmp_path / 'models'}@champion"
    assert default_model_uri({"FMNIST_STORAGE_ROOT": "scratch"}) == f"{Path(REPO_ROOT, 'scratch', 'models')}@champion"


@pytest.mark.parametrize(
    "name,value,fragment",
    [
        ("PORT", "eighty", "PORT='eighty'"),
        ("AIP_HTTP_PORT", "70000", "1 to 65535"),
        ("WORKERS", "0", "WORKERS"),
        ("MAX_INSTANCES", "-3", "MAX_INSTANCES"),
        ("DRIFT_PSI_THRESHOLD", "nan", "positive number"),
        ("DRIFT_PSI_THRESHOLD", "-1", "positive number"),
        ("PAGE_ENABLED", "maybe", "true or false"),
        ("AIP_PREDICT_ROUTE", "predict", "absolute URL path"),
        ("LOG_LEVEL", "chatty", "LOG_LEVEL"),
        ("MODEL_POLL_S", "0", "MODEL_POLL_S='0': expected a positive number"),
        ("MODEL_ARTIFACT", "fp16", "MODEL_ARTIFACT='fp16': expected one of auto, float, int8"),
        ("REQUIRE_DIGESTS", "sometimes", "REQUIRE_DIGESTS='sometimes': expected true or false"),
    ],
)
def test_bad_values_name_the_variable(name, value, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        ServiceConfig.from_env({name: value})


def test_operator_routes_are_off_by_default_and_need_a_real_token_when_on():
    assert ServiceConfig.from_env({}).admin_enabled is False
    for token in (None, "short"):
        env = {"ADMIN_ENABLED": "true", **({"ADMIN_TOKEN": token} if token else {})}
        with pytest.raises(ConfigError, match="ADMIN_ENABLED=true needs ADMIN_TOKEN.*never baked into the image"):
            ServiceConfig.from_env(env)
    config = ServiceConfig.from_env({"ADMIN_ENABLED": "true", "ADMIN_TOKEN": "t" * 32})
    assert config.admin_token == "t" * 32 and "t" * 32 not in repr(config)
    assert ServiceConfig.from_env({"ADMIN_TOKEN": "t" * 32}).admin_token is None  # a token alone enables nothing


def test_forwarded_for_is_trusted_only_on_the_managed_platforms():
    assert ServiceConfig.from_env({}).trusted_proxy_hops == 0
    assert ServiceConfig.from_env({"K_SERVICE": "fmnist", **UNSIGNED}).trusted_proxy_hops == 1
    assert (
        ServiceConfig.from_env({"K_SERVICE": "fmnist", **UNSIGNED, "TRUSTED_PROXY_HOPS": "2"}).trusted_proxy_hops == 2
    )


def test_model_following_defaults_and_the_deprecated_recheck_name():
    config = ServiceConfig.from_env({})
    assert (config.model_poll_s, config.model_artifact, config.require_digests) == (30.0, "auto", False)
    assert (
        ServiceConfig.from_env({"K_SERVICE": "fmnist", **UNSIGNED}).require_digests is True
    )  # managed: refuse unverifiable
    assert (
        ServiceConfig.from_env({"AIP_MODE": "PREDICTION", "REQUIRE_DIGESTS": "false", **UNSIGNED}).require_digests
        is False
    )
    assert ServiceConfig.from_env({"MODEL_RECHECK_S": "5"}).model_poll_s == 5.0  # the old name still counts
    assert ServiceConfig.from_env({"MODEL_RECHECK_S": "5", "MODEL_POLL_S": "2"}).model_poll_s == 2.0
    assert ServiceConfig.from_env({"MODEL_ARTIFACT": "INT8"}).model_artifact == "int8"


def test_no_challenger_means_no_rollout():
    assert ServiceConfig.from_env({"MODEL_URI": "/m@champion"}).rollout is None


def test_challenger_is_resolved_in_the_champions_registry():
    from contracts.rollout import Thresholds

    env = {"MODEL_URI": "gs://b-models@champion", "CHALLENGER": "candidate"}
    rollout = ServiceConfig.from_env(env).rollout
    assert rollout is not None
    assert (rollout.reference, rollout.mode, rollout.sample_every) == ("gs://b-models@candidate", "shadow", 1)
    assert rollout.thresholds == Thresholds()
    version = ServiceConfig.from_env({**env, "CHALLENGER": "v20261126-104114-3f9a"}).rollout
    assert version is not None and version.reference == "gs://b-models@v20261126-104114-3f9a"
    full = ServiceConfig.from_env({**env, "CHALLENGER": "/other/models@next"}).rollout
    assert full is not None and full.reference == "/other/models@next"
    canary = ServiceConfig.from_env(
        {
            **env,
            "ROLLOUT_MODE": "canary",
            "CANARY_PERCENT": "12.5",
            "SHADOW_SAMPLE_EVERY": "4",
            "ROLLOUT_MIN_REQUESTS": "50",
            "ROLLOUT_MIN_AGREEMENT": "0.9",
            "ROLLOUT_MAX_LATENCY_RATIO": "2",
            "ROLLOUT_MAX_ERROR_RATE": "0",
            "ROLLOUT_MIN_CLIENTS": "20",
            "ROLLOUT_MAX_CLIENT_REQUESTS": "5",
            "ROUTING_SECRET": "s" * 24,
            "CALLER_IDENTITY": "cloud_run_iam",
        }
    ).rollout
    assert canary is not None
    assert (canary.mode, canary.canary_percent, canary.sample_every) == ("canary", 12.5, 4)
    assert canary.thresholds == Thresholds(50, 0.9, 2.0, 0.0, min_clients=20, max_client_requests=5)
    assert (canary.routing_secret, canary.caller_identity) == (b"s" * 24, "cloud_run_iam")
    assert "routing_secret" not in repr(canary)


def test_drift_needs_distinct_clients_on_cloud_run_only():
    local = ServiceConfig.from_env({"MODEL_URI": "/m@champion"})
    assert (local.drift_min_clients, local.drift_max_client_images) == (1, 0)
    cloud_run = ServiceConfig.from_env({"MODEL_URI": "/m@champion", "K_SERVICE": "fmnist-predict", **UNSIGNED})
    assert (cloud_run.drift_min_clients, cloud_run.drift_max_client_images) == (10, 100)
    vertex = ServiceConfig.from_env({"AIP_STORAGE_URI": "gs://b/m", "AIP_HTTP_PORT": "8080"})
    assert vertex.drift_min_clients == 1  # Vertex AI's front end hides its callers
    with pytest.raises(ConfigError, match="DRIFT_MIN_CLIENTS='0'"):
        ServiceConfig.from_env({"MODEL_URI": "/m@champion", "DRIFT_MIN_CLIENTS": "0"})


def test_the_routing_secret_is_random_per_server_locally_and_required_on_cloud_run():
    env = {"MODEL_URI": "/m@champion", "CHALLENGER": "candidate"}
    first, second = ServiceConfig.from_env(env).rollout, ServiceConfig.from_env(env).rollout
    assert first is not None and second is not None
    assert len(first.routing_secret) == 32 and first.routing_secret != second.routing_secret
    with pytest.raises(ConfigError, match="ROUTING_SECRET: a secret of at least 24 characters is needed"):
        ServiceConfig.from_env({**env, "K_SERVICE": "fmnist", **UNSIGNED})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CHALLENGER": "candidate", "MODEL_URI": "/a/model-dir"}, "MODEL_URI='/a/model-dir' is a model directory"),
        ({"CHALLENGER": "cand idate"}, "expected an alias such as candidate"),
        ({"CHALLENGER": "candidate", "ROLLOUT_MODE": "blue-green"}, "expected shadow or canary"),
        ({"CHALLENGER": "c", "ROLLOUT_MODE": "canary", "CANARY_PERCENT": "101"}, "from 0 to 100"),
        ({"CHALLENGER": "c", "ROLLOUT_MODE": "canary", "CANARY_PERCENT": "ten"}, "from 0 to 100"),
        ({"CHALLENGER": "c", "CANARY_PERCENT": "10"}, "only applies to ROLLOUT_MODE=canary"),
        ({"CHALLENGER": "c", "SHADOW_SAMPLE_EVERY": "0"}, "SHADOW_SAMPLE_EVERY='0'"),
        ({"CHALLENGER": "c", "ROLLOUT_MIN_AGREEMENT": "1.5"}, "ROLLOUT_MIN_AGREEMENT='1.5'"),
        ({"CHALLENGER": "c", "ROLLOUT_MIN_AGREEMENT": "0"}, "from above 0 to 1"),
        ({"CHALLENGER": "c", "ROLLOUT_MAX_ERROR_RATE": "-0.1"}, "ROLLOUT_MAX_ERROR_RATE"),
        ({"CHALLENGER": "c", "ROLLOUT_MIN_REQUESTS": "many"}, "ROLLOUT_MIN_REQUESTS='many'"),
        ({"CHALLENGER": "c", "ROLLOUT_MAX_LATENCY_RATIO": "-1"}, "ROLLOUT_MAX_LATENCY_RATIO"),
        ({"CHALLENGER": "c", "ROLLOUT_MIN_CLIENTS": "65"}, "ROLLOUT_MIN_CLIENTS='65': expected a whole number from 1"),
        ({"CHALLENGER": "c", "ROLLOUT_MAX_CLIENT_REQUESTS": "0"}, "ROLLOUT_MAX_CLIENT_REQUESTS='0'"),
        ({"CHALLENGER": "c", "ROLLOUT_MIN_LABELS": "50"}, "ROLLOUT_MAX_POSTER_LABELS=100 must be below"),
        ({"CHALLENGER": "c", "ROLLOUT_MAX_ACCURACY_DROP": "2"}, "ROLLOUT_MAX_ACCURACY_DROP='2'"),
        ({"CHALLENGER": "c", "ROUTING_SECRET": "short"}, "got 5 characters"),
        ({"CHALLENGER": "c", "CALLER_IDENTITY": "x-client-id"}, "expected one of address, cloud_run_iam"),
    ],
)
def test_bad_rollout_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        ServiceConfig.from_env({"MODEL_URI": "/m@champion", **env})


def test_the_servers_state_directory_is_read_like_every_other_variable(tmp_path, monkeypatch):
    """SERVICE_STATE_DIR (exported by service/state_dir.py for the workers) reaches the model reader through the
    config; without it (an in-process app) downloads go to TMPDIR."""
    from service.model_reader import ModelReader

    config = ServiceConfig.from_env({"SERVICE_STATE_DIR": str(tmp_path / "state")})
    assert config.state_dir == str(tmp_path / "state")
    assert ModelReader(config.state_dir).scratch_dir == str(tmp_path / "state")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    assert ServiceConfig.from_env({}).state_dir is None
    assert ModelReader(None).scratch_dir == str(tmp_path / "tmp")
