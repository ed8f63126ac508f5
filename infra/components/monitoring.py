"""The alert email channel and Cloud Monitoring alert policies: Cloud Run 5xx ratio and p99 latency, errors on the
Vertex AI endpoint, failed pipeline runs and quality-gate refusals. Thresholds come from `infra:` in
config/<env>.yaml. The last two are log-based (condition_matched_log on the trainer's event lines, contracts.
monitoring_queries): valid before the first failure, unlike a threshold on a metric not yet written."""

from __future__ import annotations

from cdktf_cdktf_provider_google.monitoring_alert_policy import MonitoringAlertPolicy
from cdktf_cdktf_provider_google.monitoring_alert_policy import MonitoringAlertPolicyConditions as Condition
from cdktf_cdktf_provider_google.monitoring_alert_policy import (
    MonitoringAlertPolicyConditionsConditionThresholdAggregations as Aggregation,
)
from cdktf_cdktf_provider_google.monitoring_alert_policy import (
    MonitoringAlertPolicyConditionsConditionThresholdDenominatorAggregations as DenominatorAggregation,
)
from cdktf_cdktf_provider_google.monitoring_notification_channel import MonitoringNotificationChannel
from constructs import Construct

from contracts.monitoring_queries import GATE_REFUSED, PIPELINE_STEP_FAILED, event_log_filter
from infra.components.apis import Apis
from infra.naming import Names

WINDOW = "300s"
AUTO_CLOSE = "1800s"


def _cloud_run_filter(names: Names, metric: str, extra: str = "") -> str:
    return (
        f'resource.type = "cloud_run_revision" AND resource.labels.service_name = "{names.cloud_run_service}"'
        f' AND metric.type = "run.googleapis.com/{metric}"{extra}'
    )


class Monitoring(Construct):
    def __init__(self, scope: Construct, id: str, *, names: Names, apis: Apis):
        super().__init__(scope, id)
        infra = names.settings.infra
        self.email_channel = MonitoringNotificationChannel(
            self,
            "email",
            display_name=f"fmnist {names.env} alerts",
            type="email",
            labels={"email_address": infra.alert_email},
            user_labels=names.labels,
            depends_on=[apis["monitoring.googleapis.com"]],
        )
        common = {
            "combiner": "OR",
            "notification_channels": [self.email_channel.id],
            "user_labels": names.labels,
            "alert_strategy": {"auto_close": AUTO_CLOSE},
        }
        rate = {"alignment_period": WINDOW, "per_series_aligner": "ALIGN_RATE", "cross_series_reducer": "REDUCE_SUM"}
        self.policies = {
            "cloud_run_5xx": MonitoringAlertPolicy(
                self,
                "cloud-run-5xx",
                display_name=f"fmnist {names.env}: Cloud Run 5xx ratio",
                severity="ERROR",
                documentation={
                    "mime_type": "text/markdown",
                    "content": f"More than {infra.alert_5xx_ratio:.1%} of requests to {names.cloud_run_service} "
                    "returned 5xx over 5 minutes. Check the service logs and the champion model.",
                },
                conditions=[
                    Condition(
                        display_name="5xx / all requests",
                        condition_threshold={
                            "filter": _cloud_run_filter(
                                names, "request_count", ' AND metric.labels.response_code_class = "5xx"'
                            ),
                            "denominator_filter": _cloud_run_filter(names, "request_count"),
                            "aggregations": [Aggregation(**rate)],
                            "denominator_aggregations": [DenominatorAggregation(**rate)],
                            "comparison": "COMPARISON_GT",
                            "threshold_value": infra.alert_5xx_ratio,
                            "duration": WINDOW,
                        },
                    )
                ],
                **common,
            ),
            "cloud_run_latency": MonitoringAlertPolicy(
                self,
                "cloud-run-latency",
                display_name=f"fmnist {names.env}: Cloud Run p99 latency",
                severity="WARNING",
                documentation={
                    "mime_type": "text/markdown",
                    "content": f"p99 latency of {names.cloud_run_service} above {infra.alert_latency_p99_ms} ms "
                    "for 5 minutes: cold starts (min_instances) or an overloaded instance.",
                },
                conditions=[
                    Condition(
                        display_name="p99 request latency",
                        condition_threshold={
                            "filter": _cloud_run_filter(names, "request_latencies"),
                            "aggregations": [
                                Aggregation(
                                    alignment_period=WINDOW,
                                    per_series_aligner="ALIGN_DELTA",
                                    cross_series_reducer="REDUCE_PERCENTILE_99",
                                )
                            ],
                            "comparison": "COMPARISON_GT",
                            "threshold_value": infra.alert_latency_p99_ms,
                            "duration": WINDOW,
                        },
                    )
                ],
                **common,
            ),
            "vertex_endpoint_errors": MonitoringAlertPolicy(
                self,
                "vertex-endpoint-errors",
                display_name=f"fmnist {names.env}: Vertex AI endpoint errors",
                severity="ERROR",
                documentation={
                    "mime_type": "text/markdown",
                    "content": f"Online prediction errors on Vertex AI endpoint {names.endpoint_id}.",
                },
                conditions=[
                    Condition(
                        display_name="prediction errors",
                        condition_threshold={
                            "filter": (
                                'resource.type = "aiplatform.googleapis.com/Endpoint"'
                                f' AND resource.labels.endpoint_id = "{names.endpoint_id}"'
                                ' AND metric.type = "aiplatform.googleapis.com/prediction/online/error_count"'
                            ),
                            "aggregations": [
                                Aggregation(
                                    alignment_period=WINDOW,
                                    per_series_aligner="ALIGN_SUM",
                                    cross_series_reducer="REDUCE_SUM",
                                )
                            ],
                            "comparison": "COMPARISON_GT",
                            "threshold_value": 0,
                            "duration": "0s",
                        },
                    )
                ],
                **common,
            ),
            "pipeline_run_failed": self._log_alert(
                "pipeline-run-failed",
                f"fmnist {names.env}: pipeline run failed",
                PIPELINE_STEP_FAILED,
                "A task of a lifecycle pipeline run failed (`trainer pipeline-step` logged its command's exit "
                "status): the run fails with it. The log entry names the step; the run's page has its logs.",
                "ERROR",
                common,
            ),
            "gate_refused": self._log_alert(
                "gate-refused",
                f"fmnist {names.env}: quality gate refused a promotion",
                GATE_REFUSED,
                "The registry's quality gate refused to promote a model (the entry carries the numbers): a "
                "retraining run produced a worse model, or a ramp's challenger failed the gate.",
                "WARNING",
                common,
            ),
        }

    def _log_alert(
        self, id: str, title: str, event: str, content: str, severity: str, common: dict
    ) -> MonitoringAlertPolicy:
        """A log-based policy: one notification per matching entry, at most one per 5 minutes."""
        return MonitoringAlertPolicy(
            self,
            id,
            display_name=title,
            severity=severity,
            documentation={"mime_type": "text/markdown", "content": content},
            conditions=[Condition(display_name=event, condition_matched_log={"filter": event_log_filter(event)})],
            **{
                **common,
                "alert_strategy": {"auto_close": AUTO_CLOSE, "notification_rate_limit": {"period": WINDOW}},
            },
        )
