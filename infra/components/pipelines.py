"""Continuous training: the lifecycle pipeline's template repository, its own accounts, and what starts its runs.

One starter, a Cloud Workflows workflow, starts every run of the compiled lifecycle (`python -m lifecycle compile`,
uploaded by Cloud Build to the KFP repository declared here); three triggers call it: a Cloud Scheduler job (the
schedule), an Eventarc trigger on new objects under `raw/` in the datasets bucket (new data; the workflow ignores
every other object, such as the versions `ingest` writes), and an Eventarc trigger on the drift topic, where a
Cloud Monitoring alert on the service's `fmnist_drift_detected` gauge notifies (drift). A run in progress is not
started twice: the workflow lists the active runs first, and names each run after the hour it starts in, so two
triggers racing in the same hour get one run (the second create is refused with 409).

Accounts: the pipeline runs as `<prefix>-pipelines` (the steps' buckets, the feature table, Vertex AI), with actAs
on the trainer account (its custom job) and the service account (deploy-model and batch prediction attach it);
the workflow, the schedule and the triggers run as `<prefix>-pl-starter`, which may only start pipeline runs as
the pipeline account.
"""

from __future__ import annotations

import base64
import json

from cdktf_cdktf_provider_google.artifact_registry_repository import ArtifactRegistryRepository
from cdktf_cdktf_provider_google.artifact_registry_repository_iam_member import ArtifactRegistryRepositoryIamMember
from cdktf_cdktf_provider_google.bigquery_dataset_iam_member import BigqueryDatasetIamMember
from cdktf_cdktf_provider_google.cloud_scheduler_job import CloudSchedulerJob
from cdktf_cdktf_provider_google.data_google_project import DataGoogleProject
from cdktf_cdktf_provider_google.data_google_storage_project_service_account import (
    DataGoogleStorageProjectServiceAccount,
)
from cdktf_cdktf_provider_google.eventarc_trigger import EventarcTrigger
from cdktf_cdktf_provider_google.monitoring_alert_policy import MonitoringAlertPolicy
from cdktf_cdktf_provider_google.monitoring_alert_policy import MonitoringAlertPolicyConditions as Condition
from cdktf_cdktf_provider_google.monitoring_alert_policy import (
    MonitoringAlertPolicyConditionsConditionThresholdAggregations as Aggregation,
)
from cdktf_cdktf_provider_google.monitoring_notification_channel import MonitoringNotificationChannel
from cdktf_cdktf_provider_google.project_iam_member import ProjectIamMember
from cdktf_cdktf_provider_google.project_service import ProjectService
from cdktf_cdktf_provider_google.pubsub_topic import PubsubTopic
from cdktf_cdktf_provider_google.pubsub_topic_iam_member import PubsubTopicIamMember
from cdktf_cdktf_provider_google.service_account import ServiceAccount
from cdktf_cdktf_provider_google.service_account_iam_member import ServiceAccountIamMember
from cdktf_cdktf_provider_google.storage_bucket_iam_member import StorageBucketIamMember
from cdktf_cdktf_provider_google.workflows_workflow import WorkflowsWorkflow
from constructs import Construct

from contracts.cloud import RAW_DATA_PREFIX
from infra.components.apis import Apis
from infra.components.budget import Budget
from infra.components.features import Features
from infra.components.identity import Identity
from infra.components.kms import Kms
from infra.components.registry import Registry
from infra.components.storage import Storage
from infra.naming import Names
from infra.teardown import TeardownPolicy

SCHEDULE = "0 4 * * 1"  # Mondays 04:00 UTC: weekly retraining even when nothing else triggers it
PIPELINE_APIS = (
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    "workflowexecutions.googleapis.com",
    "workflows.googleapis.com",
)
GCS_FINALIZED = "google.cloud.storage.object.v1.finalized"
PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
DRIFT_METRIC = "prometheus.googleapis.com/fmnist_drift_detected/gauge"  # service/metrics.py's gauge, via GMP
ACTIVE_STATES = ("PIPELINE_STATE_QUEUED", "PIPELINE_STATE_PENDING", "PIPELINE_STATE_RUNNING")

# (role, why it must be project-level): Google Cloud offers no narrower grant for these.
PROJECT_ROLES = {
    "pipelines": (
        ("roles/aiplatform.user", "pipeline, custom and batch prediction jobs, model uploads and feature view syncs"),
        ("roles/bigquery.jobUser", "the feature table's load job is created in the project"),
        ("roles/logging.logWriter", "pipeline tasks write their logs to the project's log router"),
    ),
    "starter": (
        ("roles/aiplatform.user", "pipelineJobs.list and pipelineJobs.create have no resource-level IAM"),
        ("roles/workflows.invoker", "Cloud Scheduler and Eventarc execute the workflow as this account"),
        ("roles/eventarc.eventReceiver", "Eventarc triggers need their account to receive events"),
        ("roles/logging.logWriter", "the workflow's call logs"),
    ),
}
BUCKET_ACCESS = (  # the pipeline runs the steps a person ran before: ingest, features, export, registry, reports
    ("datasets", "roles/storage.objectAdmin"),
    ("models", "roles/storage.objectAdmin"),
    ("dev", "roles/storage.objectAdmin"),
)
# The deployer creates these resources and attaches the new accounts to the triggers and the scheduler job.
DEPLOYER_ROLES = (
    ("roles/workflows.admin", "creates the starter workflow"),
    ("roles/eventarc.admin", "creates the new-data and drift triggers"),
    ("roles/cloudscheduler.admin", "creates the schedule"),
)


def starter_workflow(names: Names, pipeline_account: str) -> dict:
    """The one place that starts lifecycle runs: filters the event, skips when a run is active, starts one."""
    parent = f"projects/{names.project}/locations/{names.region}"
    active = " OR ".join(f'state="{state}"' for state in ACTIVE_STATES)
    vertex = {"parent": "${parent}", "region": names.region}
    run_id = (
        '${"'
        + names.pipeline_name
        + '-" + text.replace_all_regex(text.substring(time.format(sys.now()), 0, 13), "[^0-9]", "")}'
    )
    return {
        "main": {
            "params": ["event"],
            "steps": [
                {
                    "init": {
                        "assign": [
                            {"parent": parent},
                            {"kind": '${default(map.get(event, "type"), "")}'},
                            {"trigger": '${default(map.get(event, "trigger"), "manual")}'},
                        ]
                    }
                },
                {
                    "route": {
                        "switch": [
                            {"condition": f'${{kind == "{GCS_FINALIZED}"}}', "next": "new_data"},
                            {"condition": f'${{kind == "{PUBSUB_PUBLISHED}"}}', "next": "drift"},
                        ],
                        "next": "check_active",
                    }
                },
                {"new_data": {"assign": [{"trigger": "new-data"}]}},
                {
                    "new_data_filter": {
                        "switch": [
                            {
                                "condition": f'${{not text.match_regex(event.data.name, "^{RAW_DATA_PREFIX}/")}}',
                                "return": {"started": False, "reason": '${"not new raw data: " + event.data.name}'},
                            }
                        ],
                        "next": "check_active",
                    }
                },
                {
                    "drift": {
                        "assign": [
                            {"trigger": "drift"},
                            {"alert": "${json.decode(base64.decode(event.data.message.data))}"},
                        ]
                    }
                },
                {
                    "drift_filter": {
                        "switch": [
                            {
                                "condition": '${alert.incident.state != "open"}',
                                "return": {"started": False, "reason": "the drift incident closed"},
                            }
                        ],
                        "next": "check_active",
                    }
                },
                {
                    "check_active": {
                        "call": "googleapis.aiplatform.v1.projects.locations.pipelineJobs.list",
                        "args": {**vertex, "filter": f'display_name="{names.pipeline_name}" AND ({active})'},
                        "result": "active",
                    }
                },
                {
                    "skip_when_active": {
                        "switch": [
                            {
                                "condition": '${"pipelineJobs" in active}',
                                "return": {
                                    "started": False,
                                    "reason": "a lifecycle run is in progress",
                                    "run": "${active.pipelineJobs[0].name}",
                                },
                            }
                        ]
                    }
                },
                {
                    "start": {
                        "try": {
                            "call": "googleapis.aiplatform.v1.projects.locations.pipelineJobs.create",
                            "args": {
                                **vertex,
                                "pipelineJobId": run_id,
                                "body": {
                                    "displayName": names.pipeline_name,
                                    "templateUri": names.pipeline_template_uri,
                                    "serviceAccount": pipeline_account,
                                    "runtimeConfig": {"gcsOutputDirectory": names.pipeline_root},
                                    "labels": {**names.labels, "trigger": "${trigger}"},
                                },
                            },
                            "result": "job",
                        },
                        "except": {
                            "as": "error",
                            "steps": [
                                {
                                    "started_this_hour": {
                                        "switch": [
                                            {
                                                "condition": "${error.code == 409}",
                                                "return": {"started": False, "reason": "this hour's run exists"},
                                            }
                                        ]
                                    }
                                },
                                {"failed": {"raise": "${error}"}},
                            ],
                        },
                    }
                },
                {"done": {"return": {"started": True, "trigger": "${trigger}", "run": "${job.name}"}}},
            ],
        }
    }


def terraform_literal(text: str) -> str:
    """Escape Terraform's template syntax: the workflow's own `${...}` expressions must reach Workflows as written."""
    return text.replace("${", "$${").replace("%{", "%%{")


class Pipelines(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        names: Names,
        teardown: TeardownPolicy,
        apis: Apis,
        kms: Kms,
        identity: Identity,
        storage: Storage,
        registry: Registry,
        features: Features,
        budget: Budget,
        project: DataGoogleProject,
    ):
        super().__init__(scope, id)
        # Enabled once a budget watches them (the custom policy CKV2_FMNIST_3 checks that edge).
        self.apis = {
            api: ProjectService(
                self,
                api.split(".")[0],
                project=names.project,
                service=api,
                disable_on_destroy=teardown.disable_apis_on_destroy,
                disable_dependent_services=False,
                depends_on=[budget.budget],
            )
            for api in PIPELINE_APIS
        }
        self.accounts = {
            role: ServiceAccount(
                self,
                role,
                account_id=names.service_account_id(role),
                display_name=f"fmnist {role} ({names.env})",
                description=description,
                project=names.project,
                depends_on=[apis["iam.googleapis.com"]],
            )
            for role, description in (
                ("pipelines", "Vertex AI Pipelines runs of the lifecycle: the steps' buckets, features, Vertex AI"),
                ("starter", "starts lifecycle pipeline runs (schedule, new data, drift) as the pipelines account"),
            )
        }
        for role, grants in PROJECT_ROLES.items():
            for iam_role, _why in grants:
                ProjectIamMember(
                    self,
                    f"{role}_{iam_role.split('/')[1].replace('.', '_')}",
                    project=names.project,
                    role=iam_role,
                    member=self.member(role),
                )
        self.act_as = {
            (who, on): ServiceAccountIamMember(
                self,
                f"{who}_acts_as_{on}",
                service_account_id=account.name,
                role="roles/iam.serviceAccountUser",
                member=self.member(who),
            )
            for who, on, account in (
                ("pipelines", "trainer", identity.accounts["trainer"]),
                ("pipelines", "service", identity.accounts["service"]),
                ("starter", "pipelines", self.accounts["pipelines"]),
            )
        }
        for role in ("pipelines", "starter"):
            ServiceAccountIamMember(
                self,
                f"deployer_acts_as_{role}",
                service_account_id=self.accounts[role].name,
                role="roles/iam.serviceAccountUser",
                member=identity.member("deployer"),
            )
        for iam_role, _why in DEPLOYER_ROLES:
            ProjectIamMember(
                self,
                f"deployer_{iam_role.split('/')[1].replace('.', '_')}",
                project=names.project,
                role=iam_role,
                member=identity.member("deployer"),
            )
        for kind, iam_role in BUCKET_ACCESS:
            StorageBucketIamMember(
                self,
                f"{kind}-pipelines-{iam_role.split('.')[-1]}",
                bucket=storage.buckets[kind].name,
                role=iam_role,
                member=self.member("pipelines"),
            )
        BigqueryDatasetIamMember(
            self,
            "features-pipelines-editor",
            dataset_id=features.dataset.dataset_id,
            role="roles/bigquery.dataEditor",
            member=self.member("pipelines"),
        )
        ArtifactRegistryRepositoryIamMember(
            self,
            "images-pipelines-reader",
            repository=registry.repository.name,
            location=names.region,
            role="roles/artifactregistry.reader",
            member=self.member("pipelines"),
        )

        # ---- the compiled templates ----------------------------------------------------------------------------
        self.repository = ArtifactRegistryRepository(
            self,
            "kfp",
            repository_id=names.pipeline_repository,
            location=names.region,
            format="KFP",
            description=f"compiled {names.pipeline_name} pipeline templates (python -m lifecycle compile)",
            kms_key_name=kms.key.id,
            labels=names.labels,
            depends_on=[apis["artifactregistry.googleapis.com"], kms.grants["artifactregistry"]],
        )
        for who, role, member in (
            ("deployer", "writer", identity.member("deployer")),  # Cloud Build uploads the compiled template
            ("pipelines", "reader", self.member("pipelines")),
            ("starter", "reader", self.member("starter")),
        ):
            ArtifactRegistryRepositoryIamMember(
                self,
                f"kfp-{who}-{role}",
                repository=self.repository.name,
                location=names.region,
                role=f"roles/artifactregistry.{role}",
                member=member,
            )

        # ---- the one starter -----------------------------------------------------------------------------------
        self.workflow = WorkflowsWorkflow(
            self,
            "starter-workflow",
            name=names.pipeline_starter_workflow,
            region=names.region,
            description="starts one lifecycle pipeline run unless one is active (schedule, new data, drift)",
            service_account=self.accounts["starter"].email,
            call_log_level="LOG_ERRORS_ONLY",
            source_contents=terraform_literal(
                json.dumps(starter_workflow(names, names.service_account_email("pipelines")))
            ),
            labels=names.labels,
            depends_on=[self.apis["workflows.googleapis.com"]],
        )

        # ---- the three triggers --------------------------------------------------------------------------------
        self.schedule = CloudSchedulerJob(
            self,
            "schedule",
            name=names.pipeline_schedule,
            region=names.region,
            schedule=SCHEDULE,
            time_zone="Etc/UTC",
            description="weekly lifecycle run through the starter workflow",
            http_target={
                "uri": f"https://workflowexecutions.googleapis.com/v1/{self.workflow.id}/executions",
                "http_method": "POST",
                "headers": {"Content-Type": "application/json"},
                "body": base64.b64encode(
                    json.dumps({"argument": json.dumps({"trigger": "schedule"})}).encode()
                ).decode(),
                "oauth_token": {
                    "service_account_email": self.accounts["starter"].email,
                    "scope": "https://www.googleapis.com/auth/cloud-platform",
                },
            },
            retry_config={"retry_count": 1},
            depends_on=[self.apis["cloudscheduler.googleapis.com"]],
        )
        storage_agent = DataGoogleStorageProjectServiceAccount(
            self, "storage_agent", depends_on=[apis["storage.googleapis.com"]]
        )
        # Cloud Storage publishes the object events Eventarc delivers (documented requirement for GCS triggers).
        storage_publisher = ProjectIamMember(
            self,
            "storage_agent_pubsub_publisher",
            project=names.project,
            role="roles/pubsub.publisher",
            member=f"serviceAccount:{storage_agent.email_address}",
        )
        self.new_data = EventarcTrigger(
            self,
            "new-data",
            name="fmnist-new-raw-data",
            location=names.region,
            matching_criteria=[
                {"attribute": "type", "value": GCS_FINALIZED},
                {"attribute": "bucket", "value": names.bucket("datasets")},
            ],
            destination={"workflow": self.workflow.id},
            service_account=self.accounts["starter"].email,
            labels=names.labels,
            depends_on=[self.apis["eventarc.googleapis.com"], storage_publisher, storage.buckets["datasets"]],
        )
        self.drift_topic = PubsubTopic(
            self,
            "drift-topic",
            name=names.drift_topic,
            kms_key_name=kms.key.id,
            labels=names.labels,
            message_storage_policy={"allowed_persistence_regions": [names.region]},
            message_retention_duration="604800s",
            depends_on=[apis["pubsub.googleapis.com"], kms.grants["pubsub"]],
        )
        notifier = f"serviceAccount:service-{project.number}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"
        PubsubTopicIamMember(
            self, "drift-notifier", topic=self.drift_topic.name, role="roles/pubsub.publisher", member=notifier
        )
        self.drift_channel = MonitoringNotificationChannel(
            self,
            "drift-channel",
            display_name=f"fmnist {names.env} drift -> retraining",
            type="pubsub",
            labels={"topic": self.drift_topic.id},
            user_labels=names.labels,
            depends_on=[apis["monitoring.googleapis.com"]],
        )
        self.drift_alert = MonitoringAlertPolicy(
            self,
            "drift-alert",
            display_name=f"fmnist {names.env}: served inputs drift",
            severity="WARNING",
            combiner="OR",
            notification_channels=[self.drift_channel.id],
            user_labels=names.labels,
            alert_strategy={"auto_close": "86400s"},
            documentation={
                "mime_type": "text/markdown",
                "content": "The prediction service's drift monitor (PSI of the image features and classes against "
                "the champion's training baseline) flags drift; the starter workflow starts a retraining run.",
            },
            conditions=[
                Condition(
                    display_name="fmnist_drift_detected > 0",
                    condition_threshold={
                        "filter": f'resource.type = "prometheus_target" AND metric.type = "{DRIFT_METRIC}"',
                        "aggregations": [
                            Aggregation(
                                alignment_period="300s",
                                per_series_aligner="ALIGN_MAX",
                                cross_series_reducer="REDUCE_MAX",
                            )
                        ],
                        "comparison": "COMPARISON_GT",
                        "threshold_value": 0,
                        "duration": "300s",
                    },
                )
            ],
        )
        self.drift = EventarcTrigger(
            self,
            "drift",
            name="fmnist-drift",
            location=names.region,
            matching_criteria=[{"attribute": "type", "value": PUBSUB_PUBLISHED}],
            transport={"pubsub": {"topic": self.drift_topic.id}},
            destination={"workflow": self.workflow.id},
            service_account=self.accounts["starter"].email,
            labels=names.labels,
            depends_on=[self.apis["eventarc.googleapis.com"]],
        )

    def member(self, role: str) -> str:
        return f"serviceAccount:{self.accounts[role].email}"
