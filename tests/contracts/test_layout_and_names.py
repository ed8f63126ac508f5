"""The layout's model references and the Google Cloud names derived from one environment's settings."""

from __future__ import annotations

import pytest

from contracts import layout
from contracts.cloud import CloudNameError
from settings import load_config


@pytest.mark.parametrize(
    "uri, parsed",
    [
        (".mlops/models@champion", (".mlops/models", "champion")),
        ("gs://p-models@candidate", ("gs://p-models", "candidate")),
        ("gs://p-models/registry/versions/v1", None),
        ("models@", None),
        ("@champion", None),
        ("models@bad alias", None),
    ],
)
def test_model_references(uri, parsed):
    assert layout.parse_model_reference(uri) == parsed
    if parsed:
        assert layout.model_reference(*parsed) == uri


def test_names_follow_the_bucket_prefix_and_config_overrides():
    names = load_config("dev").names
    assert names.bucket_uri("models") == "gs://fmnist-mlops-dev-models"
    assert names.model_uri == "gs://fmnist-mlops-dev-models@champion"
    assert names.runtime_account("trainer") == names.service_account_email("trainer")
    assert names.kms_key_name.endswith("/keyRings/fmnist/cryptoKeys/fmnist-cmek")
    overridden = load_config(
        "dev",
        environ={
            "FMNIST_VERTEX__SERVICE_ACCOUNT": "x@y.iam.gserviceaccount.com",
            "FMNIST_VERTEX__KMS_KEY": "projects/p/keys/k",
        },
    ).names
    assert overridden.runtime_account("trainer") == "x@y.iam.gserviceaccount.com"
    assert overridden.service_account_email("trainer") == names.service_account_email("trainer")
    assert overridden.kms_key_name == "projects/p/keys/k"


def test_too_long_service_account_id_names_the_key():
    names = load_config("dev", environ={"FMNIST_BUCKET_PREFIX": "a-very-long-bucket-prefix-x"}).names
    with pytest.raises(CloudNameError, match="shorten bucket_prefix in config/dev.yaml"):
        names.service_account_id("checks")
