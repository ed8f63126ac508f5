"""Continuous training: the lifecycle pipeline's template repository, its own accounts, and what starts its runs.

One starter, a Cloud Workflows workflow, starts every run of the compiled lifecycle (`python -m lifecycle compile`,
uploaded by Cloud Build to the KFP repository declared here); three triggers call it: a Cloud Scheduler job (the
schedule), an Eventarc trigger on a topic the datasets bucket notifies of `raw/_COMMIT` only (new data: one event per
completed upload, none for any other object), and an Eventarc trigger on the drift topic, where a Cloud Monitoring
alert (PromQL, contracts/monitoring_queries.py) on the service's `fmnist_drift_detected` gauge notifies (drift). A
run in progress is not started twice, and a trigger that arrives during one is deferred, not dropped: the workflow
waits until no run is active, unless a run created after the trigger already covers it; run ids carry their minute,
so two racing triggers get one run (409).

Accounts: the pipeline runs as `<prefix>-pipelines` (the steps' buckets, the feature table, Vertex AI), with actAs
on the trainer account (its custom job) and the service account (deploy-model and batch prediction attach it);
the workflow, the schedule and the triggers run as `<prefix>-pl-starter`, which may only start pipeline runs as
the pipeline account. Both accounts, their actAs grants (infra/components/accounts.py ACCOUNT_ACT_AS) and the
deployer's rights on them and on the resources below belong to the bootstrap stack: the deployer creates no account
and cannot set an account's IAM policy. Their project-level roles are declared in infra/components/identity.py
(the deployer's IAM condition lists them), the APIs in infra/components/apis.py PIPELINE_APIS.
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
from cdktf_cdktf_provider_google.pubsub_topic_iam_member import PubsubTopicIamMember
from cdktf_cdktf_provider_google.storage_bucket_iam_member import StorageBucketIamMember
from cdktf_cdktf_provider_google.storage_notification import StorageNotification
from cdktf_cdktf_provider_google.workflows_workflow import WorkflowsWorkflow
from constructs import Construct

from contracts.cloud import DRIFT_TRIGGER, NEW_DATA_TRIGGER, PIPELINE_ACCOUNT_SUFFIXES
from contracts.monitoring_queries import DRIFT_DETECTED_PROMQL
from infra.components.apis import PIPELINE_APIS, Apis
from infra.components.features import Features
from infra.components.identity import AGENT_PROJECT_ROLES, Identity
from infra.components.identity import PROJECT_ROLES as IDENTITY_PROJECT_ROLES
from infra.components.kms import KeyGrants
from infra.components.registry import Registry
from infra.components.service_agents import ServiceAgents, service_identity
from infra.components.storage import Storage, job_outputs_only
from infra.components.waits import propagation_wait
from infra.naming import Names
from infra.teardown import TeardownPolicy

__all__ = ["PIPELINE_APIS", "PROJECT_ROLES", "Pipelines", "starter_workflow"]
SCHEDULE = "0 4 * * 1"  # Mondays 04:00 UTC: weekly retraining even when nothing else triggers it
PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
ACTIVE_STATES = ("PIPELINE_STATE_QUEUED", "PIPELINE_STATE_PENDING", "PIPELINE_STATE_RUNNING")
DEFER_POLL_SECONDS = 600  # a trigger that arrives during a run checks again this often...
DEFER_MAX_SECONDS = 86_400  # ...for at most a day (a lifecycle run takes well under that), then fails visibly

# The two accounts' project-level roles (role, why): declared in identity.py, which grants them.
PROJECT_ROLES = {role: IDENTITY_PROJECT_ROLES[role] for role in PIPELINE_ACCOUNT_SUFFIXES}
STORAGE_PUBLISHER = ("storage", "roles/pubsub.publisher")
# what an Eventarc trigger's account must hold before triggers.create (a workflow destination)
EVENTARC_STARTER_ROLES = ("roles/eventarc.eventReceiver", "roles/workflows.invoker")
BUCKET_ACCESS = (  # the pipeline runs the steps a person ran before: ingest, features, export, reports
    ("datasets", "roles/storage.objectAdmin"),
    ("models", "roles/storage.objectAdmin"),  # job outputs only (the condition below): registry/ is the promoter's
    ("dev", "roles/storage.objectAdmin"),
)


def starter_workflow(names: Names, pipeline_account: str) -> dict:
    """The one place that starts lifecycle runs: filters the event, defers while a run is active, starts one.

    A trigger that arrives during a run is not dropped: the execution waits (polling every DEFER_POLL_SECONDS, up
    to DEFER_MAX_SECONDS, then fails visibly) and starts a run once none is active, unless a run created after the
    trigger arrived already covers it. Run ids carry the minute they start in, so two triggers racing in the same
    minute get one run and a 409. The create does not wait for the run (`skip_polling`): the connector's default
    would poll it for up to 1,800 s and then fail a healthy run with a timeout."""
    parent = f"projects/{names.project}/locations/{names.region}"
    active = " OR ".join(f'state="{state}"' for state in ACTIVE_STATES)
    vertex = {"parent": "${parent}", "region": names.region}
    run_id = (
        '${"'
        + names.pipeline_name
        + '-" + text.replace_all_regex(text.substring(time.format(sys.now()), 0, 16), "[^0-9]", "")}'
    )
    covered = {"started": False, "reason": "a run created after this trigger covers it", "run": "${newest.name}"}
    return {
        "main": {
            "params": ["event"],
            "steps": [
                {
                    "init": {
                        "assign": [
                            {"parent": parent},
                            {"arrived": "${sys.now()}"},
                            {"waited": 0},
                            {"kind": '${default(map.get(event, "type"), "")}'},
                            {"source": '${default(map.get(event, "source"), "")}'},
                            {"trigger": '${default(map.get(event, "trigger"), "manual")}'},
                        ]
                    }
                },
                {
                    "route": {
                        "switch": [
                            {
                                "condition": f'${{kind == "{PUBSUB_PUBLISHED}" and '
                                f'text.match_regex(source, "/topics/{names.new_data_topic}$")}}',
                                "next": "new_data",
                            },
                            {"condition": f'${{kind == "{PUBSUB_PUBLISHED}"}}', "next": "drift"},
                        ],
                        "next": "check_active",
                    }
                },
                {
                    "new_data": {
                        "assign": [
                            {"trigger": "new-data"},
                            {"object": '${default(map.get(event.data.message.attributes, "objectId"), "")}'},
                        ]
                    }
                },
                {
                    "new_data_filter": {
                        "switch": [
                            {
                                "condition": f'${{object != "{names.raw_commit_object}"}}',
                                "return": {"started": False, "reason": '${"not a completed upload: " + object}'},
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
                        "args": {
                            **vertex,
                            "filter": f'display_name="{names.pipeline_name}" AND ({active})',
                            "orderBy": "create_time desc",
                        },
                        "result": "active",
                    }
                },
                {
                    "defer_when_active": {
                        "switch": [
                            {"condition": '${not ("pipelineJobs" in active)}', "next": "start"},
                            {
                                "condition": "${waited >= " + str(DEFER_MAX_SECONDS) + "}",
                                "raise": {
                                    "message": '${"a lifecycle run has been active for "'
                                    f' + "{DEFER_MAX_SECONDS} s; this " + trigger'
                                    ' + " trigger was not started: start it by hand when the run ends"}',
                                    "run": "${active.pipelineJobs[0].name}",
                                },
                            },
                        ],
                        "next": "covered_by_newer_run",
                    }
                },
                {"covered_by_newer_run": {"assign": [{"newest": "${active.pipelineJobs[0]}"}]}},
                {
                    "covered_check": {
                        "switch": [
                            {"condition": "${time.parse(newest.createTime) >= arrived}", "return": covered},
                        ],
                        "next": "wait",
                    }
                },
                {
                    "wait": {
                        "steps": [
                            {"sleep": {"call": "sys.sleep", "args": {"seconds": DEFER_POLL_SECONDS}}},
                            {"count": {"assign": [{"waited": "${waited + " + str(DEFER_POLL_SECONDS) + "}"}]}},
                        ],
                        "next": "check_active",
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
                                    "encryptionSpec": {"kmsKeyName": names.kms_key_name},
                                    "labels": {**names.labels, "trigger": "${trigger}"},
                                },
                                "connector_params": {"skip_polling": True},
                            },
                            "result": "job",
                        },
                        "except": {
                            "as": "error",
                            "steps": [
                                {
                                    "started_this_minute": {
                                        "switch": [
                                            {
                                                # only HTTP errors carry a code; a timeout or connection error is a
                                                # map without one, and reading error.code would raise a KeyError
                                                "condition": '${default(map.get(error, "code"), 0) == 409}',
                                                "return": {"started": False, "reason": "this minute's run exists"},
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
        self.workflow = WorkflowsWorkflow(
            self,
            "starter-workflow",
            name=names.pipeline_starter_workflow,
            region=names.region,
            description="starts one lifecycle pipeline run unless one is active (schedule, new data, drift)",
            service_account=identity.email("starter"),
            call_log_level="LOG_ERRORS_ONLY",
            source_contents=terraform_literal(
                json.dumps(starter_workflow(names, names.service_account_email("pipelines")))
            ),
            labels=names.labels,
            deletion_protection=teardown.deletion_protection,  # the provider defaults it to true: destroy would fail
            # the runs it creates are encrypted with the key by Vertex AI's agent: its grant comes first
            depends_on=[
                apis["workflows.googleapis.com"],
                apis["workflowexecutions.googleapis.com"],
                kms.ready["aiplatform"],
            ],
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
                    "service_account_email": identity.email("starter"),
                    "scope": "https://www.googleapis.com/auth/cloud-platform",
                },
            },
            retry_config={"retry_count": 1},
            depends_on=[apis["cloudscheduler.googleapis.com"]],
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
        # a service identity, then wait); the triggers' account needs eventReceiver and workflows.invoker before
        # triggers.create, and the Cloud Storage agent its publisher grant: one wait after all of them.
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
            destination={"workflow": self.workflow.id},
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
        PubsubTopicIamMember(
            self,
            "drift-notifier",
            topic=self.drift_topic.name,
            role="roles/pubsub.publisher",
            member=notifier,
            depends_on=[self.drift_channel],
        )
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
                "the champion's training baseline) flags drift; the starter workflow starts a retraining run.",
            },
            conditions=[
                Condition(
                    display_name=DRIFT_DETECTED_PROMQL,
                    # PromQL: accepted before the service writes the gauge's first point (a metric-type filter
                    # would fail with 404 "Cannot find metric(s)" on a new project).
                    condition_prometheus_query_language={
                        "query": DRIFT_DETECTED_PROMQL,
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
            destination={"workflow": self.workflow.id},
            service_account=identity.email("starter"),
            labels=names.labels,
            depends_on=[apis["eventarc.googleapis.com"], self.triggers_ready],
        )

    def member(self, role: str) -> str:
        return self.names.account_member(role)
