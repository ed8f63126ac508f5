"""The hyperparameters `trainer tune` searches, declared once for both searchers: Optuna locally, Vertex AI Vizier
on the gcp target (trainer/cloud/tuning.py turns the same list into its parameter specs).

Each name is a TrainConfig knob (or ModelSpec's, for width and dropout) and a `trainer train` flag, so a Vertex AI
trial, which passes `--<name>=<value>` to the trainer image, and a local trial run the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from trainer.errors import CommandError
from trainer.training.train import TrainConfig


@dataclass(frozen=True)
class Parameter:
    name: str
    kind: Literal["float", "int", "choice"]
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[float, ...] = ()


# The learning rate is searched on the scale of the base preset's optimizer: SGD takes plain gradient steps, AdamW
# normalised ones, and their good rates differ by about 60x (full preset: AdamW near 3e-3, SGD with Nesterov momentum
# near 0.2, 0.3 already 0.4 point worse; README "Tenth session"). One decade each, the measured best inside.
LEARNING_RATES = {"adamw": (1e-3, 1e-2), "sgd": (3e-2, 3e-1)}
OTHER_KNOBS = (
    Parameter("width", "choice", choices=(16, 24, 32, 48)),
    Parameter("dropout", "float", 0.1, 0.4),
    Parameter("label_smoothing", "float", 0.0, 0.15),
    Parameter("epochs", "int", 2, 6),
)


def search_space(optimizer: str = "adamw") -> tuple[Parameter, ...]:
    """The parameters a search around a preset trained with `optimizer` varies."""
    if optimizer not in LEARNING_RATES:
        raise CommandError(
            f"optimizer {optimizer!r}: no learning-rate range to search; known: {', '.join(LEARNING_RATES)}"
        )
    low, high = LEARNING_RATES[optimizer]
    return (Parameter("learning_rate", "float", low, high, log=True), *OTHER_KNOBS)


SEARCH_SPACE = search_space("adamw")
MODEL_KNOBS = {"width", "dropout"}  # these belong to ModelSpec, the rest to TrainConfig
METRIC = "val_accuracy"  # what trials are judged on: never the test set


def apply(config: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """The config with a trial's values in place (ints stay ints)."""
    model = {k: (int(v) if k == "width" else float(v)) for k, v in values.items() if k in MODEL_KNOBS}
    train = {k: (int(v) if k == "epochs" else float(v)) for k, v in values.items() if k not in MODEL_KNOBS}
    return replace(config, model=replace(config.model, **model), **train)


def suggest(trial: Any, parameter: Parameter) -> float:
    """One value from an Optuna trial."""
    if parameter.kind == "float":
        return float(trial.suggest_float(parameter.name, parameter.low, parameter.high, log=parameter.log))
    if parameter.kind == "int":
        return int(trial.suggest_int(parameter.name, int(parameter.low), int(parameter.high)))
    return trial.suggest_categorical(parameter.name, list(parameter.choices))
