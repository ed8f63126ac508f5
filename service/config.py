"""Service settings, read from environment variables only.

Why environment variables: Vertex AI and Cloud Run configure a container through them (AIP_*, PORT), and the
project's config/<env>.yaml `service:` section is mapped onto the same names at deploy time (infra/). The service
image has no pyyaml or pydantic, so the local registry default is rebuilt here from FMNIST_STORAGE_ROOT.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from contracts.layout import CHAMPION, DEFAULT_STORAGE_ROOT, model_reference, parse_model_reference
from contracts.monitoring_queries import DRIFT_MIN_CLIENTS_CLOUD_RUN
from contracts.rollout import Thresholds
from contracts.serving import HEALTH_ROUTE, PORT, PREDICT_ROUTE, Env

REPO_ROOT = Path(__file__).resolve().parent.parent
VERTEX_BODY_LIMIT = 1_500_000  # Vertex AI rejects online prediction requests over 1.5 MB; so do we
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
MIN_ADMIN_TOKEN_CHARS = 24
ROLLOUT_MODES = ("shadow", "canary")
CALLER_IDENTITIES = ("address", "cloud_run_iam")  # CALLER_IDENTITY: what names a client (service/caller.py)
CLIENT_BUCKETS = 64  # a rollout counts distinct clients as distinct buckets of their keyed hash (service/rollout.py)
MIN_ROUTING_SECRET_CHARS = 24
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _index_public_key(environ: Mapping[str, str], model_uri: str) -> bytes | None:
    """The promoter's public key (INDEX_PUBLIC_KEY, PEM text, or INDEX_PUBLIC_KEY_FILE, a path), checked now so a
    wrong key stops start-up. Required to follow a registry where REQUIRE_SIGNED_INDEX is on (default: on Cloud
    Run and Vertex AI); a plain model directory has no index to sign."""
    from service.index_verification import IndexVerifier, PublicKeyError

    text, path = environ.get(Env.INDEX_PUBLIC_KEY), environ.get(Env.INDEX_PUBLIC_KEY_FILE)
    if text and path:
        raise ConfigError("INDEX_PUBLIC_KEY and INDEX_PUBLIC_KEY_FILE are both set: set one")
    name, pem = Env.INDEX_PUBLIC_KEY, text.encode() if text else None
    if path:
        name = f"INDEX_PUBLIC_KEY_FILE={path}"
        try:
            pem = Path(path).expanduser().read_bytes()
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read it ({exc.strerror})") from None
    if pem is None:
        follows_registry = parse_model_reference(model_uri) is not None
        if follows_registry and _bool(environ, Env.REQUIRE_SIGNED_INDEX, on_managed_platform(environ)):
            raise ConfigError(
                "REQUIRE_SIGNED_INDEX is on (the default on Cloud Run and Vertex AI) but no INDEX_PUBLIC_KEY or "
                "INDEX_PUBLIC_KEY_FILE is set: give the promoter's public key (`gcloud kms keys versions "
                "get-public-key`), or set REQUIRE_SIGNED_INDEX=false to follow an unsigned registry"
            )
        return None
    try:
        IndexVerifier.from_pem(pem, name)
    except PublicKeyError as exc:
        raise ConfigError(str(exc)) from None
    return pem


class ConfigError(ValueError):
    """An environment variable has an invalid value; the message names the variable and what it accepts."""


def default_model_uri(environ: Mapping[str, str]) -> str:
    """The local registry's champion: `<FMNIST_STORAGE_ROOT or .mlops>/models@champion` (relative to the repo)."""
    root = Path(environ.get(Env.FMNIST_STORAGE_ROOT) or DEFAULT_STORAGE_ROOT).expanduser()
    if not root.is_absolute():
        root = REPO_ROOT / root
    return model_reference(str(root / "models"), CHAMPION)


def on_managed_platform(environ: Mapping[str, str]) -> bool:
    """True on Cloud Run (K_SERVICE) or a Vertex AI endpoint (AIP_HTTP_PORT / AIP_MODE)."""
    return any(environ.get(name) for name in (Env.K_SERVICE, Env.AIP_HTTP_PORT, Env.AIP_MODE))


def _int(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a whole number from {low} to {high}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw!r}: expected a whole number from {low} to {high}")
    return value


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a positive number such as 0.2") from None
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{name}={raw!r}: expected a positive number such as 0.2")
    return value


def _bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r}: expected true or false (also 1/0, yes/no, on/off)")


def _choice(environ: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.strip().lower() not in choices:
        raise ConfigError(f"{name}={raw!r}: expected one of {', '.join(choices)}")
    return raw.strip().lower()


def _poll_interval(environ: Mapping[str, str]) -> float:
    """MODEL_POLL_S; MODEL_RECHECK_S (its name while the service only looked for a first model) still counts."""
    if environ.get(Env.MODEL_POLL_S) or not environ.get(Env.MODEL_RECHECK_S):
        return _float(environ, Env.MODEL_POLL_S, 30.0)
    return _float(environ, Env.MODEL_RECHECK_S, 30.0)


def _route(environ: Mapping[str, str], name: str, default: str) -> str:
    raw = environ.get(name) or default
    if not raw.startswith("/") or any(c in raw for c in " ?#<>"):
        raise ConfigError(f"{name}={raw!r}: expected an absolute URL path such as {default}")
    return raw


def _fraction(environ: Mapping[str, str], name: str, default: float, *, allow_zero: bool) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    low = "0" if allow_zero else "above 0"
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number from {low} to 1, such as {default}") from None
    if not (0 <= value <= 1) or (value == 0 and not allow_zero):
        raise ConfigError(f"{name}={raw!r}: expected a number from {low} to 1, such as {default}")
    return value


def challenger_reference(challenger: str, model_uri: str) -> str:
    """What CHALLENGER names, as a model URI: a full reference or directory as is; an alias (`candidate`) or a
    version id (v20261126-104114-3f9a, pinned) as `<root>@<name>` in the registry MODEL_URI names."""
    if "/" in challenger or "@" in challenger or ":" in challenger:
        return challenger
    if not _NAME.fullmatch(challenger):
        raise ConfigError(
            f"CHALLENGER={challenger!r}: expected an alias such as candidate, a registry version id, or a full "
            "reference <models root>@<alias>"
        )
    registry = parse_model_reference(model_uri)
    if registry is None:
        raise ConfigError(
            f"CHALLENGER={challenger!r} is resolved in MODEL_URI's registry, but MODEL_URI={model_uri!r} is a model "
            "directory, not a registry reference <models root>@<alias>: give CHALLENGER as a full reference or "
            "directory"
        )
    return model_reference(registry[0], challenger)


@dataclass(frozen=True)
class RolloutConfig:
    """A challenger beside the champion (service/rollout.py): which model, how it sees traffic, when it wins.

    shadow: the champion answers every request; every SHADOW_SAMPLE_EVERY-th request is also scored by the
    challenger (its answer is only counted). canary: CANARY_PERCENT % of the clients (by a stable hash of their
    key) are answered by the challenger; every SHADOW_SAMPLE_EVERY-th of those is also scored by the champion,
    so agreement is measured in both modes."""

    challenger: str  # CHALLENGER as given (an alias, a version id, a reference)
    reference: str  # the model URI the challenger's slot follows
    mode: str = "shadow"
    canary_percent: float = 10.0
    sample_every: int = 1
    thresholds: Thresholds = Thresholds()
    routing_secret: bytes = field(default=b"", repr=False)  # keys the route hash; never in a reply
    caller_identity: str = "address"

    @classmethod
    def from_env(cls, env: Mapping[str, str], model_uri: str) -> RolloutConfig | None:
        """None when CHALLENGER is empty (the champion alone, nothing added per request)."""
        challenger = (env.get(Env.CHALLENGER) or "").strip()
        mode = (env.get(Env.ROLLOUT_MODE) or "shadow").strip().lower()
        if mode not in ROLLOUT_MODES:
            raise ConfigError(f"ROLLOUT_MODE={env.get('ROLLOUT_MODE')!r}: expected shadow or canary")
        percent_raw = env.get(Env.CANARY_PERCENT) or ""
        try:
            percent = float(percent_raw) if percent_raw else 10.0
        except ValueError:
            percent = -1.0
        if not 0 <= percent <= 100:
            raise ConfigError(f"CANARY_PERCENT={percent_raw!r}: expected a share of clients from 0 to 100, e.g. 10")
        if percent_raw and mode != "canary":
            raise ConfigError(
                f"CANARY_PERCENT={percent_raw!r} only applies to ROLLOUT_MODE=canary (ROLLOUT_MODE is {mode}): "
                "set ROLLOUT_MODE=canary or remove CANARY_PERCENT"
            )
        defaults = Thresholds()
        thresholds = Thresholds(
            min_requests=_int(env, Env.ROLLOUT_MIN_REQUESTS, defaults.min_requests, 1, 10**12),
            min_agreement=_fraction(env, Env.ROLLOUT_MIN_AGREEMENT, defaults.min_agreement, allow_zero=False),
            max_latency_ratio=_float(env, Env.ROLLOUT_MAX_LATENCY_RATIO, defaults.max_latency_ratio),
            max_error_rate=_fraction(env, Env.ROLLOUT_MAX_ERROR_RATE, defaults.max_error_rate, allow_zero=True),
            min_clients=_int(env, Env.ROLLOUT_MIN_CLIENTS, defaults.min_clients, 1, CLIENT_BUCKETS),
            max_client_requests=_int(env, Env.ROLLOUT_MAX_CLIENT_REQUESTS, defaults.max_client_requests, 1, 10**12),
            min_labels=_int(env, Env.ROLLOUT_MIN_LABELS, defaults.min_labels, 1, 10**12),
            min_label_posters=_int(env, Env.ROLLOUT_MIN_LABEL_POSTERS, defaults.min_label_posters, 1, CLIENT_BUCKETS),
            max_poster_labels=_int(env, Env.ROLLOUT_MAX_POSTER_LABELS, defaults.max_poster_labels, 1, 10**12),
            max_accuracy_drop=_fraction(
                env, Env.ROLLOUT_MAX_ACCURACY_DROP, defaults.max_accuracy_drop, allow_zero=True
            ),
        )
        if thresholds.max_poster_labels >= thresholds.min_labels:
            raise ConfigError(
                f"ROLLOUT_MAX_POSTER_LABELS={thresholds.max_poster_labels} must be below ROLLOUT_MIN_LABELS="
                f"{thresholds.min_labels}: otherwise one label poster alone makes live accuracy count"
            )
        sample_every = _int(env, Env.SHADOW_SAMPLE_EVERY, 1, 1, 10**6)
        identity = _choice(env, Env.CALLER_IDENTITY, "address", CALLER_IDENTITIES)
        if not challenger:
            return None
        reference = challenger_reference(challenger, model_uri)
        secret = routing_secret(env)
        return cls(challenger, reference, mode, percent, sample_every, thresholds, secret, identity)


def routing_secret(env: Mapping[str, str]) -> bytes:
    """ROUTING_SECRET keys the canary's route hash, so no client can compute which side a key lands on. Without
    it, a random secret per server: routes stay stable while it runs; on Cloud Run every instance would draw its
    own, so there it is required (a Secret Manager secret mapped onto the variable)."""
    raw = env.get(Env.ROUTING_SECRET) or ""
    if raw and len(raw) >= MIN_ROUTING_SECRET_CHARS:
        return raw.encode("utf-8", "surrogateescape")
    if raw or on_managed_platform(env):
        raise ConfigError(
            f"ROUTING_SECRET: a secret of at least {MIN_ROUTING_SECRET_CHARS} characters is needed with CHALLENGER "
            f"{'on Cloud Run or Vertex AI ' if not raw else ''}(got {len(raw)} characters): the same value on every "
            "instance, from a Secret Manager secret, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return secrets.token_bytes(32)


FEEDBACK_MAX_IMAGES = 64  # a request with more images is not recorded for labels (the record's slot size)


@dataclass(frozen=True)
class FeedbackConfig:
    """Ground truth (service/feedback.py): how many recent predictions each instance holds and for how long, which
    of them are written as rows and where, and who may post labels."""

    slots: int = 8192  # FEEDBACK_SLOTS: predictions held per instance (160 bytes each, shared by its workers)
    max_age_s: float = 3600.0  # FEEDBACK_MAX_AGE_S: older predictions take no label
    sample_every: int = 10  # FEEDBACK_SAMPLE_EVERY: every n-th prediction (per worker) is written as rows
    # FEEDBACK_ROWS: log (JSON lines on stdout: Cloud Logging -> BigQuery; the default on Cloud Run and Vertex AI),
    # sqlite:<path> (a local database file), or off (the default elsewhere: stdout keeps only request lines)
    rows: str = "off"
    posters: frozenset[str] = frozenset()  # FEEDBACK_POSTERS: caller keys allowed to post labels (empty: any)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FeedbackConfig:
        rows = (env.get(Env.FEEDBACK_ROWS) or ("log" if on_managed_platform(env) else "off")).strip()
        if rows not in ("log", "off") and not (rows.startswith("sqlite:") and len(rows) > len("sqlite:")):
            raise ConfigError(
                f"FEEDBACK_ROWS={rows!r}: expected log (JSON lines for Cloud Logging), sqlite:<path of a database "
                "file> (local), or off"
            )
        posters = frozenset(p.strip() for p in (env.get(Env.FEEDBACK_POSTERS) or "").split(",") if p.strip())
        for poster in posters:
            if not poster.startswith(("id:", "ip:")):
                raise ConfigError(
                    f"FEEDBACK_POSTERS: {poster!r} is not a caller key: expected id:<verified email> (Cloud Run "
                    "IAM) or ip:<address>, comma-separated"
                )
        return cls(
            slots=_int(env, Env.FEEDBACK_SLOTS, cls.slots, 16, 1_000_000),
            max_age_s=_float(env, Env.FEEDBACK_MAX_AGE_S, cls.max_age_s),
            sample_every=_int(env, Env.FEEDBACK_SAMPLE_EVERY, cls.sample_every, 1, 10**6),
            rows=rows,
            posters=posters,
        )


@dataclass(frozen=True)
class ServiceConfig:
    """Everything the service reads from its environment; `from_env` documents each variable's name."""

    model_uri: str
    host: str = "0.0.0.0"
    port: int = PORT
    health_route: str = HEALTH_ROUTE
    predict_route: str = PREDICT_ROUTE
    workers: int = 2
    max_instances: int = 256
    max_body_bytes: int = VERTEX_BODY_LIMIT
    drift_psi_threshold: float = 0.2
    drift_min_images: int = 200
    drift_sample_every: int = 8
    drift_min_clients: int = 1
    drift_max_client_images: int = 0  # 0: no cap
    caller_identity: str = "address"
    page_enabled: bool = True
    log_level: str = "INFO"
    google_cloud_project: str | None = None
    trusted_proxy_hops: int = 0
    model_poll_s: float = 30.0
    model_artifact: str = "auto"
    require_digests: bool = False
    index_public_key: bytes | None = field(default=None, repr=False)  # PEM: the promoter's index-signing key
    admin_enabled: bool = False
    admin_token: str | None = field(default=None, repr=False)
    state_dir: str | None = None  # the server's scratch directory (service/state_dir.py); None in-process
    rollout: RolloutConfig | None = None  # CHALLENGER set: a second model beside the champion
    feedback: FeedbackConfig = FeedbackConfig()  # labels for earlier predictions (service/feedback.py)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServiceConfig:
        """Read and validate the service's variables; raise ConfigError naming the first bad one."""
        env = os.environ if environ is None else environ
        port_source = Env.AIP_HTTP_PORT if env.get(Env.AIP_HTTP_PORT) else Env.PORT
        log_level = (env.get(Env.LOG_LEVEL) or "INFO").upper()
        admin_enabled = _bool(env, Env.ADMIN_ENABLED, False)
        admin_token = env.get(Env.ADMIN_TOKEN) or None
        if admin_enabled and (admin_token is None or len(admin_token) < MIN_ADMIN_TOKEN_CHARS):
            raise ConfigError(
                f"ADMIN_ENABLED=true needs ADMIN_TOKEN: a secret of at least {MIN_ADMIN_TOKEN_CHARS} characters "
                "from the environment (on Cloud Run, a Secret Manager secret mapped to the variable; never baked "
                "into the image), e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"LOG_LEVEL={env.get('LOG_LEVEL')!r}: expected DEBUG, INFO, WARNING or ERROR")
        model_uri = env.get(Env.AIP_STORAGE_URI) or env.get(Env.MODEL_URI) or default_model_uri(env)
        cloud_run = bool(env.get(Env.K_SERVICE))  # Vertex AI's front end hides its callers: one client there
        return cls(
            model_uri=model_uri,
            host=env.get(Env.SERVICE_HOST) or "0.0.0.0",
            port=_int(env, port_source, PORT, 1, 65535),
            health_route=_route(env, Env.AIP_HEALTH_ROUTE, HEALTH_ROUTE),
            predict_route=_route(env, Env.AIP_PREDICT_ROUTE, PREDICT_ROUTE),
            workers=_int(env, Env.WORKERS, 2, 1, 64),
            max_instances=_int(env, Env.MAX_INSTANCES, 256, 1, 100_000),
            max_body_bytes=_int(env, Env.MAX_BODY_BYTES, VERTEX_BODY_LIMIT, 1024, 64 * 1024 * 1024),
            drift_psi_threshold=_float(env, Env.DRIFT_PSI_THRESHOLD, 0.2),
            drift_min_images=_int(env, Env.DRIFT_MIN_IMAGES, 200, 1, 10**9),
            drift_sample_every=_int(env, Env.DRIFT_SAMPLE_EVERY, 8, 1, 10**6),
            # on Cloud Run one client must not flag drift (and start a retraining run); locally one client is usual
            drift_min_clients=_int(
                env, Env.DRIFT_MIN_CLIENTS, DRIFT_MIN_CLIENTS_CLOUD_RUN if cloud_run else 1, 1, CLIENT_BUCKETS
            ),
            drift_max_client_images=_int(env, Env.DRIFT_MAX_CLIENT_IMAGES, 100 if cloud_run else 0, 0, 10**9),
            caller_identity=_choice(env, Env.CALLER_IDENTITY, "address", CALLER_IDENTITIES),
            page_enabled=_bool(env, Env.PAGE_ENABLED, not on_managed_platform(env)),
            log_level=log_level,
            google_cloud_project=env.get(Env.GOOGLE_CLOUD_PROJECT) or None,
            trusted_proxy_hops=_int(env, Env.TRUSTED_PROXY_HOPS, 1 if on_managed_platform(env) else 0, 0, 8),
            model_poll_s=_poll_interval(env),
            model_artifact=_choice(env, Env.MODEL_ARTIFACT, "auto", ("auto", "float", "int8")),
            require_digests=_bool(env, Env.REQUIRE_DIGESTS, on_managed_platform(env)),
            index_public_key=_index_public_key(env, model_uri),
            admin_enabled=admin_enabled,
            admin_token=admin_token if admin_enabled else None,
            state_dir=env.get(Env.SERVICE_STATE_DIR) or None,
            rollout=RolloutConfig.from_env(env, model_uri),
            feedback=FeedbackConfig.from_env(env),
        )

    def with_changes(self, **changes: Any) -> ServiceConfig:
        return replace(self, **changes)
