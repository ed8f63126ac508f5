"""One environment's stack: providers, state backend, and the constructs of infra/components wired together.

It runs after the environment's bootstrap stack (infra/bootstrap.py), which holds the state bucket, the CMEK key,
the service accounts and the deployer's rights. Providers: the default google provider names no quota project
(a fresh project's APIs are off until this stack enables them); only the `billing` alias, used by the budget alone,
sets `user_project_override`. Nothing is read at plan time that needs an API this stack enables.
"""

from __future__ import annotations

from cdktf import GcsBackend, LocalBackend, TerraformOutput, TerraformStack
from constructs import Construct

from infra import provider_loader

provider_loader.install()  # before any provider import below

from cdktf_cdktf_provider_google.data_google_project import DataGoogleProject

from infra.bootstrap import local_state_path
from infra.components.apis import Apis
from infra.components.budget import Budget
from infra.components.cicd import CiCd
from infra.components.features import Features
from infra.components.identity import Identity
from infra.components.images import Images
from infra.components.kms import KeyGrants
from infra.components.metrics_export import MetricsExport
from infra.components.monitoring import Monitoring
from infra.components.pipelines import Pipelines
from infra.components.providers import billing_provider, docker_provider, google_beta_provider, google_provider
from infra.components.registry import Registry
from infra.components.service_agents import ServiceAgents
from infra.components.service_secrets import ServiceSecrets
from infra.components.serving import CONTAINER_PORT, Serving
from infra.components.storage import Storage
from infra.components.vertex import Vertex
from infra.components.workbench import Workbench
from infra.guard import deploy_guard
from infra.naming import Names
from infra.teardown import TeardownPolicy
from settings import Settings

STATE_PREFIX = "fmnist-mlops"

__all__ = ["EnvironmentStack", "local_state_path"]


class EnvironmentStack(TerraformStack):
    """Everything one environment's project runs on."""

    def __init__(self, scope: Construct, settings: Settings):
        super().__init__(scope, settings.env)
        self.settings = settings
        self.names = names = Names.of(settings)
        self.teardown = teardown = TeardownPolicy.for_settings(settings)
        infra = settings.infra

        if infra.state_bucket:
            GcsBackend(self, bucket=infra.state_bucket, prefix=f"{STATE_PREFIX}/{settings.env}")
        else:
            LocalBackend(self, path=local_state_path(settings.env))
        google_provider(self, names)
        billing = billing_provider(self, names)
        beta = google_beta_provider(self, names)
        docker_provider(self, names)
        deploy_guard(self, settings)

        self.apis = apis = Apis(self, "apis", names=names, teardown=teardown)
        # Read in apply on the first deploy (it depends on the API this stack enables), at plan time afterwards.
        project = DataGoogleProject(
            self, "project", project_id=names.project, depends_on=[apis["cloudresourcemanager.googleapis.com"]]
        )
        self.agents = agents = ServiceAgents(self, "agents", names=names, apis=apis, beta=beta)
        self.kms = kms = KeyGrants(self, "kms", names=names, apis=apis, agents=agents)
        self.identity = identity = Identity(self, "identity", names=names, apis=apis)
        self.storage = Storage(self, "storage", names=names, teardown=teardown, apis=apis, kms=kms, identity=identity)
        self.registry = registry = Registry(self, "registry", names=names, apis=apis, kms=kms, identity=identity)
        self.images = images = Images(self, "images", names=names, registry=registry)
        self.features = Features(
            self, "features", names=names, teardown=teardown, apis=apis, kms=kms, identity=identity
        )
        self.vertex = vertex = Vertex(self, "vertex", names=names, apis=apis, kms=kms)
        self.service_secrets = ServiceSecrets(self, "service-secrets", names=names, apis=apis, identity=identity)
        self.metrics_export = MetricsExport(
            self, "metrics-export", names=names, apis=apis, identity=identity, port=CONTAINER_PORT
        )
        self.serving = serving = Serving(
            self,
            "serving",
            names=names,
            teardown=teardown,
            apis=apis,
            identity=identity,
            images=images,
            secrets=self.service_secrets,
            metrics=self.metrics_export,
        )
        self.monitoring = monitoring = Monitoring(self, "monitoring", names=names, apis=apis)
        self.workbench = None
        if infra.workbench.enabled:  # before the budget: it watches the APIs the Workbench enables
            self.workbench = Workbench(
                self,
                "workbench",
                names=names,
                teardown=teardown,
                apis=apis,
                kms=kms,
                storage=self.storage,
                serving=serving,
                project=project,
                beta=beta,
            )
        self.budget = Budget(
            self,
            "budget",
            names=names,
            apis=apis,
            kms=kms,
            monitoring=monitoring,
            project=project,
            billing_provider=billing,
        )
        self.cicd = CiCd(self, "cicd", names=names, apis=apis, identity=identity)
        # The lifecycle as a Vertex AI Pipeline: its template repository and the starter + triggers of its runs.
        self.pipelines = Pipelines(
            self,
            "pipelines",
            names=names,
            apis=apis,
            kms=kms,
            agents=agents,
            identity=identity,
            storage=self.storage,
            registry=registry,
            features=self.features,
            project=project,
        )

        # What the trainer and operators need after a deploy (`cdktf output <env>`).
        outputs = {
            "service_url": serving.service.uri,
            "service_image": images.references["service"],
            "trainer_image": images.references["trainer"],
            "endpoint": vertex.endpoint.id,
            "tensorboard": vertex.tensorboard.id,
            "trainer_service_account": identity.email("trainer"),
            "models_bucket": f"gs://{names.bucket('models')}",
        }
        for key, value in outputs.items():
            TerraformOutput(self, key, value=value)
