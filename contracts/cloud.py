"""Every Google Cloud resource name, one function per name: `infra/` declares these, the trainer finds them.

Why one place: a name computed twice drifts (the trainer once found a bucket and an image tag infra/ never made).
`settings.Settings.names` builds a CloudNames from one environment's configuration; the explicit overrides in
config (`vertex.*_image`, `vertex.service_account`, ...) are applied here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts import feature_schema, images, layout
from contracts.index_signature import INDEX_SIGNING_KEY_ID

# role -> account id suffix; the id is `<bucket_prefix>-<suffix>`
SERVICE_ACCOUNT_SUFFIXES = {
    "trainer": "trainer",  # Vertex AI custom jobs
    "service": "service",  # the Cloud Run prediction service and the Vertex AI endpoint's containers
    "deployer": "deployer",  # Cloud Build on deploy pushes: builds, pushes, `cdktf deploy`
    "checks": "ci-checks",  # Cloud Build on pull requests: tests, synth, policy scan (untrusted code)
    "promoter": "promoter",  # the promotion jobs: alone writes and signs the registry index (issue 25)
}
# The lifecycle pipeline's own accounts: created by the bootstrap stack like the others (infra/naming.py
# STACK_ACCOUNTS), used by infra/components/pipelines.py.
PIPELINE_ACCOUNT_SUFFIXES = {
    "pipelines": "pipelines",  # Vertex AI Pipelines runs of the lifecycle
    "starter": "pl-starter",  # the one function that starts pipeline runs (schedule, new data, drift)
}
SERVICE_ACCOUNT_ID_MAX = 30
KMS_KEY_ID = "fmnist-cmek"
BIGQUERY_DATASET = "fmnist_features"
ONLINE_STORE = "fmnist_features"
FEATURE_VIEW = "image_features"
CLOUD_RUN_SERVICE = "fmnist-predict"
# The promoter's two Cloud Run jobs (infra/components/promoter.py, trainer/cloud/promotion.py): the gate job the
# pipeline executes (promotes only when registry.promote_pipeline_runs), the approval job only approvers execute.
PROMOTION_GATE_JOB = "fmnist-promotion-gate"
PROMOTION_APPROVE_JOB = "fmnist-promotion-approve"
# the `python -m trainer promotion` action each promotion job runs (its fixed command: promotion_job_command)
PROMOTION_JOB_ACTIONS = {PROMOTION_GATE_JOB: "gate-job", PROMOTION_APPROVE_JOB: "approve-job"}


def promotion_job_command(env: str, job: str) -> list[str]:
    """The fixed command of a promotion job (infra declares it; the twin's Cloud Run runs it): executions may
    append arguments, never change this."""
    return ["python3", "-m", "trainer", "--env", env, "promotion", PROMOTION_JOB_ACTIONS[job]]


BUDGET_TOPIC = "fmnist-budget-alerts"
APP_LABEL = "fmnist-mlops"
PIPELINE_NAME = "fmnist-lifecycle"  # the compiled pipeline's name and its template package in Artifact Registry
PREDICTION_PIPELINE_NAME = "fmnist-batch-prediction"  # the prediction pipeline, published beside it
PIPELINE_STARTER = "fmnist-start-lifecycle"  # the starter function (starter/) and its Cloud Run service
PIPELINE_SCHEDULE = "fmnist-lifecycle-schedule"
PIPELINE_SWEEP = "fmnist-lifecycle-sweep"  # Cloud Scheduler: starts a deferred trigger once no run is active
STARTER_ROLE = "fmnistPipelineStarter"  # the starter's custom role (bootstrap stack)
DRIFT_TOPIC = "fmnist-drift-alerts"
NEW_DATA_TRIGGER = "fmnist-new-raw-data"  # Eventarc: NEW_DATA_TOPIC (raw/_COMMIT) -> the pipeline starter
DRIFT_TRIGGER = "fmnist-drift"  # Eventarc: a drift alert on DRIFT_TOPIC -> the pipeline starter
BUILD_TRIGGERS = {  # Cloud Build triggers (infra/components/cicd.py)
    "checks": "fmnist-pull-request-checks",
    "plan": "fmnist-pull-request-plan",
    "deploy": "fmnist-deploy",
}
RAW_DATA_PREFIX = "raw"  # <datasets bucket>/raw/: new raw IDX files land here, then raw/_COMMIT starts a run
NEW_DATA_TOPIC = "fmnist-new-raw-data"  # the datasets bucket notifies it of raw/_COMMIT only


class CloudNameError(ValueError):
    """A name cannot be formed from this configuration; the message names the key to change."""


@dataclass(frozen=True)
class CloudNames:
    """The names of one environment's resources. Overrides are None unless config sets them explicitly."""

    env: str
    project: str
    region: str
    bucket_prefix: str
    kms_key_ring: str
    endpoint_id: str
    parent_model: str
    artifact_repository_override: str | None = None
    trainer_image_override: str | None = None
    service_image_override: str | None = None
    trainer_account_override: str | None = None
    service_account_override: str | None = None
    kms_key_override: str | None = None

    # ---- labels and buckets ------------------------------------------------------------------------------------
    @property
    def labels(self) -> dict[str, str]:
        return {"app": APP_LABEL, "env": self.env, "managed_by": "cdktf"}

    @property
    def display_name(self) -> str:
        return f"fmnist-{self.env}"

    def bucket(self, kind: str) -> str:
        """`<bucket_prefix>-<kind>` for kind in contracts.layout.BUCKET_KINDS (and 'access-logs')."""
        return f"{self.bucket_prefix}-{kind}"

    def bucket_uri(self, kind: str) -> str:
        return f"gs://{self.bucket(kind)}"

    @property
    def access_log_bucket(self) -> str:
        return self.bucket("access-logs")

    @property
    def staging_uri(self) -> str:
        """Where the Vertex AI SDK stages job packages and AutoML imports."""
        return f"{self.bucket_uri('dev')}/vertex-staging"

    @property
    def model_uri(self) -> str:
        """The champion in the models bucket, as a model reference (what Cloud Run serves)."""
        return layout.model_reference(self.bucket_uri("models"), layout.CHAMPION)

    # ---- identities --------------------------------------------------------------------------------------------
    def service_account_id(self, role: str) -> str:
        suffix = SERVICE_ACCOUNT_SUFFIXES.get(role) or PIPELINE_ACCOUNT_SUFFIXES[role]
        return self.account_id(suffix)

    def account_id(self, suffix: str) -> str:
        """`<bucket_prefix>-<suffix>`, refused (naming the fix) beyond Google's 30-character limit."""
        account_id = f"{self.bucket_prefix}-{suffix}"
        if len(account_id) > SERVICE_ACCOUNT_ID_MAX:
            raise CloudNameError(
                f"service account id '{account_id}' is longer than {SERVICE_ACCOUNT_ID_MAX} characters: "
                f"shorten bucket_prefix in config/{self.env}.yaml"
            )
        return account_id

    def service_account_email(self, role: str) -> str:
        """The email of the account infra/ declares for `role`."""
        return f"{self.service_account_id(role)}@{self.project}.iam.gserviceaccount.com"

    def runtime_account(self, role: str) -> str:
        """The account a job ('trainer') or a deployed model ('service') runs as: the config's, else infra/'s."""
        explicit = {"trainer": self.trainer_account_override, "service": self.service_account_override}[role]
        return explicit or self.service_account_email(role)

    # ---- images ------------------------------------------------------------------------------------------------
    @property
    def artifact_repository(self) -> str:
        return self.artifact_repository_override or f"{self.bucket_prefix}-images"

    @property
    def registry_host(self) -> str:
        return f"{self.region}-docker.pkg.dev"

    def image_repository(self, image: str) -> str:
        """`<region>-docker.pkg.dev/<project>/<repository>/<image>` (tag or digest appended by the caller)."""
        return f"{self.registry_host}/{self.project}/{self.artifact_repository}/{image}"

    def image_uri(self, image: str) -> str:
        """The image a job or model runs: config `vertex.<image>_image`, else the content tag infra/ pushes."""
        explicit = {"trainer": self.trainer_image_override, "service": self.service_image_override}[image]
        if explicit:
            return explicit
        try:
            tag = images.source_tag(image)
        except images.SourcesMissing as exc:
            raise CloudNameError(f"{exc}; set vertex.{image}_image (the `cdktf output` {image}_image)") from None
        return f"{self.image_repository(image)}:{tag}"

    # ---- encryption, Vertex AI, features, serving --------------------------------------------------------------
    @property
    def kms_key_id(self) -> str:
        return KMS_KEY_ID

    @property
    def kms_key_name(self) -> str:
        """The CMEK key's resource name: config `vertex.kms_key`, else the key infra/ declares."""
        return self.kms_key_override or (
            f"projects/{self.project}/locations/{self.region}/keyRings/{self.kms_key_ring}/cryptoKeys/{KMS_KEY_ID}"
        )

    @property
    def index_signing_key_name(self) -> str:
        """The registry index's signing key (contracts/index_signature.py), beside the CMEK key in the key ring."""
        return (
            f"projects/{self.project}/locations/{self.region}/keyRings/{self.kms_key_ring}/cryptoKeys/"
            f"{INDEX_SIGNING_KEY_ID}"
        )

    @property
    def endpoint_name(self) -> str:
        return f"projects/{self.project}/locations/{self.region}/endpoints/{self.endpoint_id}"

    @property
    def parent_model_name(self) -> str:
        return f"projects/{self.project}/locations/{self.region}/models/{self.parent_model}"

    @property
    def bigquery_dataset(self) -> str:
        return BIGQUERY_DATASET

    @property
    def feature_table(self) -> str:
        return feature_schema.TABLE_NAME

    @property
    def feature_table_uri(self) -> str:
        return f"bq://{self.project}.{BIGQUERY_DATASET}.{feature_schema.TABLE_NAME}"

    @property
    def online_store(self) -> str:
        return ONLINE_STORE

    @property
    def feature_view(self) -> str:
        return FEATURE_VIEW

    @property
    def feature_view_name(self) -> str:
        """The feature view's resource name (what a sync request names)."""
        return (
            f"projects/{self.project}/locations/{self.region}/featureOnlineStores/{ONLINE_STORE}"
            f"/featureViews/{FEATURE_VIEW}"
        )

    @property
    def aiplatform_endpoint(self) -> str:
        """The regional Vertex AI API host the GAPIC clients must use (the global one rejects regional resources)."""
        return f"{self.region}-aiplatform.googleapis.com"

    @property
    def cloud_run_service(self) -> str:
        return CLOUD_RUN_SERVICE

    @property
    def budget_topic(self) -> str:
        return BUDGET_TOPIC

    # ---- the lifecycle as a Vertex AI Pipeline -----------------------------------------------------------------
    @property
    def raw_data_uri(self) -> str:
        """Where new raw IDX files land (the pipeline's ingest source; the new-data trigger watches it)."""
        return f"{self.bucket_uri('datasets')}/{RAW_DATA_PREFIX}"

    @property
    def pipeline_name(self) -> str:
        return PIPELINE_NAME

    @property
    def prediction_pipeline_name(self) -> str:
        return PREDICTION_PIPELINE_NAME

    @property
    def pipeline_repository(self) -> str:
        """The Artifact Registry repository (format KFP) holding the compiled pipeline templates."""
        return f"{self.bucket_prefix}-pipelines"

    @property
    def pipeline_template_uri(self) -> str:
        """The template's `latest` tag: what every pipeline run starts from."""
        return f"https://{self.region}-kfp.pkg.dev/{self.project}/{self.pipeline_repository}/{PIPELINE_NAME}/latest"

    @property
    def pipeline_root(self) -> str:
        """Where Vertex AI Pipelines keeps its own run files (executor outputs, logs)."""
        return f"{self.bucket_uri('dev')}/pipeline-root"

    @property
    def pipeline_starter(self) -> str:
        return PIPELINE_STARTER

    @property
    def pipeline_schedule(self) -> str:
        return PIPELINE_SCHEDULE

    @property
    def pipeline_sweep(self) -> str:
        return PIPELINE_SWEEP

    @property
    def functions_repository(self) -> str:
        """The Docker repository (CMEK) where Cloud Run functions keeps the starter's built image."""
        return f"{self.bucket_prefix}-functions"

    @property
    def starter_role(self) -> str:
        """The starter's custom role, as IAM bindings name it."""
        return f"projects/{self.project}/roles/{STARTER_ROLE}"

    @property
    def drift_topic(self) -> str:
        return DRIFT_TOPIC

    @property
    def new_data_topic(self) -> str:
        return NEW_DATA_TOPIC

    @property
    def raw_commit_object(self) -> str:
        """The object, relative to the datasets bucket, whose creation marks a completed upload of raw data."""
        return f"{RAW_DATA_PREFIX}/{layout.RAW_COMMIT_MARKER}"

    @property
    def batch_input_uri(self) -> str:
        """Where images to score land: the prediction pipeline's default source (a prefix of PNGs)."""
        return f"{self.bucket_uri('datasets')}/incoming"

    @property
    def batch_predictions_uri(self) -> str:
        """Where batch prediction jobs write (one folder per job)."""
        return f"{self.bucket_uri('dev')}/batch-predictions"
