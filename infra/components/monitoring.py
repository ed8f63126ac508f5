"""The alert email channel and Cloud Monitoring alert policies: Cloud Run 5xx ratio and p99 latency, and errors
on the Vertex AI endpoint. Thresholds come from `infra:` in config/<env>.yaml."""

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
        }
