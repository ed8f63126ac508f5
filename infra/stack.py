"""One environment's stack: providers, state backend, and the constructs of infra/components wired together."""

from __future__ import annotations

from cdktf import GcsBackend, LocalBackend, TerraformOutput, TerraformStack
from constructs import Construct

from infra import provider_loader

provider_loader.install()  # before any provider import below

from cdktf_cdktf_provider_docker.provider import DockerProvider, DockerProviderRegistryAuth
from cdktf_cdktf_provider_google.data_google_client_config import DataGoogleClientConfig
from cdktf_cdktf_provider_google.data_google_project import DataGoogleProject
from cdktf_cdktf_provider_google.provider import GoogleProvider

from infra.components.apis import Apis
from infra.components.budget import Budget
from infra.components.cicd import CiCd
from infra.components.features import Features
from infra.components.identity import Identity
from infra.components.images import Images
from infra.components.kms import Kms
from infra.components.monitoring import Monitoring
from infra.components.pipelines import Pipelines
from infra.components.registry import Registry
from infra.components.serving import Serving
from infra.components.storage import Storage
from infra.components.vertex import Vertex
from infra.components.workbench import Workbench
from infra.naming import Names
from infra.teardown import TeardownPolicy
from settings import Settings

STATE_PREFIX = "fmnist-mlops"
GOOGLE_PROVIDER_VERSION = "6.50.0"


def local_state_path(env: str) -> str:
    """Relative to cdktf.out/stacks/<env>/, where Terraform runs: the repository root (gitignored there)."""
    return f"../../../terraform.{env}.tfstate"


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
        GoogleProvider(
            self,
            "google",
            project=names.project,
            region=names.region,
            default_labels=names.labels,
            user_project_override=True,
            billing_project=names.project,
        )
        # cdktf writes the bare source "google"; OpenTofu and Terraform lock files need the full address.
        self.add_override("terraform.required_providers.google.source", "hashicorp/google")
        self.add_override("terraform.required_providers.google.version", GOOGLE_PROVIDER_VERSION)
        client = DataGoogleClientConfig(self, "client")
        DockerProvider(
            self,
            "docker",
            registry_auth=[
                DockerProviderRegistryAuth(
                    address=names.registry_host, username="oauth2accesstoken", password=client.access_token
                )
            ],
        )
        project = DataGoogleProject(self, "project", project_id=names.project)

        self.apis = apis = Apis(self, "apis", names=names, teardown=teardown)
        self.kms = kms = Kms(self, "kms", names=names, teardown=teardown, apis=apis, project=project)
        self.identity = identity = Identity(self, "identity", names=names, apis=apis)
        self.storage = Storage(self, "storage", names=names, teardown=teardown, kms=kms, identity=identity)
        self.registry = registry = Registry(self, "registry", names=names, apis=apis, kms=kms, identity=identity)
        self.images = images = Images(self, "images", names=names, registry=registry)
        self.features = Features(
            self, "features", names=names, teardown=teardown, apis=apis, kms=kms, identity=identity
        )
        self.vertex = vertex = Vertex(self, "vertex", names=names, apis=apis, kms=kms)
        self.serving = serving = Serving(
            self, "serving", names=names, teardown=teardown, apis=apis, identity=identity, images=images
        )
        self.monitoring = monitoring = Monitoring(self, "monitoring", names=names, apis=apis)
        self.workbench = None
        if infra.workbench.enabled:  # before the budget: it watches the APIs the instance enables
            self.workbench = Workbench(
                self,
                "workbench",
                names=names,
                teardown=teardown,
                apis=apis,
                kms=kms,
                identity=identity,
                storage=self.storage,
                serving=serving,
                project=project,
            )
        self.budget = Budget(self, "budget", names=names, apis=apis, kms=kms, monitoring=monitoring, project=project)
        self.cicd = CiCd(self, "cicd", names=names, apis=apis, identity=identity)
        # The lifecycle as a Vertex AI Pipeline: its template repository, accounts, and the starter + triggers.
        self.pipelines = Pipelines(
            self,
            "pipelines",
            names=names,
            teardown=teardown,
            apis=apis,
            kms=kms,
            identity=identity,
            storage=self.storage,
            registry=registry,
            features=self.features,
            budget=self.budget,
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
