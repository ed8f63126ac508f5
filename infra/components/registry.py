"""The Artifact Registry Docker repository for the trainer and service images: immutable tags, CMEK, cleanup.

Tags are content hashes (infra/images.py), so an immutable tag always means the same bytes; the cleanup policy
keeps the recent versions and deletes untagged layers left by rebuilds.
"""

from __future__ import annotations

from cdktf_cdktf_provider_google.artifact_registry_repository import ArtifactRegistryRepository
from cdktf_cdktf_provider_google.artifact_registry_repository import (
    ArtifactRegistryRepositoryCleanupPolicies as CleanupPolicy,
)
from cdktf_cdktf_provider_google.artifact_registry_repository_iam_member import ArtifactRegistryRepositoryIamMember
from constructs import Construct

from infra.components.apis import Apis
from infra.components.identity import Identity
from infra.components.kms import KeyGrants
from infra.naming import Names

# The pipelines account's reader grant was declared by the Pipelines construct until issue 21 moved it here. It keeps
# its Terraform address: a new address would make Terraform delete the old binding after creating the same one, which
# revokes the access. Not a `moved` block (cdktf's move_from_id): checkov's terraform_json parser (3.3.30) cannot
# read one and then skips every check of the stack with a parsing error.
PIPELINES_READER_ADDRESS = "pipelines_images-pipelines-reader_12D43CB4"
KEEP_RECENT_VERSIONS = 10
UNTAGGED_MAX_AGE = "604800s"  # 7 days


class Registry(Construct):
    def __init__(self, scope: Construct, id: str, *, names: Names, apis: Apis, kms: KeyGrants, identity: Identity):
        super().__init__(scope, id)
        self.repository = ArtifactRegistryRepository(
            self,
            "docker",
            repository_id=names.artifact_repository,
            location=names.region,
            format="DOCKER",
            description="trainer and service images, tagged by source content hash",
            docker_config={"immutable_tags": True},
            kms_key_name=kms.key_id,
            labels=names.labels,
            cleanup_policy_dry_run=False,
            cleanup_policies=[
                CleanupPolicy(
                    id="keep-recent", action="KEEP", most_recent_versions={"keep_count": KEEP_RECENT_VERSIONS}
                ),
                CleanupPolicy(
                    id="delete-untagged",
                    action="DELETE",
                    condition={"tag_state": "UNTAGGED", "older_than": UNTAGGED_MAX_AGE},
                ),
            ],
            depends_on=[apis["artifactregistry.googleapis.com"], kms.ready["artifactregistry"]],
        )
        self.writer = ArtifactRegistryRepositoryIamMember(
            self,
            "deployer-writer",
            repository=self.repository.name,
            location=names.region,
            role="roles/artifactregistry.writer",
            member=identity.member("deployer"),
        )
        # Vertex AI pulls the trainer image as the trainer's identity when the job runs under that account, and as
        # the pipelines account for the pipeline's tasks. Every grant on the repository is here.
        ArtifactRegistryRepositoryIamMember(
            self,
            "trainer-reader",
            repository=self.repository.name,
            location=names.region,
            role="roles/artifactregistry.reader",
            member=identity.member("trainer"),
        )
        ArtifactRegistryRepositoryIamMember(
            self,
            "pipelines-reader",
            repository=self.repository.name,
            location=names.region,
            role="roles/artifactregistry.reader",
            member=identity.member("pipelines"),
        ).override_logical_id(PIPELINES_READER_ADDRESS)
