"""Resume after SIGKILL: a real `python -m trainer train` process killed mid-training, then started again."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from contracts.layout import ModelFiles
from settings import REPO_ROOT
from trainer.training import checkpoint
from trainer.training.train import PRESETS, compile_for_training

TRAINING_FILE = ModelFiles.TRAINING

EPOCHS = 6
TRAIN_ARGS = ["-m", "trainer", "train", "--preset", "smoke", "--epochs", str(EPOCHS), "--checkpoint-every", "0"]


def start(world, *extra):
    env = {**os.environ, **world.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    env.pop("TF_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, *TRAIN_ARGS, *extra],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process, timeout=180) -> str:
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out[-3000:]
    return out


def model_dir_from(out: str) -> Path:
    return Path(out.split("model in ")[1].split("\n")[0])


def wait_for_epoch(checkpoints: Path, epoch: int, process, timeout=180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for state_file in checkpoints.glob("*/state.json"):
            try:
                state = json.loads(state_file.read_text())
            except (OSError, ValueError):
                continue
            if state["epoch"] >= epoch:
                return state
        assert process.poll() is None, f"training ended before epoch {epoch}: {process.stdout.read()[-2000:]}"
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint of epoch {epoch} within {timeout} s")


@pytest.mark.slow
def test_killed_run_resumes_from_its_checkpoint_and_ends_as_good(world):
    victim = start(world)
    before_kill = wait_for_epoch(world.root / "dev" / "checkpoints", 2, victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    assert before_kill["epoch"] < EPOCHS and not before_kill["completed"]

    resumed_out = finish(start(world))
    assert f"resuming run {before_kill['run_id']} after epoch" in resumed_out
    resumed = json.loads((model_dir_from(resumed_out) / TRAINING_FILE).read_text())
    steps_per_epoch = -(-int(1200 * 0.9) // PRESETS["smoke"].batch_size)
    assert resumed["run_id"] == before_kill["run_id"] and resumed["resumed_from_epoch"] >= 2
    assert len(resumed["history"]) == EPOCHS
    # optimizer state came back too: its step counter continued instead of restarting at 0
    assert resumed["optimizer_steps"] == EPOCHS * steps_per_epoch

    # the same training again, in this process: the completed run is not resumed, a new one runs uninterrupted
    uninterrupted = run_in_process(world)
    assert uninterrupted.resumed_from_epoch == 0 and uninterrupted.run_id != resumed["run_id"]
    assert resumed["test_metrics"]["test_accuracy"] >= uninterrupted.test_metrics["test_accuracy"] - 0.05
    assert resumed["history"][-1]["val_loss"] <= uninterrupted.history[-1]["val_loss"] * 1.25 + 0.05


def run_in_process(world):
    from dataclasses import replace

    from trainer.data.dataset import load_dataset
    from trainer.training.train import OutputPaths, train

    data = load_dataset(world.settings)
    return train(
        data.x_train,
        data.y_train,
        data.x_test,
        data.y_test,
        replace(PRESETS["smoke"], epochs=EPOCHS),
        OutputPaths(world.settings.dev_bucket),
        dataset={"version": data.version, "hash": data.hash},
        verbose=0,
    )


def test_checkpoint_round_trip_restores_weights_and_optimizer_state(tmp_path):
    from trainer.training.model import build_model

    config = PRESETS["smoke"]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (128, 28, 28)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, 128)]

    trained = compile_for_training(build_model(config.model), config, steps_per_epoch=2)
    state = checkpoint.CheckpointState(run_id="r", training_key="k")
    trained.fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=[checkpoint.EpochCheckpoint(str(tmp_path), state)])
    assert checkpoint.read_state(str(tmp_path)).weights == "epoch-0001.weights.h5"

    fresh = compile_for_training(build_model(config.model), config, steps_per_epoch=2)
    checkpoint.restore(fresh, str(tmp_path), checkpoint.read_state(str(tmp_path)))
    assert int(fresh.optimizer.iterations) == int(trained.optimizer.iterations) == 2
    for a, b in zip(trained.get_weights(), fresh.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(trained.optimizer.variables, fresh.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_checkpoint_of_another_config_is_refused_not_mixed_in(world, tmp_path):
    from trainer.data.dataset import load_dataset
    from trainer.errors import CommandError
    from trainer.training.train import OutputPaths, train

    checkpoints = tmp_path / "ckpt"
    checkpoint.write_state(str(checkpoints), checkpoint.CheckpointState(run_id="old", training_key="other", epoch=1))
    data = load_dataset(world.settings)
    with pytest.raises(CommandError, match="different configuration"):
        train(
            data.x_train,
            data.y_train,
            data.x_test,
            data.y_test,
            PRESETS["smoke"],
            OutputPaths(str(tmp_path), checkpoint_dir=str(checkpoints)),
            verbose=0,
        )


def test_checkpoint_interval_skips_saves_but_keeps_every_epochs_metrics(tmp_path):
    from trainer.training.model import build_model

    config = PRESETS["smoke"]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 28, 28)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, 64)]
    model = compile_for_training(build_model(config.model), config, steps_per_epoch=1)
    saves = []
    state = checkpoint.CheckpointState(run_id="r", training_key="k")
    callback = checkpoint.EpochCheckpoint(str(tmp_path), state, min_interval_s=3600)
    original = checkpoint.write_state
    checkpoint.write_state = lambda d, s: (saves.append(s.epoch), original(d, s))
    try:
        model.fit(x, y, batch_size=64, epochs=3, verbose=0, callbacks=[callback])
    finally:
        checkpoint.write_state = original
    assert saves == [3], "only the last epoch is saved within the interval"
    assert len(checkpoint.read_state(str(tmp_path)).history) == 3
    assert [p.name for p in tmp_path.glob("*.weights.h5")] == ["epoch-0003.weights.h5"]
