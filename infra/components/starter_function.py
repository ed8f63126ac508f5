"""The pipeline starter as a Cloud Run function (2nd gen): its source, its build, its rights, who may call it.

Why a function (replacing the Cloud Workflows workflow): its logic runs in tests (tests/starter: the real event
payloads, functions-framework on this very archive, the Vertex AI REST fake, fake-gcs-server); a workflow's could
only be read. What the function does is in starter/; what it may do is here:
- source: the archive of starter/ + contracts.starter (infra/components/starter_source.py), uploaded to the dev
  bucket under `starter/` by its content hash, so a code change redeploys and nothing else does;
- build: Cloud Build builds it as the starter account (logs, its image into a CMEK Docker repository of its own,
  the source object through the `starter/` condition below), never the Compute Engine default account;
- run: as the starter account, CMEK on the function (the Cloud Run functions, Cloud Run, Artifact Registry and
  Cloud Storage agents hold the key), internal ingress (Eventarc, Pub/Sub and Cloud Scheduler of the same project
  count as internal), one instance handling one request at a time, so "list the active runs, then create one" is
  never interleaved with another trigger's;
- may: start runs (the custom role of the bootstrap stack, infra/components/starter_role.py), read and write
  objects under `gs://<dev>/starter/` only (its deferrals), be invoked by the starter account only (Eventarc's
  and Cloud Scheduler's OIDC tokens).
"""

from __future__ import annotations

import hashlib
import tempfile
from functools import cache
from pathlib import Path

from cdktf import AssetType, TerraformAsset
from cdktf_cdktf_provider_google.artifact_registry_repository import ArtifactRegistryRepository
from cdktf_cdktf_provider_google.artifact_registry_repository_iam_member import ArtifactRegistryRepositoryIamMember
from cdktf_cdktf_provider_google.cloud_run_v2_service_iam_member import CloudRunV2ServiceIamMember
from cdktf_cdktf_provider_google.cloudfunctions2_function import Cloudfunctions2Function
from cdktf_cdktf_provider_google.storage_bucket_iam_member import StorageBucketIamMember
from cdktf_cdktf_provider_google.storage_bucket_object import StorageBucketObject
from constructs import Construct

from contracts.starter import DEFERRED_OBJECT, ENTRY_POINT, starter_environment
from infra.components.apis import Apis
from infra.components.kms import KeyGrants
from infra.components.starter_source import write_archive
from infra.components.storage import Storage
from infra.naming import Names

RUNTIME = "python311"  # the project's Python line (the images' 3.11)
PREFIX = DEFERRED_OBJECT.split("/")[0]  # `starter/`: its source archives and its deferrals, in the dev bucket
# the agents that use the key for a CMEK function (Google's "Protect your data with CMEK" for Cloud Run functions)
CMEK_AGENTS = ("cloudfunctions", "run", "artifactregistry", "storage")


@cache
def _archive() -> Path:
    """The archive, written once per synth into a scratch folder; cdktf copies it into the stack's assets."""
    return write_archive(Path(tempfile.mkdtemp(prefix="starter-source-")))


def prefix_condition(bucket: str, prefix: str) -> dict:
    """Objects under `prefix/` of one bucket only (object-level resource names)."""
    return {
        "title": f"only {prefix}/",
        "description": "the pipeline starter's own objects: its source archives and its deferrals",
        "expression": f'resource.name.startsWith("projects/_/buckets/{bucket}/objects/{prefix}/")',
    }


class StarterFunction(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        names: Names,
        apis: Apis,
        kms: KeyGrants,
        storage: Storage,
    ):
        super().__init__(scope, id)
        starter = names.account_member("starter")
        dev = storage.buckets["dev"]
        archive = _archive()
        asset = TerraformAsset(self, "source-archive", path=str(archive), type=AssetType.FILE)
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()[:16]
        self.source = StorageBucketObject(
            self,
            "source",
            bucket=dev.name,
            name=f"{PREFIX}/source-{digest}.zip",
            source=asset.path,
            content_type="application/zip",
        )
        # its deferrals and its source: objects under starter/ only (the build reads the source as this account)
        self.objects = StorageBucketIamMember(
            self,
            "dev-starter-objects",
            bucket=dev.name,
            role="roles/storage.objectAdmin",
            member=starter,
            condition=prefix_condition(names.bucket("dev"), PREFIX),
        )
        self.repository = ArtifactRegistryRepository(
            self,
            "images",
            repository_id=names.functions_repository,
            location=names.region,
            format="DOCKER",
            description="the pipeline starter function's built image (Cloud Run functions builds it)",
            kms_key_name=kms.key_id,
            labels=names.labels,
            depends_on=[apis["artifactregistry.googleapis.com"], kms.ready["artifactregistry"]],
        )
        self.build_push = ArtifactRegistryRepositoryIamMember(
            self,
            "images-starter-writer",
            repository=self.repository.name,
            location=names.region,
            role="roles/artifactregistry.writer",
            member=starter,
        )
        account = names.service_account_email("starter")
        self.function = Cloudfunctions2Function(
            self,
            "function",
            name=names.pipeline_starter,
            location=names.region,
            description="starts one lifecycle pipeline run per trigger unless one is active (then defers it)",
            kms_key_name=kms.key_id,
            labels=names.labels,
            build_config={
                "runtime": RUNTIME,
                "entry_point": ENTRY_POINT,
                "source": {"storage_source": {"bucket": dev.name, "object": self.source.name}},
                "docker_repository": self.repository.id,
                "service_account": f"projects/{names.project}/serviceAccounts/{account}",
            },
            service_config={
                "service_account_email": account,
                "environment_variables": starter_environment(names),
                "ingress_settings": "ALLOW_INTERNAL_ONLY",
                "max_instance_count": 1,
                "max_instance_request_concurrency": 1,
                "available_memory": "256M",
                "timeout_seconds": 60,
            },
            depends_on=[
                apis["cloudfunctions.googleapis.com"],
                apis["cloudbuild.googleapis.com"],
                apis["run.googleapis.com"],
                # one wait after every agent's grant (the runs it creates are encrypted by Vertex AI's agent too)
                *dict.fromkeys(kms.ready[agent] for agent in (*CMEK_AGENTS, "aiplatform")),
                self.objects,
                self.build_push,
            ],
        )
        # Eventarc and Cloud Scheduler call it with the starter account's OIDC token: the only invoker
        self.invoker = CloudRunV2ServiceIamMember(
            self,
            "invoker",
            name=self.function.name,
            location=names.region,
            role="roles/run.invoker",
            member=starter,
        )

    @property
    def url(self) -> str:
        """The function's Cloud Run service URL (run.app): the address and the ID token audience Cloud Run checks."""
        return self.function.service_config.uri
