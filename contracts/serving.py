"""The serving contract: routes, port, the environment the service reads, and deployed-model names.

Why here: the service reads these names (service/config.py), the Cloud Run construct (infra/components/serving.py)
and the Vertex AI deploy (`trainer deploy-model`) write them, `trainer rollout` and the lifecycle's shadow parse or
set them. One name that differs between a writer and the reader makes a setting silently fall back to its default.

`service_environment` builds the service's variables from the config's `service:` and `rollout:` sections, for
both platforms:
- Cloud Run gets every service setting, the rollout's (with a challenger), MODEL_URI (the registry reference the
  service follows) and FMNIST_ENV; Cloud Run sets PORT and K_SERVICE itself.
- a Vertex AI deployed model gets the same service settings and FMNIST_ENV, but no MODEL_URI (Vertex AI sets
  AIP_STORAGE_URI to its copy of the version's directory, and AIP_HTTP_PORT, AIP_HEALTH_ROUTE and
  AIP_PREDICT_ROUTE from the uploaded container spec) and no in-service rollout: each deployed model serves one
  pinned version, with no registry to resolve a challenger's alias in; the endpoint's traffic split is the canary
  there (`deploy-model --canary`, `trainer rollout`).
"""

from __future__ import annotations

from typing import Literal, Protocol

from contracts.rollout import Thresholds

PORT = 8080  # the container port on both platforms and `python -m service`'s default
HEALTH_ROUTE = "/health"
PREDICT_ROUTE = "/predict"
ROLLOUT_ROUTE = "/monitoring/rollout"
FEEDBACK_ROUTE = "/feedback"  # labels for earlier predictions (service/feedback.py)
ACCURACY_ROUTE = "/monitoring/accuracy"  # live accuracy from those labels, per version and class

DEPLOYED_MODEL_PREFIX = "fmnist-"  # a Vertex AI deployed model's display name: fmnist-<registry version>

Platform = Literal["cloud-run", "vertex"]


class Env:
    """Every environment variable the service reads (service/config.py), by name."""

    # set by the platforms
    PORT = "PORT"
    K_SERVICE = "K_SERVICE"
    AIP_HTTP_PORT = "AIP_HTTP_PORT"
    AIP_MODE = "AIP_MODE"
    AIP_STORAGE_URI = "AIP_STORAGE_URI"
    AIP_HEALTH_ROUTE = "AIP_HEALTH_ROUTE"
    AIP_PREDICT_ROUTE = "AIP_PREDICT_ROUTE"
    GOOGLE_CLOUD_PROJECT = "GOOGLE_CLOUD_PROJECT"
    # set by the deploy (Cloud Run construct, deploy-model) or by hand
    MODEL_URI = "MODEL_URI"
    FMNIST_ENV = "FMNIST_ENV"
    FMNIST_STORAGE_ROOT = "FMNIST_STORAGE_ROOT"
    FMNIST_MODEL_VERSION = "FMNIST_MODEL_VERSION"
    SERVICE_HOST = "SERVICE_HOST"
    WORKERS = "WORKERS"
    MAX_INSTANCES = "MAX_INSTANCES"
    MAX_BODY_BYTES = "MAX_BODY_BYTES"
    DRIFT_PSI_THRESHOLD = "DRIFT_PSI_THRESHOLD"
    DRIFT_MIN_IMAGES = "DRIFT_MIN_IMAGES"
    DRIFT_SAMPLE_EVERY = "DRIFT_SAMPLE_EVERY"
    PAGE_ENABLED = "PAGE_ENABLED"
    LOG_LEVEL = "LOG_LEVEL"
    TRUSTED_PROXY_HOPS = "TRUSTED_PROXY_HOPS"
    MODEL_POLL_S = "MODEL_POLL_S"
    MODEL_RECHECK_S = "MODEL_RECHECK_S"  # MODEL_POLL_S's former name, still read
    MODEL_ARTIFACT = "MODEL_ARTIFACT"
    REQUIRE_DIGESTS = "REQUIRE_DIGESTS"
    ADMIN_ENABLED = "ADMIN_ENABLED"
    ADMIN_TOKEN = "ADMIN_TOKEN"
    # set by the service itself for its workers (service/state_dir.py): metrics, drift counts, model downloads
    SERVICE_STATE_DIR = "SERVICE_STATE_DIR"
    # the registry index's signature (service/index_verification.py)
    INDEX_PUBLIC_KEY = "INDEX_PUBLIC_KEY"
    INDEX_PUBLIC_KEY_FILE = "INDEX_PUBLIC_KEY_FILE"
    REQUIRE_SIGNED_INDEX = "REQUIRE_SIGNED_INDEX"
    # who a client is, and per-client caps (service/caller.py, service/drift.py)
    CALLER_IDENTITY = "CALLER_IDENTITY"
    DRIFT_MAX_CLIENT_IMAGES = "DRIFT_MAX_CLIENT_IMAGES"
    DRIFT_MIN_CLIENTS = "DRIFT_MIN_CLIENTS"
    ROUTING_SECRET = "ROUTING_SECRET"
    # champion/challenger in the service (service/rollout.py)
    CHALLENGER = "CHALLENGER"
    ROLLOUT_MODE = "ROLLOUT_MODE"
    CANARY_PERCENT = "CANARY_PERCENT"
    SHADOW_SAMPLE_EVERY = "SHADOW_SAMPLE_EVERY"
    ROLLOUT_MIN_REQUESTS = "ROLLOUT_MIN_REQUESTS"
    ROLLOUT_MIN_AGREEMENT = "ROLLOUT_MIN_AGREEMENT"
    ROLLOUT_MAX_LATENCY_RATIO = "ROLLOUT_MAX_LATENCY_RATIO"
    ROLLOUT_MAX_ERROR_RATE = "ROLLOUT_MAX_ERROR_RATE"
    ROLLOUT_MIN_CLIENTS = "ROLLOUT_MIN_CLIENTS"
    ROLLOUT_MAX_CLIENT_REQUESTS = "ROLLOUT_MAX_CLIENT_REQUESTS"
    ROLLOUT_MIN_LABELS = "ROLLOUT_MIN_LABELS"
    ROLLOUT_MIN_LABEL_POSTERS = "ROLLOUT_MIN_LABEL_POSTERS"
    ROLLOUT_MAX_POSTER_LABELS = "ROLLOUT_MAX_POSTER_LABELS"
    ROLLOUT_MAX_ACCURACY_DROP = "ROLLOUT_MAX_ACCURACY_DROP"
    # ground truth: the record of recent predictions and the rows (service/feedback.py)
    FEEDBACK_SLOTS = "FEEDBACK_SLOTS"
    FEEDBACK_MAX_AGE_S = "FEEDBACK_MAX_AGE_S"
    FEEDBACK_SAMPLE_EVERY = "FEEDBACK_SAMPLE_EVERY"
    FEEDBACK_ROWS = "FEEDBACK_ROWS"
    FEEDBACK_POSTERS = "FEEDBACK_POSTERS"


# config `service:` key -> the variable it becomes, on both platforms
SERVICE_SETTING_VARIABLES: dict[str, str] = {
    "drift_psi_threshold": Env.DRIFT_PSI_THRESHOLD,
    "max_instances_per_request": Env.MAX_INSTANCES,
    "page_enabled": Env.PAGE_ENABLED,
    "workers": Env.WORKERS,
    "model_poll_s": Env.MODEL_POLL_S,
    "model_artifact": Env.MODEL_ARTIFACT,
    "require_digests": Env.REQUIRE_DIGESTS,
}
# config `service:` keys of the in-service rollout: Cloud Run only (see the module docstring)
ROLLOUT_SETTING_VARIABLES: dict[str, str] = {
    "challenger": Env.CHALLENGER,
    "rollout_mode": Env.ROLLOUT_MODE,
    "canary_percent": Env.CANARY_PERCENT,
    "shadow_sample_every": Env.SHADOW_SAMPLE_EVERY,
}


class ServiceOptions(Protocol):
    """What `service_environment` reads of the config's `service:` section (settings.ServiceSettings)."""

    @property
    def drift_psi_threshold(self) -> float: ...
    @property
    def max_instances_per_request(self) -> int: ...
    @property
    def page_enabled(self) -> bool: ...
    @property
    def workers(self) -> int: ...
    @property
    def model_poll_s(self) -> float: ...
    @property
    def model_artifact(self) -> str: ...
    @property
    def require_digests(self) -> bool: ...
    @property
    def challenger(self) -> str: ...
    @property
    def rollout_mode(self) -> str: ...
    @property
    def canary_percent(self) -> float: ...
    @property
    def shadow_sample_every(self) -> int: ...


def _text(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def thresholds_environment(thresholds: Thresholds) -> dict[str, str]:
    """The rollout thresholds (config `rollout:`) as the service reads them."""
    return {
        Env.ROLLOUT_MIN_REQUESTS: str(thresholds.min_requests),
        Env.ROLLOUT_MIN_AGREEMENT: str(thresholds.min_agreement),
        Env.ROLLOUT_MAX_LATENCY_RATIO: str(thresholds.max_latency_ratio),
        Env.ROLLOUT_MAX_ERROR_RATE: str(thresholds.max_error_rate),
        Env.ROLLOUT_MIN_CLIENTS: str(thresholds.min_clients),
        Env.ROLLOUT_MAX_CLIENT_REQUESTS: str(thresholds.max_client_requests),
        Env.ROLLOUT_MIN_LABELS: str(thresholds.min_labels),
        Env.ROLLOUT_MIN_LABEL_POSTERS: str(thresholds.min_label_posters),
        Env.ROLLOUT_MAX_POSTER_LABELS: str(thresholds.max_poster_labels),
        Env.ROLLOUT_MAX_ACCURACY_DROP: str(thresholds.max_accuracy_drop),
    }


def service_environment(
    service: ServiceOptions,
    thresholds: Thresholds,
    *,
    env_name: str,
    platform: Platform,
    model_uri: str | None = None,
) -> dict[str, str]:
    """The service container's environment on `platform`, from the config's `service:` and `rollout:` sections.

    cloud-run needs `model_uri` (the registry reference to follow); vertex must not have one (AIP_STORAGE_URI).
    """
    if (platform == "cloud-run") != (model_uri is not None):
        raise ValueError(f"{platform}: model_uri is {'required' if platform == 'cloud-run' else 'set by Vertex AI'}")
    env = {Env.MODEL_URI: model_uri} if model_uri is not None else {}
    env |= {name: _text(getattr(service, key)) for key, name in SERVICE_SETTING_VARIABLES.items()}
    env[Env.FMNIST_ENV] = env_name
    if platform == "cloud-run" and service.challenger:
        env |= {
            Env.CHALLENGER: service.challenger,
            Env.ROLLOUT_MODE: service.rollout_mode,
            Env.SHADOW_SAMPLE_EVERY: str(service.shadow_sample_every),
            **thresholds_environment(thresholds),
        }
        if service.rollout_mode == "canary":
            env[Env.CANARY_PERCENT] = str(service.canary_percent)
    return env


def deployed_model_name(version: str) -> str:
    """The Vertex AI deployed model's display name for a registry version."""
    return f"{DEPLOYED_MODEL_PREFIX}{version}"


def deployed_model_version(display_name: str) -> str:
    """The registry version a deployed model serves (a name deploy-model did not write is returned as is)."""
    if display_name.startswith(DEPLOYED_MODEL_PREFIX):
        return display_name[len(DEPLOYED_MODEL_PREFIX) :]
    return display_name
