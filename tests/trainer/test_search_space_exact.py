"""The search space (trainer/training/search_space.py) value by value: every parameter whole, the knobs that belong
to the model, the metric, `apply`'s types for what Vizier and Optuna hand it, and `suggest` on a real Optuna trial
(the distribution it declares is read back from the trial: bounds, log scale, choices)."""

from __future__ import annotations

import dataclasses

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from trainer.errors import CommandError
from trainer.training.search_space import (
    METRIC,
    MODEL_KNOBS,
    SEARCH_SPACE,
    Parameter,
    apply,
    search_space,
    suggest,
)
from trainer.training.train import PRESETS

DEMO = PRESETS["demo"]


def test_the_space_is_exactly_these_five_parameters():
    space, knobs = SEARCH_SPACE, MODEL_KNOBS
    assert space == (
        Parameter("learning_rate", "float", 1e-3, 1e-2, True, ()),
        Parameter("width", "choice", 0.0, 0.0, False, (16, 24, 32, 48)),
        Parameter("dropout", "float", 0.1, 0.4, False, ()),
        Parameter("label_smoothing", "float", 0.0, 0.15, False, ()),
        Parameter("epochs", "int", 2, 6, False, ()),
    )
    assert knobs == {"width", "dropout"} and METRIC == "val_accuracy"


def test_each_optimizer_searches_its_own_learning_rate_decade_and_the_same_other_knobs():
    adamw, sgd = search_space("adamw"), search_space("sgd")
    assert adamw == SEARCH_SPACE == search_space()
    assert sgd[0] == Parameter("learning_rate", "float", 3e-2, 3e-1, True, ())
    assert sgd[1:] == adamw[1:]


def test_an_optimizer_without_a_range_is_refused_by_name():
    with pytest.raises(CommandError, match=r"optimizer 'lion': no learning-rate range to search; known: adamw, sgd"):
        search_space("lion")


def test_a_parameter_defaults_to_no_range_no_log_no_choices_and_is_frozen():
    bare = Parameter("x", "float")
    assert (bare.low, bare.high, bare.log, bare.choices) == (0.0, 0.0, False, ())
    with pytest.raises(dataclasses.FrozenInstanceError):
        bare.low = 1.0  # type: ignore[misc]


def test_apply_puts_model_knobs_in_the_model_and_the_rest_in_the_config_with_their_types():
    config = apply(DEMO, {"learning_rate": 1, "width": 32.0, "dropout": 0, "label_smoothing": "0.05", "epochs": 3.0})
    assert (config.learning_rate, config.label_smoothing, config.epochs) == (1.0, 0.05, 3)
    assert [type(v) for v in (config.learning_rate, config.label_smoothing, config.epochs)] == [float, float, int]
    assert (config.model.width, config.model.dropout) == (32, 0.0)
    assert (type(config.model.width), type(config.model.dropout)) == (int, float)
    # nothing else moves: the rest of the preset and of its model
    assert dataclasses.replace(config, learning_rate=DEMO.learning_rate, label_smoothing=DEMO.label_smoothing,
                               epochs=DEMO.epochs, model=DEMO.model) == DEMO  # fmt: skip
    assert dataclasses.replace(config.model, width=DEMO.model.width, dropout=DEMO.model.dropout) == DEMO.model


def test_apply_with_some_values_changes_only_those():
    assert apply(DEMO, {}) == DEMO
    only_model = apply(DEMO, {"dropout": 0.3})
    assert only_model == dataclasses.replace(DEMO, model=dataclasses.replace(DEMO.model, dropout=0.3))
    only_train = apply(DEMO, {"epochs": 5})
    assert only_train == dataclasses.replace(DEMO, epochs=5) and only_train.model == DEMO.model


@pytest.fixture
def trial():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    return study.ask()


def test_suggest_declares_each_parameter_s_distribution_on_the_trial(trial):
    values = {p.name: suggest(trial, p) for p in SEARCH_SPACE}
    assert trial.distributions == {
        "learning_rate": FloatDistribution(1e-3, 1e-2, log=True),
        "width": CategoricalDistribution([16, 24, 32, 48]),
        "dropout": FloatDistribution(0.1, 0.4),
        "label_smoothing": FloatDistribution(0.0, 0.15),
        "epochs": IntDistribution(2, 6),
    }
    assert values == trial.params
    assert [type(values[name]) for name in ("learning_rate", "dropout", "label_smoothing", "epochs", "width")] == [
        float, float, float, int, int,
    ]  # fmt: skip
    assert 1e-3 <= values["learning_rate"] <= 1e-2 and values["width"] in (16, 24, 32, 48)


def test_suggest_reads_bounds_scale_and_choices_from_the_parameter_it_is_given(trial):
    assert suggest(trial, Parameter("a", "float", 2.0, 3.0)) == trial.params["a"]
    assert suggest(trial, Parameter("b", "int", 7.0, 7.0)) == 7
    assert suggest(trial, Parameter("c", "choice", choices=(0.5,))) == 0.5
    assert suggest(trial, Parameter("d", "float", 1.0, 1.0, log=True)) == 1.0
    assert trial.distributions["a"] == FloatDistribution(2.0, 3.0)
    assert trial.distributions["b"] == IntDistribution(7, 7)
    assert trial.distributions["d"] == FloatDistribution(1.0, 1.0, log=True)
