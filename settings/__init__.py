"""Per-environment settings: `config/<env>.yaml`, overridden by environment variables, validated on load.

Why one typed model: every step (ingest, train, serve, infra) reads the same file, and a typo in a key must fail
at load time with the key's name, not as a KeyError deep inside a training run.

Environment overrides: `FMNIST_ENV` picks the file; `FMNIST_<SECTION>__<KEY>=value` (or `FMNIST_<KEY>` for a
top-level key) overrides one value, parsed as a YAML scalar (`FMNIST_TRAINING__EPOCHS=3`).
Section classes are owned by the unit that reads them (data, training/registry/vertex, service, infra).
The service does not import this package (its image has neither pyyaml nor pydantic): infra/ maps the `service:`
section onto its environment variables.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from contracts import layout
from contracts.cloud import CloudNames
from contracts.rollout import Thresholds

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "config"
ENV_PREFIX = "FMNIST_"


class ConfigError(ValueError):
    """A configuration file or override is missing or invalid; the message names the key and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataSettings(_Section):
    """Where raw data comes from: `trainer ingest` tries source, then the Debian package, then the download."""

    source: str | None = Field(None, description="configured datasets location (dir, gs:// or URL); tried first")
    debian_dir: str = "/usr/share/datasets/fashion-mnist"
    download_url: str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    cache_dir: str = "~/.cache/fmnist-mlops"


class TrainingSettings(_Section):
    """Training defaults; CLI flags and Vertex AI args override them. None = the preset's value."""

    preset: str = Field(
        "demo",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="smoke, demo, full, gpu, or a preset `trainer tune --save-preset` saved (checked when training)",
    )
    validation_fraction: float = Field(0.1, gt=0, lt=0.5)
    seed: int = 42
    dataset_version: str | None = Field(None, description="dataset version id; None = the datasets bucket's LATEST")
    epochs: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    learning_rate: float | None = Field(None, gt=0)
    width: int | None = Field(None, ge=1, description="filters of the first conv block (doubles per block)")
    augment: bool | None = None


class RegistrySettings(_Section):
    """Quality gate for promotion to champion, and export verification limits."""

    accuracy_floor: float = Field(0.85, ge=0, le=1)
    regression_tolerance: float = Field(0.005, ge=0, le=1)
    max_probability_diff: float = Field(1e-4, gt=0, description="serving artifact vs Keras, per probability")
    promote_pipeline_runs: bool = Field(
        False,
        description="a pipeline run (schedule, new data, drift) promotes on its own; off: it gates, reports and "
        "waits for `trainer registry promote <version>`",
    )
    paired_gate: bool = Field(
        True, description="promotion scores candidate and champion on the same gate sets (trainer/models/gate.py)"
    )
    require_pinned_gate_set: bool = Field(
        True, description="refuse to promote over a champion unless the official test set (published MD5s) is stored"
    )
    gate_alpha: float = Field(0.05, gt=0, lt=1, description="exact McNemar: refuse a significantly worse candidate")
    gate_recall_margin: float = Field(0.02, ge=0, le=1, description="largest per-class recall drop allowed")
    gate_calibration_tolerance: float = Field(0.02, ge=0, le=1, description="largest calibration error increase")
    index_signer: Literal["auto", "kms", "local", "none"] = Field(
        "auto",
        description="who signs registry/index.json (trainer/models/index_signing.py): auto = Cloud KMS on gcp, "
        "a local key pair under <storage_root>/promoter/ locally",
    )


class VertexSettings(_Section):
    """Vertex AI custom jobs, experiments and AutoML (gcp target only)."""

    machine_type: str = "n1-standard-8"
    accelerator_type: str | None = None
    accelerator_count: int = Field(0, ge=0)
    worker_count: int = Field(1, ge=1)
    experiment: str = "fmnist"
    automl_budget_milli_node_hours: int = Field(8000, ge=8000)
    # Names of what infra/ declares; None = the name contracts.cloud derives from project/region/bucket_prefix.
    artifact_repository: str | None = Field(None, description="Artifact Registry repo id; default <prefix>-images")
    trainer_image: str | None = Field(None, description="full image URI; default <repo>/trainer:<content tag>")
    service_image: str | None = Field(None, description="full image URI; default <repo>/service:<content tag>")
    service_account: str | None = Field(None, description="trainer SA email; default <prefix>-trainer@<project>")
    serving_service_account: str | None = Field(None, description="default <prefix>-service@<project>")
    tensorboard: str | None = Field(None, description="TensorBoard resource name (`cdktf output` tensorboard)")
    kms_key: str | None = Field(
        None, description="CMEK key resource name for jobs, models and AutoML; None = the key infra/ declares"
    )
    parent_model: str = Field("fmnist-classifier", description="model id of the one parent model in the registry")
    serving_machine_type: str = "n1-standard-2"
    min_replica_count: int = Field(1, ge=1)
    max_replica_count: int = Field(2, ge=1)


class RolloutSettings(_Section):
    """When a challenger may replace the champion (contracts.rollout.verdict), and how long the canary is watched."""

    min_requests: int = Field(500, ge=1, description="requests the challenger must serve before a verdict")
    min_agreement: float = Field(0.98, gt=0, le=1, description="top-class agreement with the champion")
    max_latency_ratio: float = Field(1.5, gt=0, description="challenger p99 latency / champion p99 latency")
    max_error_rate: float = Field(0.01, ge=0, le=1)
    window_minutes: int = Field(60, ge=1, description="Cloud Monitoring window the gcp rollout reads")
    min_clients: int = Field(10, ge=1, le=64, description="distinct clients the challenger must have served")
    max_client_requests: int = Field(50, ge=1, description="requests credited to one client in the verdict")
    ramp_steps: list[float] = Field(
        [5.0, 25.0, 50.0, 100.0], min_length=1, description="`trainer ramp`: the challenger's shares, ending at 100"
    )
    ramp_alpha: float = Field(0.05, gt=0, lt=1, description="`trainer ramp`: level of its sequential tests")
    # ground truth (/feedback): when live accuracy counts in the verdict, and how much worse a challenger may be
    min_labels: int = Field(200, ge=1, description="credited labels per version before accuracy counts")
    min_label_posters: int = Field(2, ge=1, le=64, description="distinct label posters per version")
    max_poster_labels: int = Field(100, ge=1, description="labels credited to one poster per version")
    max_accuracy_drop: float = Field(0.02, ge=0, le=1, description="how much less accurate a challenger may be")

    @model_validator(mode="after")
    def _no_poster_decides_alone(self):
        if self.max_poster_labels >= self.min_labels:
            raise ValueError(
                f"rollout.max_poster_labels ({self.max_poster_labels}) must be below rollout.min_labels "
                f"({self.min_labels}): otherwise one label poster alone can make live accuracy count; "
                "lower max_poster_labels or raise min_labels"
            )
        return self

    def thresholds(self) -> Thresholds:
        return Thresholds(
            self.min_requests,
            self.min_agreement,
            self.max_latency_ratio,
            self.max_error_rate,
            self.min_clients,
            self.max_client_requests,
            self.min_labels,
            self.min_label_posters,
            self.max_poster_labels,
            self.max_accuracy_drop,
        )


class ServiceSettings(_Section):
    """Prediction service settings passed to the container as environment variables."""

    drift_psi_threshold: float = Field(0.2, gt=0)
    max_instances_per_request: int = Field(256, ge=1)
    page_enabled: bool = True
    workers: int = Field(2, ge=1)
    model_poll_s: float = Field(30.0, gt=0, description="seconds between reads of the registry alias (MODEL_POLL_S)")
    model_artifact: Literal["auto", "float", "int8"] = Field(
        "auto",
        description="auto: the export's int8 artifact where the export measured it faster on this CPU, else float; "
        "int8: wherever it passed its gate (MODEL_ARTIFACT)",
    )
    require_digests: bool = Field(
        True, description="refuse model versions without recorded SHA-256 digests (REQUIRE_DIGESTS)"
    )
    # champion/challenger in the service (service/rollout.py); thresholds come from `rollout:`
    challenger: str = Field("", description="alias, version id or reference of a challenger; empty = no rollout")
    rollout_mode: Literal["shadow", "canary"] = "shadow"
    canary_percent: float = Field(10.0, ge=0, le=100, description="share of clients the challenger answers (canary)")
    shadow_sample_every: int = Field(1, ge=1, description="score every k-th request with the other model")


class WorkbenchSettings(_Section):
    """An optional Vertex AI Workbench instance for the notebooks in notebooks/ (infra/components/workbench.py)."""

    enabled: bool = Field(False, description="declare the instance (off by default: it costs while it runs)")
    machine_type: str = Field("e2-standard-4", pattern=r"^[a-z0-9]+-[a-z0-9-]+$")
    idle_shutdown_minutes: int = Field(
        60, ge=10, le=1440, description="stop the VM after this long without kernel or terminal activity"
    )
    users: list[str] = Field(
        default_factory=list, description="IAM members who may open it (they may act as its service account)"
    )


class InfraSettings(_Section):
    """What `infra/` declares for this environment (owned by infra/; see infra/README.md for each setting)."""

    state_bucket: str | None = Field(
        None,
        description="GCS bucket in this environment's own project holding its Terraform state (the bootstrap stack "
        "creates it); unset: local state file",
    )
    billing_account: str | None = Field(
        None,
        pattern=r"^[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$",
        description="billing account the budget watches (XXXXXX-XXXXXX-XXXXXX)",
    )
    budget_amount: float = Field(50, gt=0)
    budget_currency: str | None = Field(
        None,
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code of the billing account's currency (the budget must use it); no default",
    )
    grant_billing_roles: bool = Field(
        True,
        description="the bootstrap stack grants the deployer billing.costsManager and the planner billing.viewer on "
        "the billing account (needs a billing account administrator; false: grant them with gcloud)",
    )
    alert_email: str = Field("mlops-alerts@example.com", pattern=r"^[^@\s]+@[^@\s]+$")
    deletion_protection: bool = Field(
        False, description="True: every destroy blocker on (prod); False: destroy cleans up"
    )
    public_endpoint: bool = Field(False, description="True: allUsers may invoke the Cloud Run service")
    invokers: list[str] = Field(default_factory=list, description="IAM members allowed to call the Cloud Run service")
    promotion_approvers: list[str] = Field(
        default_factory=list,
        description="IAM members (people, groups) who may execute the promoter's approval job: promote a version "
        "that passed the gate (`trainer promotion approve`); nobody by default",
    )
    ingress: Literal["all", "internal", "internal-and-load-balancer"] = "all"
    min_instances: int = Field(0, ge=0)
    max_instances: int = Field(3, ge=1)
    service_cpu: str = "1"
    service_memory: str = "512Mi"
    endpoint_id: int = Field(1001, ge=1, lt=10**10, description="numeric id of the Vertex AI endpoint (no leading 0)")
    kms_key_ring: str = Field(
        "fmnist",
        pattern=r"^[a-zA-Z0-9_-]{1,63}$",
        description="key ring of the bootstrap stack; key rings are never deleted: a new name only to redeploy the "
        "bootstrap stack itself after destroying it",
    )
    alert_5xx_ratio: float = Field(0.02, gt=0, le=1)
    alert_latency_p99_ms: int = Field(1000, gt=0)
    github_owner: str = "example-org"
    github_repository: str = "fmnist-mlops"
    pull_request_trigger: bool = Field(True, description="declare the pull-request check trigger in this project")
    deploy_branch: str | None = Field("^main$", description="branch regex whose pushes deploy (or use deploy_tag)")
    deploy_tag: str | None = Field(None, description="tag regex whose pushes deploy, instead of deploy_branch")
    deploy_requires_approval: bool = Field(False, description="a person approves each deploy build in Cloud Build")
    workbench: WorkbenchSettings = WorkbenchSettings()

    @model_validator(mode="after")
    def _one_deploy_ref(self):
        if (self.deploy_branch is None) == (self.deploy_tag is None):
            raise ValueError("set exactly one of infra.deploy_branch and infra.deploy_tag (the pushes that deploy)")
        return self


class Settings(_Section):
    """One environment's settings."""

    env: str
    target: Literal["local", "gcp"] = "local"
    project_id: str
    region: str = "europe-west4"
    bucket_prefix: str
    storage_root: str = layout.DEFAULT_STORAGE_ROOT
    data: DataSettings = DataSettings()
    training: TrainingSettings = TrainingSettings()
    registry: RegistrySettings = RegistrySettings()
    vertex: VertexSettings = VertexSettings()
    rollout: RolloutSettings = RolloutSettings()
    service: ServiceSettings = ServiceSettings()
    infra: InfraSettings = InfraSettings()

    @field_validator("bucket_prefix")
    @classmethod
    def _bucket_name_chars(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{1,40}[a-z0-9]", value):
            raise ValueError("must be 3-42 lowercase letters, digits or '-' (it prefixes bucket names)")
        return value

    @property
    def names(self) -> CloudNames:
        """Every Google Cloud resource name of this environment (contracts.cloud), overrides applied."""
        vertex, infra = self.vertex, self.infra
        return CloudNames(
            env=self.env,
            project=self.project_id,
            region=self.region,
            bucket_prefix=self.bucket_prefix,
            kms_key_ring=infra.kms_key_ring,
            endpoint_id=str(infra.endpoint_id),
            parent_model=vertex.parent_model,
            artifact_repository_override=vertex.artifact_repository,
            trainer_image_override=vertex.trainer_image,
            service_image_override=vertex.service_image,
            trainer_account_override=vertex.service_account,
            service_account_override=vertex.serving_service_account,
            kms_key_override=vertex.kms_key,
        )

    def _bucket(self, kind: str) -> str:
        if self.target == "gcp":
            return self.names.bucket_uri(kind)
        root = Path(self.storage_root).expanduser()
        if not root.is_absolute():
            root = REPO_ROOT / root
        return str(root / kind)

    @property
    def dev_bucket(self) -> str:
        """Run records, analysis reports, TensorBoard logs, demo reports."""
        return self._bucket("dev")

    @property
    def datasets_bucket(self) -> str:
        return self._bucket("datasets")

    @property
    def models_bucket(self) -> str:
        return self._bucket("models")


def _parse_override(raw: str):
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _apply_env_overrides(data: dict, environ) -> None:
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "ENV":
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if path[0] not in Settings.model_fields:
            continue  # FMNIST_* variables of other tools are not ours to reject
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name}: '{part}' is not a section")
        node[path[-1]] = _parse_override(raw)


def load_config(env: str | None = None, *, environ=None, config_dir: Path | None = None) -> Settings:
    """Load and validate `config/<env>.yaml` plus `FMNIST_*` overrides; raise ConfigError naming the bad key."""
    environ = os.environ if environ is None else environ
    env = env or environ.get(ENV_PREFIX + "ENV", "local")
    path = (config_dir or CONFIG_DIR) / f"{env}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (config_dir or CONFIG_DIR).glob("*.yaml"))
        raise ConfigError(
            f"no configuration for environment '{env}': {path} does not exist (known: {', '.join(known)})"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    _apply_env_overrides(data, environ)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            msg = "unknown key (check its spelling)" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{key}: {msg}")
        raise ConfigError(f"{path} (with FMNIST_* overrides): " + "; ".join(problems)) from None
