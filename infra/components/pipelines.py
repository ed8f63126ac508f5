"""Continuous training: the lifecycle pipeline's template repository, its own accounts, and what starts its runs.

One starter, a Cloud Run function (starter/, declared in infra/components/starter_function.py), starts every run
of the compiled lifecycle (`python -m lifecycle compile`, uploaded by Cloud Build to the KFP repository declared
here); four triggers call it: a Cloud Scheduler job (the weekly schedule), an Eventarc trigger on a topic the
datasets bucket notifies of `raw/_COMMIT` only (new data: one event per completed upload, none for any other object),
an Eventarc trigger on the drift topic, where a Cloud Monitoring alert (PromQL, contracts/monitoring_queries.py) on
the service's `fmnist_drift_detected` gauge notifies (drift), and a second Cloud Scheduler job, the sweep, that
starts a deferred trigger once no run is active. A run in progress is not started twice, and a trigger that arrives
during one is deferred (an object in the dev bucket), not dropped; run ids are named by their event, so a
redelivered event gets 409, not a second run (starter/logic.py).

Accounts: the pipeline runs as `<prefix>-pipelines` (the steps' buckets, the feature table, Vertex AI), with actAs
on the trainer account (its custom job) and the service account (deploy-model and batch prediction attach it);
the function, the schedules and the triggers run as `<prefix>-pl-starter`, which may only start and list pipeline
runs (a custom role, infra/components/starter_role.py) as the pipeline account. Both accounts, their actAs
grants (infra/components/accounts.py ACCOUNT_ACT_AS) and the deployer's rights on them and on the resources below
belong to the bootstrap stack: the deployer creates no account and cannot set an account's IAM policy. Their
project-level roles are declared in infra/components/identity.py (the deployer's IAM condition lists them), the
APIs in infra/components/apis.py PIPELINE_APIS.
"""

from __future__ import annotations

import base64
import json

from cdktf import TerraformProvider
from cdktf_cdktf_provider_google.artifact_registry_repository import ArtifactRegistryRepository
from cdktf_cdktf_provider_google.artifact_registry_repository_iam_member import ArtifactRegistryRepositoryIamMember
from cdktf_cdktf_provider_google.bigquery_dataset_iam_member import BigqueryDatasetIamMember
from cdktf_cdktf_provider_google.cloud_scheduler_job import CloudSchedulerJob
from cdktf_cdktf_provider_google.data_google_project import DataGoogleProject
from cdktf_cdktf_provider_google.eventarc_trigger import EventarcTrigger
from cdktf_cdktf_provider_google.monitoring_alert_policy import MonitoringAlertPolicy
from cdktf_cdktf_provider_google.monitoring_alert_policy import MonitoringAlertPolicyConditions as Condition
from cdktf_cdktf_provider_google.monitoring_notification_channel import MonitoringNotificationChannel
from cdktf_cdktf_provider_google.project_iam_member import ProjectIamMember
from cdktf_cdktf_provider_google.storage_bucket_iam_member import StorageBucketIamMember
from cdktf_cdktf_provider_google.storage_notification import StorageNotification
from constructs import Construct

from contracts.cloud import DRIFT_TRIGGER, NEW_DATA_TRIGGER, PIPELINE_ACCOUNT_SUFFIXES
from contracts.monitoring_queries import drift_fleet_promql
from contracts.starter import DEFERRED, SCHEDULE, SWEEP_SCHEDULE
from infra.components.apis import PIPELINE_APIS, Apis
from infra.components.features import Features
from infra.components.identity import AGENT_PROJECT_ROLES, Identity
from infra.components.identity import PROJECT_ROLES as IDENTITY_PROJECT_ROLES
from infra.components.kms import KeyGrants
from infra.components.registry import Registry
from infra.components.service_agents import ServiceAgents, service_identity
from infra.components.starter_function import StarterFunction
from infra.components.storage import Storage, job_outputs_only
from infra.components.waits import propagation_wait
from infra.naming import Names
from infra.teardown import TeardownPolicy

__all__ = ["PIPELINE_APIS", "PROJECT_ROLES", "Pipelines"]
SCHEDULE_CRON = "0 4 * * 1"  # Mondays 04:00 UTC: weekly retraining even when nothing else triggers it
PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"

# The two accounts' project-level roles (role, why): declared in identity.py, which grants them.
PROJECT_ROLES = {role: IDENTITY_PROJECT_ROLES[role] for role in PIPELINE_ACCOUNT_SUFFIXES}
STORAGE_PUBLISHER = ("storage", "roles/pubsub.publisher")
# what an Eventarc trigger's account must hold before triggers.create
EVENTARC_STARTER_ROLES = ("roles/eventarc.eventReceiver",)
BUCKET_ACCESS = (  # the pipeline runs the steps a person ran before: ingest, features, export, reports
    ("datasets", "roles/storage.objectAdmin"),
    ("models", "roles/storage.objectAdmin"),  # job outputs only (the condition below): registry/ is the promoter's
    ("dev", "roles/storage.objectAdmin"),
)


class Pipelines(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        names: Names,
        apis: Apis,
        kms: KeyGrants,
        agents: ServiceAgents,
        identity: Identity,
        storage: Storage,
        registry: Registry,
        features: Features,
        project: DataGoogleProject,
        teardown: TeardownPolicy,
        beta: TerraformProvider,
    ):
        super().__init__(scope, id)
        self.names = names
        for kind, iam_role in BUCKET_ACCESS:
            StorageBucketIamMember(
                self,
                f"{kind}-pipelines-{iam_role.split('.')[-1]}",
                bucket=storage.buckets[kind].name,
                role=iam_role,
                member=self.member("pipelines"),
                condition=job_outputs_only(names) if kind == "models" else None,
            )
        BigqueryDatasetIamMember(
            self,
            "features-pipelines-editor",
            dataset_id=features.dataset.dataset_id,
            role="roles/bigquery.dataEditor",
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
            kms_key_name=kms.key_id,
            labels=names.labels,
            depends_on=[apis["artifactregistry.googleapis.com"], kms.ready["artifactregistry"]],
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
        self.starter = StarterFunction(self, "starter", names=names, apis=apis, kms=kms, storage=storage)
        starter = {"cloud_run_service": {"service": self.starter.function.name, "region": names.region}}

        # ---- the three triggers --------------------------------------------------------------------------------
        self.schedule, self.sweep = (
            CloudSchedulerJob(
                self,
                job_id,
                name=name,
                region=names.region,
                schedule=schedule,
                time_zone="Etc/UTC",
                description=description,
                http_target={
                    "uri": self.starter.url,
                    "http_method": "POST",
                    "headers": {"Content-Type": "application/json"},
                    "body": base64.b64encode(json.dumps({"trigger": kind}).encode()).decode(),
                    # the function's own URL as audience: Cloud Run checks the ID token against it
                    "oidc_token": {"service_account_email": identity.email("starter"), "audience": self.starter.url},
                },
                retry_config={"retry_count": 1},
                depends_on=[apis["cloudscheduler.googleapis.com"], self.starter.invoker],
            )
            for job_id, name, schedule, kind, description in (
                ("schedule", names.pipeline_schedule, SCHEDULE_CRON, SCHEDULE, "weekly lifecycle run"),
                (
                    "sweep",
                    names.pipeline_sweep,
                    SWEEP_SCHEDULE,
                    DEFERRED,
                    "starts a trigger deferred during a run once no run is active (nothing to do: no run)",
                ),
            )
        )
        # Cloud Storage publishes the bucket's notifications (documented requirement for Pub/Sub notifications);
        # the role is declared in identity.py AGENT_PROJECT_ROLES, the agent created by its data source.
        agent, iam_role = STORAGE_PUBLISHER
        assert STORAGE_PUBLISHER in AGENT_PROJECT_ROLES, "the deployer's IAM condition must list the role"
        storage_publisher = ProjectIamMember(
            self,
            "storage_agent_pubsub_publisher",
            project=names.project,
            role=iam_role,
            member=agents.members[agent],
            depends_on=[apis["cloudresourcemanager.googleapis.com"], agents.sources[agent]],
        )
        # Eventarc's own agent is created lazily like the CMEK ones (the provider's acceptance tests create it with
        # a service identity, then wait); the triggers' account needs eventReceiver before triggers.create (and
        # run.invoker on the function to deliver), and the Cloud Storage agent its publisher grant: one wait after
        # all of them.
        eventarc_agent = service_identity(
            self, "eventarc-agent", names=names, apis=apis, api="eventarc.googleapis.com", beta=beta
        )
        self.triggers_ready = propagation_wait(
            self,
            "eventarc-grants-propagated",
            after=[
                eventarc_agent,
                storage_publisher,
                *(identity.project_bindings[("starter", role)] for role in EVENTARC_STARTER_ROLES),
                self.starter.invoker,
            ],
        )
        # New data: the datasets bucket notifies a topic of raw/_COMMIT only (a prefix-filtered notification), so
        # one completed upload is one event, and the 70,000 PNGs `export-images` writes in the bucket are none.
        self.new_data_topic = kms.topic(self, "new-data-topic", name=names.new_data_topic, names=names)
        self.new_data_notification = StorageNotification(
            self,
            "new-data-notification",
            bucket=storage.buckets["datasets"].name,
            topic=self.new_data_topic.id,
            payload_format="JSON_API_V1",
            event_types=["OBJECT_FINALIZE"],
            object_name_prefix=names.raw_commit_object,
            depends_on=[self.triggers_ready],  # the storage agent may publish (GCS checks it at create)
        )
        self.new_data = EventarcTrigger(
            self,
            "new-data",
            name=NEW_DATA_TRIGGER,
            location=names.region,
            matching_criteria=[{"attribute": "type", "value": PUBSUB_PUBLISHED}],
            transport={"pubsub": {"topic": self.new_data_topic.id}},
            destination=starter,
            service_account=identity.email("starter"),
            labels=names.labels,
            depends_on=[apis["eventarc.googleapis.com"], self.triggers_ready, self.new_data_notification],
        )
        self.drift_topic = kms.topic(self, "drift-topic", name=names.drift_topic, names=names)
        self.drift_channel = MonitoringNotificationChannel(
            self,
            "drift-channel",
            display_name=f"fmnist {names.env} drift -> retraining",
            type="pubsub",
            labels={"topic": self.drift_topic.id},
            user_labels=names.labels,
            depends_on=[apis["monitoring.googleapis.com"]],
        )
        # Cloud Monitoring publishes to the topic as its notification agent, which it creates with the project's
        # first Pub/Sub channel: the grant waits for the channel (no KMS grant names it, so no identity resource).
        notifier = f"serviceAccount:service-{project.number}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"
        self.drift_topic.allow_publisher("drift-notifier", notifier, after=[self.drift_channel])
        self.drift_alert = MonitoringAlertPolicy(
            self,
            "drift-alert",
            display_name=f"fmnist {names.env}: served inputs drift",
            severity="WARNING",
            combiner="OR",
            notification_channels=[self.drift_channel.id],
            user_labels=names.labels,
            depends_on=[apis["monitoring.googleapis.com"]],
            alert_strategy={"auto_close": "86400s"},
            documentation={
                "mime_type": "text/markdown",
                "content": "The prediction service's drift monitor (PSI of the image features and classes against "
                "the champion's training baseline) flags drift from enough distinct clients over every instance "
                "(one client alone never does); the pipeline starter function starts a retraining run.",
            },
            conditions=[
                Condition(
                    display_name="drift from enough distinct clients",
                    # PromQL: accepted before the service writes the gauge's first point (a metric-type filter
                    # would fail with 404 "Cannot find metric(s)" on a new project).
                    condition_prometheus_query_language={
                        "query": drift_fleet_promql(),
                        "duration": "300s",
                        "evaluation_interval": "60s",
                    },
                )
            ],
        )
        self.drift = EventarcTrigger(
            self,
            "drift",
            name=DRIFT_TRIGGER,
            location=names.region,
            matching_criteria=[{"attribute": "type", "value": PUBSUB_PUBLISHED}],
            transport={"pubsub": {"topic": self.drift_topic.id}},
            destination=starter,
            service_account=identity.email("starter"),
            labels=names.labels,
            depends_on=[apis["eventarc.googleapis.com"], self.triggers_ready],
        )

    def member(self, role: str) -> str:
        return self.names.account_member(role)
