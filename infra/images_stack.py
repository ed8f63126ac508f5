"""`images-<env>`: the trainer and service images, built and pushed by the docker provider, and nothing else.

Why a stack of its own (issue 23, defect 7; infra/README.md, "Image delivery"): the docker provider pings a Docker
daemon whenever Terraform configures it, so any stack holding a docker resource needs a daemon to plan and to
destroy. Here it plans alone: `<env>` (the repository it pushes to) and `serving-<env>` (Cloud Run on the pushed
digest) plan and destroy without a daemon. It runs after `<env>` (a stack dependency: the repository and the
deployer's writer grant must exist) and before `serving-<env>`, which reads its digests as cdktf cross-stack outputs.
Its destroy is skipped: both images keep their copies (`keep_locally`, `keep_remotely`), so nothing of it exists
outside the repository, which `<env>`'s destroy deletes.
"""

from __future__ import annotations

from cdktf import TerraformOutput, TerraformStack
from constructs import Construct

from infra.backend import environment_backend
from infra.components.images import Images
from infra.components.providers import docker_provider
from infra.guard import deploy_guard
from infra.naming import Names
from settings import Settings


class ImagesStack(TerraformStack):
    def __init__(self, scope: Construct, settings: Settings, *, after: TerraformStack):
        names = Names.of(settings)
        super().__init__(scope, names.images_stack)
        self.settings, self.names = settings, names
        environment_backend(self, settings, names.images_stack)
        docker_provider(self, names)
        deploy_guard(self, settings)
        self.add_dependency(after)  # the repository and its writer grant (no reference crosses: names are known)
        self.images = images = Images(self, "images", names=names)
        # The trainer must run the tag this stack pushed (`cdktf output images-<env>`): there is no moving tag.
        for image, reference in images.references.items():
            TerraformOutput(self, f"{image}_image", value=reference)
