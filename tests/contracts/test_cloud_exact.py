"""Every name contracts.cloud forms, exactly, from one hand-written CloudNames: infra/ declares these and the
trainer finds them by the same functions, so a wrong character is a resource one side never finds. Also the edges:
Google's 30-character account id limit (30 allowed, 31 refused), the config overrides each applying to its own role
or image only, and an image whose sources are missing naming the key to set."""

from __future__ import annotations

import pytest

from contracts import images
from contracts.cloud import PROMOTION_APPROVE_JOB, PROMOTION_GATE_JOB, CloudNameError, CloudNames, promotion_job_command


def _names(**overrides: str) -> CloudNames:
    return CloudNames(
        env="qa",
        project="proj-7",
        region="asia-east1",
        bucket_prefix="pfx",
        kms_key_ring="ring",
        endpoint_id="42",
        parent_model="fmnist-parent",
        **overrides,
    )


def test_each_promotion_job_runs_its_own_fixed_command():
    assert promotion_job_command("qa", PROMOTION_GATE_JOB) == [
        "python3", "-m", "trainer", "--env", "qa", "promotion", "gate-job"
    ]  # fmt: skip
    assert promotion_job_command("prod", PROMOTION_APPROVE_JOB) == [
        "python3", "-m", "trainer", "--env", "prod", "promotion", "approve-job"
    ]  # fmt: skip
    with pytest.raises(KeyError):
        promotion_job_command("qa", "fmnist-other-job")


def test_buckets_and_the_uris_under_them():
    names = _names()
    assert names.bucket("models") == "pfx-models"
    assert names.bucket_uri("datasets") == "gs://pfx-datasets"
    assert names.access_log_bucket == "pfx-access-logs"
    assert names.staging_uri == "gs://pfx-dev/vertex-staging"
    assert names.model_uri == "gs://pfx-models@champion"
    assert names.raw_data_uri == "gs://pfx-datasets/raw"
    assert names.pipeline_root == "gs://pfx-dev/pipeline-root"
    assert names.batch_input_uri == "gs://pfx-datasets/incoming"
    assert names.batch_predictions_uri == "gs://pfx-dev/batch-predictions"


@pytest.mark.parametrize(
    "role, account_id",
    [
        ("trainer", "pfx-trainer"),
        ("service", "pfx-service"),
        ("deployer", "pfx-deployer"),
        ("checks", "pfx-ci-checks"),
        ("promoter", "pfx-promoter"),
        ("pipelines", "pfx-pipelines"),
        ("starter", "pfx-pl-starter"),
    ],
)
def test_every_role_has_its_account(role: str, account_id: str):
    names = _names()
    assert names.service_account_id(role) == account_id
    assert names.service_account_email(role) == f"{account_id}@proj-7.iam.gserviceaccount.com"


def test_an_unknown_role_has_no_account():
    with pytest.raises(KeyError):
        _names().service_account_id("auditor")


def test_an_account_id_of_thirty_characters_is_allowed_and_of_thirty_one_refused_naming_the_key():
    names = CloudNames(env="qa", project="p", region="r", bucket_prefix="p" * 20, kms_key_ring="k", endpoint_id="1",
                       parent_model="m")  # fmt: skip
    assert names.account_id("123456789") == "p" * 20 + "-123456789"  # 30 characters
    with pytest.raises(CloudNameError) as raised:
        names.account_id("1234567890")
    assert str(raised.value) == (
        f"service account id '{'p' * 20}-1234567890' is longer than 30 characters: "
        "shorten bucket_prefix in config/qa.yaml"
    )


def test_a_runtime_account_override_applies_to_its_own_role_only():
    plain = _names()
    assert plain.runtime_account("trainer") == "pfx-trainer@proj-7.iam.gserviceaccount.com"
    assert plain.runtime_account("service") == "pfx-service@proj-7.iam.gserviceaccount.com"
    trainer = _names(trainer_account_override="t@x.iam.gserviceaccount.com")
    assert trainer.runtime_account("trainer") == "t@x.iam.gserviceaccount.com"
    assert trainer.runtime_account("service") == "pfx-service@proj-7.iam.gserviceaccount.com"
    service = _names(service_account_override="s@x.iam.gserviceaccount.com")
    assert service.runtime_account("service") == "s@x.iam.gserviceaccount.com"
    assert service.runtime_account("trainer") == "pfx-trainer@proj-7.iam.gserviceaccount.com"
    with pytest.raises(KeyError):
        plain.runtime_account("deployer")  # no job or model runs as the deployer


def test_images_are_the_content_tag_in_the_environments_repository():
    names = _names()
    assert names.registry_host == "asia-east1-docker.pkg.dev"
    assert names.artifact_repository == "pfx-images"
    assert names.image_repository("trainer") == "asia-east1-docker.pkg.dev/proj-7/pfx-images/trainer"
    for image in ("trainer", "service"):
        tag = images.source_tag(image)
        assert tag.startswith("src-")
        assert names.image_uri(image) == f"asia-east1-docker.pkg.dev/proj-7/pfx-images/{image}:{tag}"
    other = _names(artifact_repository_override="shared-images")
    assert other.image_repository("service") == "asia-east1-docker.pkg.dev/proj-7/shared-images/service"


def test_an_image_override_applies_to_its_own_image_only():
    trainer = _names(trainer_image_override="eu.gcr.io/p/t:1")
    assert trainer.image_uri("trainer") == "eu.gcr.io/p/t:1"
    assert trainer.image_uri("service").endswith(f"/pfx-images/service:{images.source_tag('service')}")
    service = _names(service_image_override="eu.gcr.io/p/s:2")
    assert service.image_uri("service") == "eu.gcr.io/p/s:2"
    assert service.image_uri("trainer").endswith(f"/pfx-images/trainer:{images.source_tag('trainer')}")


def test_an_image_without_its_sources_or_an_override_names_the_key_to_set(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "REPO_ROOT", tmp_path)  # an installation without the image's sources
    with pytest.raises(images.SourcesMissing) as missing:
        images.source_tag("service")
    with pytest.raises(CloudNameError) as raised:
        _names().image_uri("service")
    assert str(raised.value) == f"{missing.value}; set vertex.service_image (the `cdktf output` service_image)"
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert _names(service_image_override="eu.gcr.io/p/s:2").image_uri("service") == "eu.gcr.io/p/s:2"


def test_the_key_endpoint_model_feature_and_pipeline_names():
    names = _names()
    assert names.labels == {"app": "fmnist-mlops", "env": "qa", "managed_by": "cdktf"}
    assert names.display_name == "fmnist-qa"
    assert names.kms_key_name == "projects/proj-7/locations/asia-east1/keyRings/ring/cryptoKeys/fmnist-cmek"
    assert _names(kms_key_override="projects/o/k").kms_key_name == "projects/o/k"
    assert names.index_signing_key_name == (
        "projects/proj-7/locations/asia-east1/keyRings/ring/cryptoKeys/fmnist-index-signing"
    )
    assert names.endpoint_name == "projects/proj-7/locations/asia-east1/endpoints/42"
    assert names.parent_model_name == "projects/proj-7/locations/asia-east1/models/fmnist-parent"
    assert names.feature_table_uri == "bq://proj-7.fmnist_features.image_features"
    assert names.feature_view_name == (
        "projects/proj-7/locations/asia-east1/featureOnlineStores/fmnist_features/featureViews/image_features"
    )
    assert names.aiplatform_endpoint == "asia-east1-aiplatform.googleapis.com"
    assert names.pipeline_repository == "pfx-pipelines"
    assert names.pipeline_template_uri == (
        "https://asia-east1-kfp.pkg.dev/proj-7/pfx-pipelines/fmnist-lifecycle/latest"
    )
    assert names.functions_repository == "pfx-functions"
    assert names.starter_role == "projects/proj-7/roles/fmnistPipelineStarter"
    assert names.raw_commit_object == "raw/_COMMIT"
