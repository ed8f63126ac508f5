"""The training options, in one table: each yields its command-line flags and its override of the preset.

Why a table: adding one option used to touch TrainConfig, the argument parser, three override loops in
`resolve_config` (with `seed` handled twice) and the config model. Now: a field in TrainConfig (or ModelSpec), one
row here, and, if the config file may set it too, a key in settings.TrainingSettings (a test keeps the two agreeing).
Order of precedence: the preset, then config `training.<name>` (rows with `setting=True`), then the flag.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from trainer.errors import CommandError


def whole_number(text: str) -> int:
    """An int flag that also takes '32.0' (how a tuning service may print a discrete value)."""
    value = float(text)
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text}")
    return int(value)


@dataclass(frozen=True)
class Option:
    """One knob: the TrainConfig field (or ModelSpec field, `on_model`) it sets, and how a user sets it."""

    name: str
    parse: Callable[[str], Any] | None = None  # None: a --flag/--no-flag switch
    help: str | None = None
    setting: bool = False  # config `training.<name>` sets it too (None there: the preset's value)
    on_model: bool = False
    underscore: bool = False  # also --<name_with_underscores>: a Vertex AI tuning trial passes --<parameter id>
    choices: tuple[str, ...] | None = None
    flag: bool = True  # False: the config file alone sets it

    @property
    def flags(self) -> list[str]:
        dashed = "--" + self.name.replace("_", "-")
        return [dashed, f"--{self.name}"] if self.underscore and "_" in self.name else [dashed]

    def add_to(self, parser: Any) -> None:
        if self.parse is None:
            parser.add_argument(*self.flags, action=argparse.BooleanOptionalAction, default=None, help=self.help)
        else:
            parser.add_argument(*self.flags, type=self.parse, choices=self.choices, help=self.help)


OPTIONS = (
    Option("epochs", whole_number, setting=True),
    Option("batch_size", whole_number, setting=True, underscore=True),
    Option("learning_rate", float, setting=True, underscore=True),
    Option("width", whole_number, "filters of the first conv block", setting=True, on_model=True),
    Option("dropout", float, "dropout before the classifier", on_model=True),
    Option("label_smoothing", float, underscore=True),
    Option(
        "ema_momentum",
        float,
        "keep an exponential moving average of the weights and save it, with batch normalization statistics "
        "measured again for it on 10,000 training images (e.g. 0.99; 0: off)",
        underscore=True,
    ),
    Option("augment", None, "random shifts and flips", setting=True),
    Option("mixed_precision", None, "mixed_bfloat16 compute (fast on GPUs and AMX CPUs)"),
    Option("jit_compile", str, choices=("auto", "on", "off")),
    Option("seed", int, setting=True),
    Option("validation_fraction", float, setting=True, flag=False),
)


def add_option_flags(parser: Any) -> None:
    for option in OPTIONS:
        if option.flag:
            option.add_to(parser)


def apply_options(config: Any, training: Any, args: Any) -> Any:
    """`config` (a TrainConfig) with config `training.*` values and then flags laid over it."""
    overrides: dict[str, Any] = {}
    model: dict[str, Any] = {}
    for option in OPTIONS:
        value = getattr(args, option.name, None) if option.flag else None
        if value is None and option.setting:
            value = getattr(training, option.name)
        if value is not None:
            (model if option.on_model else overrides)[option.name] = value
    if model:
        overrides["model"] = replace(config.model, **model)
    config = replace(config, **overrides)
    if config.epochs < 1 or config.batch_size < 1 or config.learning_rate <= 0:
        raise CommandError("--epochs and --batch-size must be >= 1 and --learning-rate > 0")
    if not 0 <= config.ema_momentum < 1:
        raise CommandError(f"--ema-momentum {config.ema_momentum}: expected 0 (off) or a momentum below 1, e.g. 0.99")
    return config
