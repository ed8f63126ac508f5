"""The learning-rate schedules (trainer/training/schedules.py): a warm-up from a tenth of the peak, then cosine or
linear decay to zero, with the step counts the optimizer sees."""

import numpy as np
import pytest

from trainer.training.schedules import WarmupLinearDecay, learning_rate_schedule


def rates(schedule, steps):
    return np.array([float(schedule(step)) for step in steps])


@pytest.mark.parametrize("decay", ["cosine", "linear"])
def test_both_warm_up_from_a_tenth_of_the_peak_and_end_at_zero(decay):
    schedule = learning_rate_schedule(decay, 0.2, total_steps=100, warmup_fraction=0.15)
    assert rates(schedule, [0, 5, 10, 15]) == pytest.approx([0.02, 0.08, 0.14, 0.2], rel=1e-5)
    assert rates(schedule, [100, 130]) == pytest.approx([0.0, 0.0], abs=1e-7)
    after_peak = rates(schedule, range(15, 101))
    assert np.all(np.diff(after_peak) <= 1e-7)  # never rises again


def test_linear_decay_falls_by_the_same_amount_each_step_and_cosine_does_not():
    linear = rates(learning_rate_schedule("linear", 0.2, 100, 0.15), [15, 32, 49, 66, 83, 100])
    assert np.diff(linear) == pytest.approx([-0.04] * 5, rel=1e-4)
    cosine = rates(learning_rate_schedule("cosine", 0.2, 100, 0.15), [15, 32, 49, 66, 83, 100])
    assert not np.allclose(np.diff(cosine), np.diff(cosine)[0], rtol=0.05)
    assert cosine[2] > linear[2]  # cosine stays higher past the middle: the two differ where it counts


@pytest.mark.parametrize("decay", ["cosine", "linear"])
def test_no_warm_up_starts_at_the_peak(decay):
    schedule = learning_rate_schedule(decay, 0.5, total_steps=10, warmup_fraction=0.0)
    assert rates(schedule, [0, 5, 10]) == pytest.approx([0.5, 0.25, 0.0], rel=1e-5)  # both halve at the middle


@pytest.mark.parametrize("decay", ["cosine", "linear"])
def test_a_run_of_one_step_takes_it_at_the_peak_and_ends_at_zero(decay):
    schedule = learning_rate_schedule(decay, 0.5, total_steps=1, warmup_fraction=0.15)
    assert rates(schedule, [0, 1, 2]) == pytest.approx([0.5, 0.0, 0.0], abs=1e-7)


def test_the_linear_schedule_round_trips_through_its_config():
    schedule = WarmupLinearDecay(0.3, 7, 70)
    again = WarmupLinearDecay.from_config(schedule.get_config())
    assert rates(again, [0, 3, 7, 40, 70]) == pytest.approx(rates(schedule, [0, 3, 7, 40, 70]))


def test_an_unknown_decay_is_refused_by_name():
    from trainer.errors import CommandError

    with pytest.raises(CommandError, match="decay 'step': expected one of cosine, linear"):
        learning_rate_schedule("step", 0.1, 10, 0.1)


def test_a_run_asking_for_an_unknown_decay_stops_before_training():
    from dataclasses import replace

    from trainer.errors import CommandError
    from trainer.training.model import build_model
    from trainer.training.train import PRESETS, compile_for_training

    config = replace(PRESETS["smoke"], decay="step")
    with pytest.raises(CommandError, match="decay 'step': expected one of cosine, linear"):
        compile_for_training(build_model(config.model), config, steps_per_epoch=2)


def test_a_linear_run_steps_its_optimizer_along_the_schedule():
    from dataclasses import replace

    from trainer.training.model import build_model
    from trainer.training.train import PRESETS, compile_for_training

    config = replace(PRESETS["smoke"], decay="linear", optimizer="sgd", learning_rate=0.1, epochs=2)
    model = compile_for_training(build_model(config.model), config, steps_per_epoch=3)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 28, 28)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, 6)]
    model.fit(x, y, batch_size=2, epochs=2, verbose=0)
    assert int(model.optimizer.iterations) == 6
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-7)  # the 6th of 6 steps: the end
