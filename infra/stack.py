"""One environment's stack: providers, state backend, and the constructs of infra/components wired together.

The images (infra/images_stack.py) and the Cloud Run service (infra/serving_stack.py) follow in stacks of their own,
so that this stack plans and destroys without a Docker daemon (issue 23, defect 7).

It runs after the environment's bootstrap stack (infra/bootstrap.py), which holds the state bucket, the CMEK key,
the service accounts and the deployer's rights. Providers: the default google provider names no quota project
(a fresh project's APIs are off until this stack enables them); only the `billing` alias, used by the budget alone,
sets `user_project_override`. Nothing is read at plan time that needs an API this stack enables.
"""

from __future__ import annotations

from cdktf import TerraformOutput, TerraformStack
from constructs import Construct

from infra import provider_loader

provider_loader.install()  # before any provider import below

from cdktf_cdktf_provider_google.data_google_project import DataGoogleProject

from infra.backend import STATE_PREFIX, environment_backend
from infra.bootstrap import local_state_path
from infra.components.apis import Apis
from infra.components.budget import Budget
from infra.components.cicd import CiCd
from infra.components.features import Features
from infra.components.ground_truth import GroundTruth
from infra.components.identity import Identity
from infra.components.kms import KeyGrants
from infra.components.monitoring import Monitoring
from infra.components.pipelines import Pipelines
from infra.components.providers import billing_provider, google_beta_provider, google_provider
from infra.components.registry import Registry
from infra.components.service_agents import ServiceAgents
from infra.components.storage import Storage
from infra.components.vertex import Vertex
from infra.components.workbench import Workbench
from infra.guard import deploy_guard
from infra.naming import Names
from infra.teardown import TeardownPolicy
from settings import Settings

__all__ = ["STATE_PREFIX", "EnvironmentStack", "local_state_path"]


class EnvironmentStack(TerraformStack):
    """Everything one environment's project runs on."""

    def __init__(self, scope: Construct, settings: Settings):
        super().__init__(scope, settings.env)
        self.settings = settings
        self.names = names = Names.of(settings)
        self.teardown = teardown = TeardownPolicy.for_settings(settings)
        infra = settings.infra

        environment_backend(self, settings, settings.env)
        google_provider(self, names)
        billing = billing_provider(self, names)
        beta = google_beta_provider(self, names)
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
        self.features = Features(
            self, "features", names=names, teardown=teardown, apis=apis, kms=kms, identity=identity
        )
        self.ground_truth = GroundTruth(self, "ground_truth", names=names, teardown=teardown, apis=apis, kms=kms)
        self.vertex = vertex = Vertex(self, "vertex", names=names, apis=apis, kms=kms)
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
            teardown=teardown,
            beta=beta,
        )

        # What the trainer and operators need after a deploy (`cdktf output <env>`; the images and the service URL
        # are outputs of images-<env> and serving-<env>).
        outputs = {
            "endpoint": vertex.endpoint.id,
            "tensorboard": vertex.tensorboard.id,
            "trainer_service_account": identity.email("trainer"),
            "models_bucket": f"gs://{names.bucket('models')}",
        }
        for key, value in outputs.items():
            TerraformOutput(self, key, value=value)
