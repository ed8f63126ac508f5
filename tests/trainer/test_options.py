"""The training options table (trainer/training/options.py): it agrees with TrainConfig and the config model, and
one pass lays config `training.*` and then the flags over the preset."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

import pytest

import storage
from settings import TrainingSettings, load_config
from trainer.training.model import ModelSpec
from trainer.training.options import OPTIONS
from trainer.training.train import PRESETS, TrainConfig, add_arguments, resolve_config, saved_preset_uri

CONFIG_ONLY = {"preset", "dataset_version"}  # training settings that pick what is trained, not how


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_every_option_sets_a_field_and_the_config_file_sets_exactly_the_setting_rows():
    config_fields = {f.name for f in fields(TrainConfig)} - {"model"}
    model_fields = {f.name for f in fields(ModelSpec)}
    for option in OPTIONS:
        assert option.name in (model_fields if option.on_model else config_fields), option.name
    assert {o.name for o in OPTIONS if o.setting} == set(TrainingSettings.model_fields) - CONFIG_ONLY


def test_seed_comes_from_the_config_then_the_flag():
    settings = load_config("local", environ={"FMNIST_TRAINING__SEED": "7"})
    assert resolve_config(settings, parse()).seed == 7
    assert resolve_config(settings, parse("--seed", "9")).seed == 9


def test_flags_with_and_without_settings_reach_the_config():
    settings = load_config("local", environ={"FMNIST_TRAINING__VALIDATION_FRACTION": "0.2"})
    config = resolve_config(
        settings,
        parse(
            "--preset",
            "smoke",
            "--dropout",
            "0.4",
            "--label_smoothing",
            "0.2",
            "--mixed-precision",
            "--jit-compile",
            "off",
        ),
    )
    assert (config.model.dropout, config.label_smoothing, config.mixed_precision, config.jit_compile) == (
        0.4,
        0.2,
        True,
        "off",
    )
    assert config.validation_fraction == 0.2 and config.model.width == PRESETS["smoke"].model.width


def test_the_config_file_may_name_a_saved_preset(tmp_path):
    settings = load_config(
        "local", environ={"FMNIST_STORAGE_ROOT": str(tmp_path), "FMNIST_TRAINING__PRESET": "tuned-1"}
    )
    saved = PRESETS["smoke"].to_dict() | {"epochs": 4}
    storage.write_bytes(saved_preset_uri(settings, "tuned-1"), json.dumps({"config": saved}).encode())
    assert resolve_config(settings, parse()).epochs == 4
    with pytest.raises(Exception, match="training.preset"):
        load_config("local", environ={"FMNIST_TRAINING__PRESET": "no/slashes"})
