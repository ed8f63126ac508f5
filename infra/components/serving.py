"""The Cloud Run v2 prediction service: the service image by digest, its own account, probes on the health route.

Settings come from config/<env>.yaml: `service:` becomes the container's environment (names read by
service/config.py), `infra:` sizes and exposes it. No allUsers invoker unless `infra.public_endpoint` asks.
"""

from __future__ import annotations

from cdktf_cdktf_provider_google.cloud_run_v2_service import (
    CloudRunV2Service,
    CloudRunV2ServiceTemplateContainers,
    CloudRunV2ServiceTemplateContainersEnv,
)
from cdktf_cdktf_provider_google.cloud_run_v2_service_iam_member import CloudRunV2ServiceIamMember
from constructs import Construct

from infra.components.apis import Apis
from infra.components.identity import Identity
from infra.components.images import Images
from infra.components.metrics_export import MetricsExport
from infra.components.service_secrets import ServiceSecrets
from infra.naming import Names
from infra.suppressions import suppress
from infra.teardown import TeardownPolicy

HEALTH_ROUTE = "/health"
CONTAINER_PORT = 8080
SERVICE_CONTAINER = "service"  # the ingress container; the metrics sidecar starts after it
INGRESS = {
    "all": "INGRESS_TRAFFIC_ALL",
    "internal": "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "internal-and-load-balancer": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
}
REQUESTS_PER_WORKER = 4  # gunicorn sync workers answer one request each; a short queue absorbs bursts


def container_environment(names: Names) -> dict[str, str]:
    """The service's environment variables (names from service/config.py); the rollout's only with a challenger."""
    service, rollout = names.settings.service, names.settings.rollout
    env = {
        "MODEL_URI": names.model_uri,
        "DRIFT_PSI_THRESHOLD": str(service.drift_psi_threshold),
        "MAX_INSTANCES": str(service.max_instances_per_request),
        "PAGE_ENABLED": "true" if service.page_enabled else "false",
        "WORKERS": str(service.workers),
        "MODEL_POLL_S": str(service.model_poll_s),
        "MODEL_ARTIFACT": service.model_artifact,
        "REQUIRE_DIGESTS": "true" if service.require_digests else "false",
        "FMNIST_ENV": names.env,
        "ADMIN_ENABLED": "true",  # ADMIN_TOKEN comes from Secret Manager (infra/components/service_secrets.py)
        # who a client is (canary routing, distinct clients for drift): a private service's callers carry an ID
        # token Cloud Run verified; a public one's could be forged, so there the trusted proxy's address
        "CALLER_IDENTITY": "address" if names.settings.infra.public_endpoint else "cloud_run_iam",
    }
    if service.challenger:
        env |= {
            "CHALLENGER": service.challenger,
            "ROLLOUT_MODE": service.rollout_mode,
            "SHADOW_SAMPLE_EVERY": str(service.shadow_sample_every),
            "ROLLOUT_MIN_REQUESTS": str(rollout.min_requests),
            "ROLLOUT_MIN_AGREEMENT": str(rollout.min_agreement),
            "ROLLOUT_MAX_LATENCY_RATIO": str(rollout.max_latency_ratio),
            "ROLLOUT_MAX_ERROR_RATE": str(rollout.max_error_rate),
            "ROLLOUT_MIN_CLIENTS": str(rollout.min_clients),
            "ROLLOUT_MAX_CLIENT_REQUESTS": str(rollout.max_client_requests),
        }
        if service.rollout_mode == "canary":
            env["CANARY_PERCENT"] = str(service.canary_percent)
    return env


class Serving(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        names: Names,
        teardown: TeardownPolicy,
        apis: Apis,
        identity: Identity,
        images: Images,
        secrets: ServiceSecrets,
        metrics: MetricsExport,
    ):
        super().__init__(scope, id)
        infra = names.settings.infra
        probe = {"http_get": {"path": HEALTH_ROUTE, "port": CONTAINER_PORT}}
        self.service = CloudRunV2Service(
            self,
            "service",
            name=names.cloud_run_service,
            location=names.region,
            description="Fashion-MNIST prediction service",
            labels=names.labels,
            ingress=INGRESS[infra.ingress],
            deletion_protection=teardown.cloud_run_deletion_protection,
            template={
                "service_account": identity.email("service"),
                "scaling": {"min_instance_count": infra.min_instances, "max_instance_count": infra.max_instances},
                "max_instance_request_concurrency": names.settings.service.workers * REQUESTS_PER_WORKER,
                "labels": names.labels,
                "volumes": [metrics.volume()],
                "containers": [
                    CloudRunV2ServiceTemplateContainers(
                        name=SERVICE_CONTAINER,
                        image=images.references["service"],
                        ports={"container_port": CONTAINER_PORT},
                        resources={
                            "limits": {"cpu": infra.service_cpu, "memory": infra.service_memory},
                            # instance-based billing: CPU between requests for the registry poll thread and
                            # the metrics sidecar's scrapes (README "Metrics on Cloud Run": why and its cost)
                            "cpu_idle": False,
                            "startup_cpu_boost": True,
                        },
                        env=[
                            *(
                                CloudRunV2ServiceTemplateContainersEnv(name=k, value=v)
                                for k, v in container_environment(names).items()
                            ),
                            *(CloudRunV2ServiceTemplateContainersEnv(**e) for e in secrets.environment()),  # type: ignore[arg-type]
                        ],
                        startup_probe={
                            **probe,
                            "initial_delay_seconds": 0,
                            "period_seconds": 2,
                            "timeout_seconds": 1,
                            "failure_threshold": 30,
                        },
                        liveness_probe={**probe, "period_seconds": 30, "timeout_seconds": 5, "failure_threshold": 3},
                    ),
                    metrics.container(depends_on=SERVICE_CONTAINER),
                ],
            },
            depends_on=[
                apis["run.googleapis.com"],
                *secrets.versions,
                *secrets.accessors,
                metrics.version,
                metrics.accessor,
            ],
        )
        self.invokers = []
        for index, member in enumerate(infra.invokers):
            self.invokers.append(
                CloudRunV2ServiceIamMember(
                    self,
                    f"invoker-{index}",
                    name=self.service.name,
                    location=names.region,
                    role="roles/run.invoker",
                    member=member,
                )
            )
        if infra.public_endpoint:
            public = CloudRunV2ServiceIamMember(
                self,
                "invoker-public",
                name=self.service.name,
                location=names.region,
                role="roles/run.invoker",
                member="allUsers",
            )
            suppress(
                public,
                "CKV2_FMNIST_1",
                f"config/{names.env}.yaml sets infra.public_endpoint: true, asking for an unauthenticated "
                "prediction endpoint.",
            )
            self.invokers.append(public)
