"""The pipeline starter function's resources (infra/components/starter_function.py) on the synthesized environment
stacks, pinned exactly where test_pipelines.py checks only part: where its source lives and how it is typed, the
`starter/` condition, its build repository and who pushes there, its memory and timeout, the invoker grant, what
the function waits for, and each resource's Terraform address."""

from __future__ import annotations

import pytest

from infra.naming import Names
from tests.infra.conftest import ENVIRONMENTS

ADDRESSES = {
    "pipelines/starter/source": "google_storage_bucket_object",
    "pipelines/starter/dev-starter-objects": "google_storage_bucket_iam_member",
    "pipelines/starter/images": "google_artifact_registry_repository",
    "pipelines/starter/images-starter-writer": "google_artifact_registry_repository_iam_member",
    "pipelines/starter/function": "google_cloudfunctions2_function",
    "pipelines/starter/invoker": "google_cloud_run_v2_service_iam_member",
}


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_starter_function_s_resources_keep_their_addresses_and_waits(synth, env):
    found = {p: kind for p, (kind, _, _) in synth.by_path(env).items() if p.startswith("pipelines/starter/")}
    assert found == ADDRESSES
    assert synth.waits(env, "pipelines/starter/") == {
        "pipelines/starter/images": ["apis/artifactregistry", "kms/grants-propagated"],
        # every API its build and run use, every CMEK agent's grant, and its own object and push rights
        "pipelines/starter/function": [
            "apis/cloudfunctions",
            "apis/cloudbuild",
            "apis/run",
            "kms/grants-propagated",
            "pipelines/starter/dev-starter-objects",
            "pipelines/starter/images-starter-writer",
        ],
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_starter_function_s_source_rights_build_and_run_are_exact(synth, env, settings_by_env):
    names = Names.of(settings_by_env[env])
    starter = names.account_member("starter")
    dev_bucket = synth.ref(env, "storage/dev", "name")
    source = synth.body(env, "pipelines/starter/source")
    assert (source["bucket"], source["content_type"]) == (dev_bucket, "application/zip")
    # the archive's place in the stack's assets (where `cdktf deploy` uploads it from) follows the asset's id
    assert source["source"].startswith("assets/pipelines_starter_source-archive_")
    objects = synth.body(env, "pipelines/starter/dev-starter-objects")
    assert (objects["bucket"], objects["role"], objects["member"]) == (dev_bucket, "roles/storage.objectAdmin", starter)
    assert objects["condition"] == {
        "title": "only starter/",
        "description": "the pipeline starter's own objects: its source archives and its deferrals",
        "expression": f'resource.name.startsWith("projects/_/buckets/{names.bucket("dev")}/objects/starter/")',
    }
    images = synth.body(env, "pipelines/starter/images")
    assert (images["repository_id"], images["location"], images["format"], images["labels"]) == (
        names.functions_repository,
        names.region,
        "DOCKER",
        names.labels,
    )
    assert images["description"] == "the pipeline starter function's built image (Cloud Run functions builds it)"
    push = synth.body(env, "pipelines/starter/images-starter-writer")
    assert (push["repository"], push["location"], push["role"], push["member"]) == (
        synth.ref(env, "pipelines/starter/images", "name"),
        names.region,
        "roles/artifactregistry.writer",
        starter,
    )
    function = synth.body(env, "pipelines/starter/function")
    assert (function["location"], function["labels"]) == (names.region, names.labels)
    assert function["description"] == (
        "starts one lifecycle pipeline run per trigger unless one is active (then defers it)"
    )
    assert function["build_config"]["source"] == {
        "storage_source": {"bucket": dev_bucket, "object": synth.ref(env, "pipelines/starter/source", "name")}
    }
    assert function["build_config"]["service_account"] == (
        f"projects/{names.project}/serviceAccounts/{names.service_account_email('starter')}"
    )
    service = function["service_config"]
    assert (service["available_memory"], service["timeout_seconds"]) == ("256M", 60)
    invoker = synth.body(env, "pipelines/starter/invoker")
    assert (invoker["name"], invoker["location"], invoker["role"], invoker["member"]) == (
        synth.ref(env, "pipelines/starter/function", "name"),
        names.region,
        "roles/run.invoker",
        starter,
    )
