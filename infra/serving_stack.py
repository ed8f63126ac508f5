"""`serving-<env>`: the Cloud Run service on the image digest that `images-<env>` pushed, and who may call it.

Why apart from `<env>` (issue 23, defect 7): Cloud Run needs the pushed image, the images need `<env>`'s repository,
and the docker provider that pushes them needs a Docker daemon to plan; so the service, and every grant on it (the
configured invokers, the Workbench's), sit after the images in a stack that plans and destroys without a daemon.
The digest arrives as a cdktf cross-stack reference (an output of `images-<env>`, read here through a
`terraform_remote_state` on the same state bucket). The service's API is enabled again here, like the bootstrap
stack's APIs in `<env>`, so the service depends on it inside its own graph; `<env>` enabled it first and its budget
watches the project.
"""

from __future__ import annotations

from cdktf import TerraformOutput, TerraformStack
from constructs import Construct

from contracts.serving import PORT
from infra import provider_loader

provider_loader.install()  # before any provider import below

from cdktf_cdktf_provider_google.cloud_run_v2_service_iam_member import CloudRunV2ServiceIamMember

from infra.backend import environment_backend
from infra.components.apis import Apis
from infra.components.identity import Identity
from infra.components.images import Images
from infra.components.index_signing import index_public_key
from infra.components.metrics_export import MetricsExport
from infra.components.promoter import Promoter
from infra.components.providers import google_provider
from infra.components.ramp import Ramp
from infra.components.service_secrets import ServiceSecrets
from infra.components.serving import Serving
from infra.guard import deploy_guard
from infra.naming import WORKBENCH_SUFFIX, Names
from infra.suppressions import suppress
from infra.teardown import TeardownPolicy
from settings import Settings

# Cloud KMS: the index key read at plan time; Secret Manager: the operator token, routing key and the metrics
# sidecar's config (infra/components/service_secrets.py, metrics_export.py)
# Cloud Scheduler: the ramp's tick (infra/components/ramp.py)
SERVING_APIS = (
    "run.googleapis.com",
    "cloudkms.googleapis.com",
    "secretmanager.googleapis.com",
    "cloudscheduler.googleapis.com",
)


class ServingStack(TerraformStack):
    def __init__(self, scope: Construct, settings: Settings, *, identity: Identity, images: Images):
        """`identity` is the environment stack's (account names only); `images` the images stack's construct."""
        names = Names.of(settings)
        super().__init__(scope, names.serving_stack)
        self.settings, self.names = settings, names
        teardown = TeardownPolicy.for_settings(settings)
        environment_backend(self, settings, names.serving_stack)
        google_provider(self, names)
        deploy_guard(self, settings)

        self.apis = apis = Apis(self, "apis", names=names, teardown=teardown, services=SERVING_APIS)
        for api, service in apis.services.items():
            suppress(
                service,
                "CKV2_FMNIST_3",
                f"The {names.env} stack enables {api} first and its budget watches this project; it is enabled "
                "again here so that the service depends on its API inside this stack's graph.",
            )
        self.service_secrets = ServiceSecrets(
            self, "service-secrets", names=names, teardown=teardown, apis=apis, identity=identity
        )
        self.metrics_export = MetricsExport(
            self, "metrics-export", names=names, teardown=teardown, apis=apis, identity=identity, port=PORT
        )
        self.serving = serving = Serving(
            self,
            "serving",
            names=names,
            teardown=teardown,
            apis=apis,
            identity=identity,
            images=images,
            index_public_key=index_public_key(self, names, apis),
            secrets=self.service_secrets,
            metrics=self.metrics_export,
        )
        self.ramp = Ramp(
            self,
            "ramp",
            names=names,
            teardown=teardown,
            apis=apis,
            identity=identity,
            images=images,
            service=serving.service,
        )
        if settings.infra.workbench.enabled:  # the notebooks call the service as the Workbench's account
            CloudRunV2ServiceIamMember(
                self,
                "workbench-invoker",
                name=serving.service.name,
                location=names.region,
                role="roles/run.invoker",
                member=names.account_member(WORKBENCH_SUFFIX),
            )
        # the promoter's jobs run the trainer image pushed beside the service's (issue 25)
        self.promoter = Promoter(
            self, "promoter", names=names, teardown=teardown, apis=apis, identity=identity, images=images
        )
        TerraformOutput(self, "service_url", value=serving.service.uri)
