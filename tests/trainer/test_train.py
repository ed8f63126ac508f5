"""`python -m trainer train`: config resolution, output locations (Vertex AI contract), what a run writes."""

import argparse
import json
from dataclasses import replace

import numpy as np
import pytest

import storage
from contracts.layout import ModelFiles
from settings import load_config
from trainer import cli
from trainer.errors import CommandError
from trainer.training.train import (
    PRESETS,
    OutputPaths,
    TrainConfig,
    add_arguments,
    flatten,
    output_paths,
    resolve_config,
    split_train_validation,
    training_key,
)

MODEL_FILE, TRAINING_FILE = ModelFiles.KERAS, ModelFiles.TRAINING


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_flags_beat_config_which_beats_the_preset():
    settings = load_config("local", environ={"FMNIST_TRAINING__EPOCHS": "7", "FMNIST_TRAINING__WIDTH": "12"})
    config = resolve_config(settings, parse("--preset", "gpu", "--epochs", "3", "--no-augment"))
    assert config.epochs == 3  # flag over config
    assert config.model.width == 12  # config over preset
    assert config.augment is False and PRESETS["gpu"].augment is True
    assert config.batch_size == PRESETS["gpu"].batch_size  # the rest from the preset
    assert resolve_config(settings, parse()).epochs == 7


def test_bad_hyperparameters_fail_with_the_flag_named():
    settings = load_config("local", environ={})
    with pytest.raises(CommandError, match="--epochs"):
        resolve_config(settings, parse("--epochs", "0"))


def test_training_key_is_stable_and_changes_with_config_data_and_workers():
    config = PRESETS["smoke"]
    assert training_key(config, "v-1") == training_key(TrainConfig.from_dict(config.to_dict()), "v-1")
    assert (
        len(
            {
                training_key(config, "v-1"),
                training_key(config, "v-2"),
                training_key(config, "v-1", 2),
                training_key(replace(config, epochs=9), "v-1"),
            }
        )
        == 4
    )


def test_vertex_ai_locations_are_used_when_set_and_flags_win():
    settings = load_config("local", environ={"FMNIST_STORAGE_ROOT": "/x"})
    environ = {
        "AIP_MODEL_DIR": "gs://m/job/model/",
        "AIP_CHECKPOINT_DIR": "gs://m/job/checkpoints/",
        "AIP_TENSORBOARD_LOG_DIR": "gs://m/job/logs/",
    }
    paths = output_paths(settings, parse(), environ)
    assert (paths.model("r"), paths.checkpoints("k"), paths.tensorboard("r")) == (
        "gs://m/job/model/",
        "gs://m/job/checkpoints/",
        "gs://m/job/logs/",
    )
    assert output_paths(settings, parse("--model-dir", "/elsewhere"), environ).model("r") == "/elsewhere"
    local = output_paths(settings, parse(), {})
    assert local.model("r") == "/x/dev/runs/r/model" and local.checkpoints("k") == "/x/dev/checkpoints/k"


def test_validation_split_is_the_shared_stratified_one():
    labels = np.repeat(np.arange(10), 50)
    (x_fit, y_fit), (x_val, y_val) = split_train_validation(np.arange(500), labels, 0.1, seed=1)
    assert np.bincount(y_val).tolist() == [5] * 10 and len(set(x_fit) & set(x_val)) == 0


def test_flatten_gives_vertex_experiments_scalar_params():
    assert flatten({"model": {"width": 8}, "epochs": 2}) == {"model.width": 8, "epochs": 2}


def test_a_run_writes_model_record_checkpoint_and_tensorboard(smoke_model):
    model_dir, result = smoke_model
    assert sorted(p.name for p in model_dir.iterdir()) == [MODEL_FILE, TRAINING_FILE]
    info = json.loads((model_dir / TRAINING_FILE).read_text())
    assert info["run_id"] == result.run_id and info["backend"] == "tensorflow"
    assert info["config"] == PRESETS["smoke"].to_dict() and info["dataset"]["version"].startswith("v-")
    assert len(info["history"]) == PRESETS["smoke"].epochs and "val_accuracy" in info["history"][-1]
    assert result.test_metrics["test_accuracy"] > 0.5  # 10 classes: chance is 0.1

    root = model_dir.parents[2]  # <root>/runs/<run_id>/model
    record = json.loads((root / "runs" / result.run_id / "run.json").read_text())
    assert record["status"] == "completed" and record["params"]["epochs"] == PRESETS["smoke"].epochs
    assert [e["epoch"] for e in record["epochs"]] == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"} <= set(record["epochs"][0])
    assert record["final_metrics"] == result.test_metrics
    state = json.loads(next((root / "checkpoints").glob("*/state.json")).read_text())
    assert state["completed"] is True and state["epoch"] == 2
    assert list((root / "tensorboard" / result.run_id).rglob("events.out.tfevents.*"))


@pytest.mark.slow
def test_cli_train_reads_the_dataset_from_the_bucket_and_prints_next_steps(cli_env, capsys):
    assert cli.main(["train", "--preset", "smoke", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert f"training {cli_env.dataset_version}" in out and "test accuracy" in out
    model_dir = out.split("model in ")[1].split("\n")[0]
    assert storage.exists(storage.join(model_dir, MODEL_FILE))
    assert model_dir.startswith(str(cli_env.root / "dev" / "runs"))


def test_cli_train_without_a_dataset_says_to_ingest(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", str(tmp_path / "empty"))
    monkeypatch.setenv("FMNIST_ENV", "local")
    assert cli.main(["train", "--preset", "smoke"]) == 1
    assert "python -m trainer ingest" in capsys.readouterr().err


@pytest.mark.slow
def test_mixed_precision_run_saves_a_float32_model(trainer_world, tmp_path):
    import keras

    from trainer.data.dataset import load_dataset
    from trainer.training.train import train

    data = load_dataset(trainer_world.settings)
    # the full preset's way: bf16 steps through the fused batch normalization, then a plain float32 copy is saved
    config = replace(PRESETS["smoke"], epochs=1, mixed_precision=True, augment=True, fused_batch_norm=True)
    try:
        result = train(
            data.x_train[:300],
            data.y_train[:300],
            data.x_test[:50],
            data.y_test[:50],
            config,
            OutputPaths(str(tmp_path)),
            fresh=True,
            verbose=0,
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")
    saved = keras.saving.load_model(storage.join(result.model_dir, MODEL_FILE))
    assert all(layer.dtype_policy.name == "float32" for layer in saved.layers)
    norms = [layer for layer in saved.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == config.model.blocks and {type(layer) for layer in norms} == {keras.layers.BatchNormalization}


@pytest.mark.slow
def test_weight_averaging_saves_the_average_and_still_exports(trainer_world, tmp_path):
    """With EMA the saved model holds the averaged weights (fit writes them in at the end): a momentum near 1
    keeps them at their initial values, which a run without EMA leaves far behind; export's check still holds."""
    import keras

    from trainer.data.dataset import load_dataset
    from trainer.models.export import export_onnx, verify
    from trainer.models.model_dir import onnx_probabilities, predict_probabilities
    from trainer.training.model import build_model
    from trainer.training.train import train

    data = load_dataset(trainer_world.settings)
    keras.utils.set_random_seed(PRESETS["smoke"].seed)
    initial = build_model(PRESETS["smoke"].model).get_weights()[0]

    def first_kernel(ema_momentum: float, name: str):
        config = replace(PRESETS["smoke"], epochs=1, ema_momentum=ema_momentum)
        result = train(
            data.x_train[:600], data.y_train[:600], data.x_test[:50], data.y_test[:50], config,
            OutputPaths(str(tmp_path / name)), fresh=True, verbose=0,
        )  # fmt: skip
        saved = keras.saving.load_model(storage.join(result.model_dir, MODEL_FILE))
        return saved, saved.get_weights()[0]

    averaged, averaged_kernel = first_kernel(0.999999, "ema")
    _, plain_kernel = first_kernel(0.0, "plain")
    assert np.abs(averaged_kernel - initial).max() < 1e-3
    assert np.abs(plain_kernel - initial).max() > 1e-2
    # the statistics describe the averaged weights: measured again over the training images (batch_norm_statistics)
    (x_fit, _), _ = split_train_validation(data.x_train[:600], data.y_train[:600], 0.1, PRESETS["smoke"].seed)
    first_norm = next(layer for layer in averaged.layers if isinstance(layer, keras.layers.BatchNormalization))
    activations = keras.ops.convert_to_numpy(keras.Model(averaged.input, first_norm.input)(x_fit.astype("float32")))
    channels = activations.reshape(-1, activations.shape[-1])
    assert np.allclose(np.asarray(first_norm.moving_mean), channels.mean(axis=0), rtol=1e-3, atol=1e-4)
    onnx_path = export_onnx(averaged, tmp_path / "model.onnx")
    check = verify(predict_probabilities(averaged, data.x_test), onnx_probabilities(onnx_path, data.x_test), 1e-4)
    assert check.passed, check.to_dict()


def test_ema_momentum_flag_is_checked():
    settings = load_config("local", environ={})
    assert resolve_config(settings, parse("--preset", "smoke", "--ema-momentum", "0.99")).ema_momentum == 0.99
    with pytest.raises(CommandError, match="ema-momentum 1.5"):
        resolve_config(settings, parse("--preset", "smoke", "--ema-momentum", "1.5"))


def test_steps_per_execution_reaches_the_compiled_model():
    """Several steps per compiled call cut the per-step Python round trips; the config's value must get there."""
    from trainer.training.model import build_model
    from trainer.training.train import compile_for_training

    config = replace(PRESETS["smoke"], steps_per_execution=8)
    assert compile_for_training(build_model(config.model), config, steps_per_epoch=10).steps_per_execution == 8
    assert compile_for_training(build_model(config.model), PRESETS["smoke"], 10).steps_per_execution == 1


def test_the_optimizer_is_adamw_unless_sgd_is_asked_and_a_typo_is_named():
    """SGD with Nesterov momentum is a lever for the full preset; both keep the schedule and the weight decay."""
    from trainer.training.model import build_model
    from trainer.training.train import compile_for_training

    def optimizer(name: str):
        config = replace(PRESETS["smoke"], optimizer=name, weight_decay=0.005)
        return compile_for_training(build_model(config.model), config, steps_per_epoch=10).optimizer

    adamw, sgd = optimizer("adamw"), optimizer("sgd")
    assert type(adamw).__name__ == "AdamW" and adamw.weight_decay == 0.005
    assert type(sgd).__name__ == "SGD" and (sgd.momentum, sgd.nesterov, sgd.weight_decay) == (0.9, True, 0.005)
    assert float(sgd.learning_rate) == pytest.approx(PRESETS["smoke"].learning_rate / 10)  # warm-up's first step
    config = replace(PRESETS["smoke"], optimizer="sgd", momentum=0.95)
    assert compile_for_training(build_model(config.model), config, steps_per_epoch=10).optimizer.momentum == 0.95
    with pytest.raises(CommandError, match="optimizer 'adam': expected 'adamw' or 'sgd'"):
        optimizer("adam")


@pytest.mark.parametrize("no_bias_decay", [False, True])
def test_no_bias_decay_shrinks_kernels_only(no_bias_decay):
    """Weight decay shrinks every variable unless `no_bias_decay`: then biases and batch normalization's gamma and
    beta (one value per channel) keep their values and only kernels shrink. Zero gradients leave the decay alone."""
    import keras
    import numpy as np

    from trainer.training.model import build_model
    from trainer.training.train import compile_for_training

    config = replace(
        PRESETS["smoke"], optimizer="sgd", weight_decay=0.5, warmup_fraction=0.0, no_bias_decay=no_bias_decay
    )
    model = compile_for_training(build_model(config.model), config, steps_per_epoch=10)
    variables = model.trainable_variables
    for variable in variables:  # gamma starts at 1 and beta and biases at 0: give each a value decay would change
        variable.assign(np.full(variable.shape, 2.0, dtype="float32"))
    model.optimizer.apply([keras.ops.zeros(v.shape) for v in variables], variables)
    shrunk = 2.0 * (1 - config.learning_rate * config.weight_decay)
    vectors = [v for v in variables if len(v.shape) == 1]
    kernels = [v for v in variables if len(v.shape) > 1]
    assert {v.path.rsplit("/", 1)[-1] for v in vectors} == {"gamma", "beta", "bias"}
    for kernel in kernels:
        np.testing.assert_allclose(keras.ops.convert_to_numpy(kernel), shrunk, rtol=1e-6)
    for vector in vectors:
        np.testing.assert_allclose(keras.ops.convert_to_numpy(vector), 2.0 if no_bias_decay else shrunk, rtol=1e-6)


@pytest.mark.slow
def test_training_makes_one_data_iterator_per_epoch(trainer_world, tmp_path, monkeypatch):
    """Keras 3.15 without steps_per_epoch makes two tf.data iterators at each epoch boundary and drops the first one
    unused (with its own autotuned pipeline that drop waited tens of seconds with both cores idle,
    input_pipeline.py). One iterator per epoch, plus the one Keras makes after the last epoch, is what train() must
    ask for; and the batches are train()'s own pipeline, not Keras's."""
    import tensorflow as tf

    from trainer.data.dataset import load_dataset
    from trainer.training.train import train

    iterated: list = []  # each dataset, once per iterator made over it
    dataset_iter = tf.data.Dataset.__iter__

    def counting_iter(dataset):
        iterated.append(dataset)
        return dataset_iter(dataset)

    monkeypatch.setattr(tf.data.Dataset, "__iter__", counting_iter)
    data = load_dataset(trainer_world.settings)
    config = replace(PRESETS["smoke"], epochs=3, validate_each_epoch=False)
    train(
        data.x_train[:300], data.y_train[:300], data.x_test[:50], data.y_test[:50], config,
        OutputPaths(str(tmp_path / "run")), fresh=True, verbose=0,
    )  # fmt: skip
    training_data = iterated[0]
    assert sum(dataset is training_data for dataset in iterated) == config.epochs + 1
    fit_datasets = list({id(dataset): dataset for dataset in iterated}.values())[:2]  # training, then validation
    assert [dataset.options().autotune.enabled for dataset in fit_datasets] == [False, False]


@pytest.mark.slow
def test_validation_after_the_last_epoch_only_when_asked(trainer_world, tmp_path):
    """validate_each_epoch=False skips the per-epoch validation (CPU the demo does not need) but still measures the
    split after the last epoch, where a tuning trial reads val_accuracy; the default validates every epoch."""
    from trainer.data.dataset import load_dataset
    from trainer.training.train import train

    data = load_dataset(trainer_world.settings)

    def history(validate_each_epoch: bool, name: str) -> list:
        config = replace(PRESETS["smoke"], epochs=2, validate_each_epoch=validate_each_epoch)
        return train(
            data.x_train[:300], data.y_train[:300], data.x_test[:50], data.y_test[:50], config,
            OutputPaths(str(tmp_path / name)), fresh=True, verbose=0,
        ).history  # fmt: skip

    last_only = history(False, "last")
    assert "val_accuracy" not in last_only[0] and "val_accuracy" in last_only[1]
    assert all("val_accuracy" in epoch for epoch in history(True, "each"))
