"""Configuration loads per environment, env vars override it, and a bad key fails naming the key."""

import pytest

from settings import ConfigError, load_config


@pytest.mark.parametrize("env", ["local", "dev", "prod"])
def test_every_environment_loads(env):
    settings = load_config(env, environ={})
    assert settings.env == env
    assert settings.project_id


def test_local_buckets_are_directories_and_gcp_buckets_are_uris(tmp_path):
    local = load_config("local", environ={"FMNIST_STORAGE_ROOT": str(tmp_path)})
    assert local.datasets_bucket == str(tmp_path / "datasets")
    dev = load_config("dev", environ={})
    assert dev.models_bucket == f"gs://{dev.bucket_prefix}-models"


def test_environment_variables_override_nested_keys():
    settings = load_config("local", environ={"FMNIST_REGISTRY__ACCURACY_FLOOR": "0.5", "FMNIST_REGION": "us-central1"})
    assert settings.registry.accuracy_floor == 0.5
    assert settings.region == "us-central1"


def test_env_selects_the_file():
    assert load_config(environ={"FMNIST_ENV": "dev"}).env == "dev"


def test_misspelled_key_is_named():
    with pytest.raises(ConfigError, match=r"registry\.acuracy_floor: unknown key"):
        load_config("local", environ={"FMNIST_REGISTRY__ACURACY_FLOOR": "0.5"})


def test_out_of_range_value_is_named():
    with pytest.raises(ConfigError, match=r"registry\.accuracy_floor"):
        load_config("local", environ={"FMNIST_REGISTRY__ACCURACY_FLOOR": "1.5"})


def test_bad_bucket_prefix_is_named():
    with pytest.raises(ConfigError, match="bucket_prefix"):
        load_config("local", environ={"FMNIST_BUCKET_PREFIX": "Bad_Prefix"})


def test_unknown_environment_lists_the_known_ones():
    with pytest.raises(ConfigError, match="known: .*local"):
        load_config("staging", environ={})


def test_invalid_yaml_is_reported(tmp_path):
    (tmp_path / "broken.yaml").write_text("env: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config("broken", environ={}, config_dir=tmp_path)


def test_ground_truth_thresholds_are_settings_and_one_poster_can_never_decide_alone():
    settings = load_config(
        "local", environ={"FMNIST_ROLLOUT__MIN_LABELS": "400", "FMNIST_ROLLOUT__MAX_ACCURACY_DROP": "0.01"}
    )
    assert (settings.rollout.thresholds().min_labels, settings.rollout.thresholds().max_accuracy_drop) == (400, 0.01)
    with pytest.raises(ConfigError, match=r"max_poster_labels \(100\) must be below rollout\.min_labels \(100\)"):
        load_config("local", environ={"FMNIST_ROLLOUT__MIN_LABELS": "100"})
