"""Bad infra configuration fails at synth time with one message naming the key and the fix."""

from __future__ import annotations

import pytest

from infra.__main__ import main as synth_main
from infra.app import build_app, plan_environments
from settings import ConfigError, load_config


def test_local_target_is_skipped_with_its_reason():
    plan = plan_environments(["local", "dev"], environ={})
    assert [s.env for s in plan.environments] == ["dev"]
    assert "target is 'local'" in plan.skipped["local"]


def test_only_local_is_an_error(capsys):
    assert synth_main(["--env", "local"]) == 1
    assert "no gcp-target environment" in capsys.readouterr().err


def test_unknown_environment_is_an_error(capsys):
    assert synth_main(["--env", "staging-typo"]) == 1
    assert "no configuration for environment 'staging-typo'" in capsys.readouterr().err


def test_missing_billing_account_names_the_setting(tmp_path):
    plan = plan_environments(["dev"], environ={"FMNIST_INFRA__BILLING_ACCOUNT": "null"})
    with pytest.raises(ValueError, match=r"infra.billing_account.*FMNIST_INFRA__BILLING_ACCOUNT"):
        build_app(plan, outdir=str(tmp_path))


def test_malformed_billing_account_is_rejected_at_load():
    with pytest.raises(ConfigError, match="infra.billing_account"):
        load_config("dev", environ={"FMNIST_INFRA__BILLING_ACCOUNT": "not-an-account"})


def test_deploy_needs_exactly_one_git_ref():
    with pytest.raises(ConfigError, match="deploy_branch and infra.deploy_tag"):
        load_config("dev", environ={"FMNIST_INFRA__DEPLOY_TAG": "^v.*$"})


def test_service_account_ids_longer_than_30_characters_are_rejected(tmp_path):
    plan = plan_environments(["dev"], environ={"FMNIST_BUCKET_PREFIX": "a-very-long-bucket-prefix-for-fmnist"})
    with pytest.raises(ValueError, match="longer than 30 characters: shorten bucket_prefix"):
        build_app(plan, outdir=str(tmp_path))
