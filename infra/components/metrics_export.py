"""Metrics out of every Cloud Run instance: the Managed Service for Prometheus sidecar and its RunMonitoring config.

Why this collector (README "Metrics on Cloud Run"): Cloud Run never scrapes `/metrics`. The service already sums
its gunicorn workers' multiprocess counters on `/metrics`, so one scrape per instance is the whole instance; the
sidecar scrapes it on localhost, labels each series with the instance, and writes it to Managed Service for
Prometheus, where the rollout verdict and the drift alert are PromQL over every instance (contracts). An
OpenTelemetry sidecar would need its own Prometheus receiver config to do the same; log-based metrics would need
a log line per counter change and cannot carry histograms or the per-client sums the verdict caps.
The RunMonitoring document is not secret, but Cloud Run mounts files only from Secret Manager (or buckets): it
lives in a secret the service's account alone may read, mounted at /etc/rungmp where the sidecar reads it.
"""

from __future__ import annotations

from cdktf_cdktf_provider_google.cloud_run_v2_service import (
    CloudRunV2ServiceTemplateContainers,
    CloudRunV2ServiceTemplateContainersResources,
    CloudRunV2ServiceTemplateContainersVolumeMounts,
    CloudRunV2ServiceTemplateVolumes,
    CloudRunV2ServiceTemplateVolumesSecret,
    CloudRunV2ServiceTemplateVolumesSecretItems,
)
from cdktf_cdktf_provider_google.secret_manager_secret_version import SecretManagerSecretVersion
from constructs import Construct

from infra.components.apis import Apis
from infra.components.identity import Identity
from infra.components.service_secrets import service_secret
from infra.naming import Names
from infra.teardown import TeardownPolicy

SIDECAR_IMAGE = "us-docker.pkg.dev/cloud-ops-agents-artifacts/cloud-run-gmp-sidecar/cloud-run-gmp-sidecar:1.2.0"
SIDECAR_NAME = "collector"
CONFIG_VOLUME = "rungmp-config"
CONFIG_DIR = "/etc/rungmp"  # the sidecar reads <dir>/config.yaml
SCRAPE_INTERVAL_S = 60  # samples are billed per point written: 60 s halves the cost of 30 s (README)


def run_monitoring(port: int, path: str = "/metrics") -> str:
    """The RunMonitoring document: scrape the service container on localhost every SCRAPE_INTERVAL_S."""
    return (
        "apiVersion: monitoring.googleapis.com/v1beta\n"
        "kind: RunMonitoring\n"
        "metadata:\n"
        "  name: fmnist-service\n"
        "spec:\n"
        "  endpoints:\n"
        f"  - port: {port}\n"
        f"    path: {path}\n"
        f"    interval: {SCRAPE_INTERVAL_S}s\n"
    )


class MetricsExport(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        names: Names,
        teardown: TeardownPolicy,
        apis: Apis,
        identity: Identity,
        port: int,
    ):
        super().__init__(scope, id)
        self.config, self.accessor = service_secret(
            self, "runmonitoring", names=names, teardown=teardown, apis=apis, identity=identity
        )
        self.version = SecretManagerSecretVersion(
            self, "runmonitoring-version", secret=self.config.id, secret_data=run_monitoring(port)
        )

    def container(self, depends_on: str) -> CloudRunV2ServiceTemplateContainers:
        """The sidecar: starts after the service container, which it scrapes on localhost."""
        return CloudRunV2ServiceTemplateContainers(
            name=SIDECAR_NAME,
            image=SIDECAR_IMAGE,
            depends_on=[depends_on],
            resources=CloudRunV2ServiceTemplateContainersResources(limits={"cpu": "1", "memory": "512Mi"}),
            volume_mounts=[CloudRunV2ServiceTemplateContainersVolumeMounts(name=CONFIG_VOLUME, mount_path=CONFIG_DIR)],
        )

    def volume(self) -> CloudRunV2ServiceTemplateVolumes:
        """The RunMonitoring secret as <CONFIG_DIR>/config.yaml, pinned to the version this stack wrote (a new
        document makes a new revision)."""
        items = [CloudRunV2ServiceTemplateVolumesSecretItems(path="config.yaml", version=self.version.version)]
        return CloudRunV2ServiceTemplateVolumes(
            name=CONFIG_VOLUME,
            secret=CloudRunV2ServiceTemplateVolumesSecret(secret=self.config.secret_id, items=items),
        )
