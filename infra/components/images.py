"""Build, tag and push the trainer and service images during `cdktf deploy`, and expose their digests.

Why the docker provider (see infra/README.md, "Image delivery"): one `cdktf deploy` creates the repository,
builds and pushes both images and pins Cloud Run to the pushed digest, in dependency order, with no bootstrap
step between "repository exists" and "service exists". The tag is a content hash of the image's sources
(contracts/images.py): unchanged sources plan no build and no new revision. Needs a Docker daemon where deploy runs,
and the provider pings it whenever it is configured: so these resources are the whole `images-<env>` stack
(infra/images_stack.py), after the repository's stack and before Cloud Run's, and no other plan needs a daemon.
"""

from __future__ import annotations

from cdktf_cdktf_provider_docker.image import Image
from cdktf_cdktf_provider_docker.registry_image import RegistryImage
from constructs import Construct

from contracts.images import IMAGE_SOURCES, source_tag
from infra.naming import Names

# cdktf runs Terraform in cdktf.out/stacks/images-<env>/: the repository root is three levels up (a relative path, so
# no path of the synthesizing machine ends up in the stack).
BUILD_CONTEXT = "${path.module}/../../.."
PLATFORM = "linux/amd64"


class Images(Construct):
    def __init__(self, scope: Construct, id: str, *, names: Names):
        """The repository and the deployer's writer grant are the environment stack's: that stack is deployed first
        (a stack dependency, not a `depends_on`, which Terraform cannot follow across stacks)."""
        super().__init__(scope, id)
        self.tags: dict[str, str] = {}
        self.references: dict[str, str] = {}
        self.pushed: dict[str, RegistryImage] = {}
        for image, source in IMAGE_SOURCES.items():
            tag = source_tag(image)
            repository = names.image_repository(image)
            built = Image(
                self,
                f"{image}-build",
                name=f"{repository}:{tag}",
                platform=PLATFORM,
                keep_locally=True,
                build_attribute={
                    "context": BUILD_CONTEXT,
                    "dockerfile": source.dockerfile,
                    "platform": PLATFORM,
                    "build_args": {"CODE_VERSION": tag},
                    "label": {"org.opencontainers.image.revision": tag},
                },
                triggers={"source_tag": tag},
            )
            # Replaced only when the sources change: a CI machine without the local image rebuilds it but does not
            # push the same (immutable) tag again.
            pushed = RegistryImage(
                self,
                f"{image}-push",
                name=built.name,
                keep_remotely=True,
                triggers={"source_tag": tag},
            )
            self.tags[image] = tag
            self.pushed[image] = pushed
            self.references[image] = f"{repository}@{pushed.sha256_digest}"
