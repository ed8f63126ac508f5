"""The training options table (trainer/training/options.py) as a user meets it: the exact flags it adds (a tuning
trial's underscored spelling included, none for the config-only row), their parsing, and `apply_options`' result
field by field for the preset alone, config `training.*` over it, flags over both, and each refused value at its
bound. tests/trainer/test_options.py checks the table against TrainConfig and the config model."""

from __future__ import annotations

import argparse
from dataclasses import replace
from types import SimpleNamespace

import pytest

from settings import TrainingSettings
from trainer.errors import CommandError
from trainer.training.options import add_option_flags, apply_options, whole_number
from trainer.training.train import PRESETS

SMOKE = PRESETS["smoke"]


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train")
    add_option_flags(parser)
    return parser


def parse(*argv: str) -> argparse.Namespace:
    return parser().parse_args(list(argv))


def test_the_flags_are_exactly_these():
    flags = [action.option_strings for action in parser()._actions if action.dest != "help"]
    assert flags == [
        ["--epochs"],
        ["--batch-size", "--batch_size"],
        ["--learning-rate", "--learning_rate"],
        ["--width"],
        ["--dropout"],
        ["--label-smoothing", "--label_smoothing"],
        ["--ema-momentum", "--ema_momentum"],
        ["--augment", "--no-augment"],
        ["--mixed-precision", "--no-mixed-precision"],
        ["--jit-compile"],
        ["--seed"],
    ]


def test_no_flag_given_leaves_every_option_unset():
    assert vars(parse()) == dict.fromkeys(
        [
            "epochs",
            "batch_size",
            "learning_rate",
            "width",
            "dropout",
            "label_smoothing",
            "ema_momentum",
            "augment",
            "mixed_precision",
            "jit_compile",
            "seed",
        ]
    )


def test_flags_parse_to_their_types():
    args = parse(
        "--epochs=3.0",
        "--batch_size",
        "16",
        "--learning-rate",
        "0.005",
        "--width",
        "12",
        "--no-augment",
        "--mixed-precision",
        "--jit-compile",
        "on",
        "--seed",
        "9",
    )
    assert (args.epochs, args.batch_size, args.learning_rate, args.width, args.augment) == (3, 16, 0.005, 12, False)
    assert (args.mixed_precision, args.jit_compile, args.seed) == (True, "on", 9)
    assert type(args.epochs) is int and type(args.learning_rate) is float


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "2.5"], "argument --epochs: expected a whole number, got 2.5"),
        (["--seed", "1.0"], "argument --seed: invalid int value: '1.0'"),
        (
            ["--jit-compile", "maybe"],
            "argument --jit-compile: invalid choice: 'maybe' (choose from 'auto', 'on', 'off')",
        ),
        (["--validation-fraction", "0.2"], "unrecognized arguments: --validation-fraction 0.2"),
    ],
)
def test_a_bad_flag_is_refused_by_the_parser_naming_it(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        parse(*argv)
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"train: error: {message}"


def test_a_whole_number_accepts_how_a_tuning_service_prints_one():
    assert (whole_number("32"), whole_number("32.0"), whole_number("-1")) == (32, 32, -1)
    with pytest.raises(argparse.ArgumentTypeError, match=r"^expected a whole number, got 0\.5$"):
        whole_number("0.5")


def test_the_preset_alone_with_default_settings_is_the_preset():
    assert apply_options(SMOKE, TrainingSettings(), parse()) == SMOKE


def test_config_settings_are_laid_over_the_preset():
    training = TrainingSettings(
        epochs=5, batch_size=32, learning_rate=0.01, width=12, augment=True, seed=7, validation_fraction=0.2
    )
    assert apply_options(SMOKE, training, parse()) == replace(
        SMOKE,
        epochs=5,
        batch_size=32,
        learning_rate=0.01,
        augment=True,
        seed=7,
        validation_fraction=0.2,
        model=replace(SMOKE.model, width=12),
    )


def test_flags_are_laid_over_the_settings():
    training = TrainingSettings(epochs=5, width=12, augment=True, seed=7)
    args = parse(
        "--epochs",
        "3",
        "--width",
        "10",
        "--dropout",
        "0.3",
        "--no-augment",
        "--seed",
        "9",
        "--label-smoothing",
        "0.2",
        "--ema-momentum",
        "0.99",
        "--mixed-precision",
        "--jit-compile",
        "off",
        "--batch-size",
        "16",
        "--learning-rate",
        "0.005",
    )
    assert apply_options(SMOKE, training, args) == replace(
        SMOKE,
        epochs=3,
        batch_size=16,
        learning_rate=0.005,
        augment=False,
        seed=9,
        label_smoothing=0.2,
        ema_momentum=0.99,
        mixed_precision=True,
        jit_compile="off",
        model=replace(SMOKE.model, width=10, dropout=0.3),
    )


def test_arguments_without_the_options_take_the_settings_and_a_config_only_row_ignores_an_argument():
    """A caller's namespace may hold only some options (e.g. `trainer tune`'s); `validation_fraction` has no flag,
    so an argument of that name is not read."""
    training = TrainingSettings(epochs=4, validation_fraction=0.3)
    config = apply_options(SMOKE, training, SimpleNamespace(validation_fraction=0.45, seed=3))
    assert config == replace(SMOKE, epochs=4, validation_fraction=0.3, seed=3)


def test_the_smallest_accepted_values():
    smallest = parse("--epochs", "1", "--batch-size", "1", "--ema-momentum", "0")
    config = apply_options(SMOKE, TrainingSettings(), smallest)
    assert (config.epochs, config.batch_size, config.ema_momentum) == (1, 1, 0.0)
    tiny = apply_options(SMOKE, TrainingSettings(), parse("--learning-rate", "1e-9", "--ema-momentum", "0.999"))
    assert (tiny.learning_rate, tiny.ema_momentum) == (1e-9, 0.999)


@pytest.mark.parametrize(
    "argv",
    [["--epochs", "0"], ["--batch-size", "0"], ["--learning-rate", "0"], ["--learning-rate", "-0.1"]],
)
def test_a_value_out_of_range_is_refused(argv):
    with pytest.raises(CommandError) as caught:
        apply_options(SMOKE, TrainingSettings(), parse(*argv))
    assert str(caught.value) == "--epochs and --batch-size must be >= 1 and --learning-rate > 0"


@pytest.mark.parametrize("momentum", ["1", "-0.01", "1.5"])
def test_an_ema_momentum_out_of_range_is_refused_with_an_example(momentum):
    with pytest.raises(CommandError) as caught:
        apply_options(SMOKE, TrainingSettings(), parse("--ema-momentum", momentum))
    assert str(caught.value) == (f"--ema-momentum {float(momentum)}: expected 0 (off) or a momentum below 1, e.g. 0.99")
