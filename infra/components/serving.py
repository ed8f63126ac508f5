"""The Cloud Run v2 prediction service: the service image by digest, its own account, probes on the health route.

Settings come from config/<env>.yaml: `service:` becomes the container's environment (contracts.serving, the same
builder as `trainer deploy-model`), `infra:` sizes and exposes it. No allUsers invoker unless
`infra.public_endpoint` asks.
"""

from __future__ import annotations

from cdktf_cdktf_provider_google.cloud_run_v2_service import (
    CloudRunV2Service,
    CloudRunV2ServiceTemplateContainers,
    CloudRunV2ServiceTemplateContainersEnv,
)
from cdktf_cdktf_provider_google.cloud_run_v2_service_iam_member import CloudRunV2ServiceIamMember
from constructs import Construct

from contracts.serving import HEALTH_ROUTE, PORT, Env, service_environment
from infra.components.apis import Apis
from infra.components.identity import Identity
from infra.components.images import Images
from infra.naming import Names
from infra.suppressions import suppress
from infra.teardown import TeardownPolicy

INGRESS = {
    "all": "INGRESS_TRAFFIC_ALL",
    "internal": "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "internal-and-load-balancer": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
}
REQUESTS_PER_WORKER = 4  # gunicorn sync workers answer one request each; a short queue absorbs bursts


def container_environment(names: Names, index_public_key: str | None = None) -> dict[str, str]:
    """The service's environment on Cloud Run (contracts.serving, the same builder as the Vertex AI deploy), and
    INDEX_PUBLIC_KEY: the registry index's signing key (infra/components/index_signing.py). Vertex AI gets no
    key: each deployed model is one pinned version (AIP_STORAGE_URI), with no index to follow."""
    settings = names.settings
    env = service_environment(
        settings.service,
        settings.rollout.thresholds(),
        env_name=names.env,
        platform="cloud-run",
        model_uri=names.model_uri,
    )
    if index_public_key is not None:
        env[Env.INDEX_PUBLIC_KEY] = index_public_key
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
        index_public_key: str | None = None,
    ):
        super().__init__(scope, id)
        infra = names.settings.infra
        probe = {"http_get": {"path": HEALTH_ROUTE, "port": PORT}}
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
                "containers": [
                    CloudRunV2ServiceTemplateContainers(
                        image=images.references["service"],
                        ports={"container_port": PORT},
                        resources={
                            "limits": {"cpu": infra.service_cpu, "memory": infra.service_memory},
                            "cpu_idle": True,
                            "startup_cpu_boost": True,
                        },
                        env=[
                            CloudRunV2ServiceTemplateContainersEnv(name=k, value=v)
                            for k, v in container_environment(names, index_public_key).items()
                        ],
                        startup_probe={
                            **probe,
                            "initial_delay_seconds": 0,
                            "period_seconds": 2,
                            "timeout_seconds": 1,
                            "failure_threshold": 30,
                        },
                        liveness_probe={**probe, "period_seconds": 30, "timeout_seconds": 5, "failure_threshold": 3},
                    )
                ],
            },
            depends_on=[apis["run.googleapis.com"]],
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
