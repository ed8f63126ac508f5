"""`python -m trainer train`: fit the CNN on a stored dataset version, resumably, on one or several workers.

Why this shape: `train()` takes arrays and a TrainConfig and is the same code for the CLI, Vertex AI custom jobs,
the benchmarks (CPU/TensorFlow and GPU/JAX) and the tests. Everything around it (presets, flags, the Vertex AI
AIP_* locations, TF_CONFIG) only decides its inputs and where its outputs go.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np

import storage
from contracts.dataset import NUM_CLASSES
from trainer.errors import CommandError
from trainer.models import model_dir as model_files
from trainer.models.model_dir import predict_probabilities
from trainer.training import checkpoint, distribute
from trainer.training.batch_norm_statistics import recalibrate
from trainer.training.fused_batch_norm import FusedBatchNormalization
from trainer.training.input_pipeline import tensorflow_batches
from trainer.training.model import ModelSpec, build_model
from trainer.training.native_bf16 import computes_bf16
from trainer.training.options import add_option_flags, apply_options
from trainer.training.run_record import RunRecord
from trainer.training.schedules import learning_rate_schedule
from trainer.training.tensorboard import tensorboard_callback


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of one training run; stored as the model's hyperparameters."""

    model: ModelSpec
    epochs: int
    batch_size: int
    learning_rate: float
    augment: bool
    max_shift: int = 2
    label_smoothing: float = 0.1
    weight_decay: float = 0.004
    warmup_fraction: float = 0.15
    validation_fraction: float = 0.1
    seed: int = 42
    mixed_precision: bool = False  # mixed_bfloat16: a GPU or an AMX CPU computes convolutions in bf16
    jit_compile: str = "auto"  # Keras's choice: XLA on JAX and on TensorFlow GPUs, not on TensorFlow CPUs
    ema_momentum: float = 0.0  # > 0: the saved model holds an exponential moving average of the weights
    steps_per_execution: int = 1  # training steps per compiled call: fewer Python round trips per epoch
    fused_batch_norm: bool = False  # train with one fused op per BatchNormalization on TensorFlow (same math)
    validate_each_epoch: bool = True  # False: measure the validation split after the last epoch only
    optimizer: str = "adamw"  # or "sgd": Nesterov momentum, the same schedule and decoupled weight decay
    momentum: float = 0.9  # SGD's Nesterov momentum (AdamW keeps its own betas)
    decay: str = "cosine"  # or "linear": the learning rate's way from its peak to zero after the warm-up
    no_bias_decay: bool = False  # True: weight decay on kernels only, not on biases or normalization scales/offsets

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        return cls(**{**data, "model": ModelSpec(**data["model"])})


# Accuracy per epoch is the same on any hardware (these shapes were checked on an H200 with KERAS_BACKEND=jax, and
# demo/full again on CPU with TensorFlow); epochs and widths fit the time goals on 2 CPU cores, chosen by measurement
# with bench/bench_train.py (README "Measured figures" lists every lever tried):
# demo (before issue 26): width 24 for 5 epochs beat width 32 for 4 at less compute (92.0-92.3 % vs 91.9 %) and served
#   faster; label smoothing 0.05 (+0.1); float32, because bf16 only pays on CPUs with native bf16 and a laptop may
#   have none.
# full: a dense head instead of global max pooling reaches more in fewer epochs (93.7 % at 7 and 93.6 % at 8, where
#   pooling had 93.45 % at 9 and 93.36 % at 10): 7 epochs fit the 9-minute goal.
# Not adopted on CPU: XLA (jit_compile on TensorFlow CPU: 7x slower per step), batch 256 (no faster, -0.25),
#   weight averaging (ema_momentum 0.99: -0.03 at 4 epochs), augmentation (-0.3 to -0.5 at these schedule lengths).
# Issue 26 (README "Training levers for issue 26's goals", 3 seeds each): a 6th demo epoch in bf16 with
#   steps_per_execution 8 (mean 92.33 %, below the 92.5 % goal, for 1.04-1.2x the compute), pool_last (91.60 %).
#   Then demo became width 16 with 3 blocks of 1 conv (a dense head on 7x7x64 instead of 14x14x48), 7 epochs,
#   dropout 0.2: the same training CPU as width 24 x 2 blocks x 5 epochs, 1.8x cheaper to serve, seeds 42/43/44
#   92.45/92.23/92.85 % (mean 92.51 %; 5 seeds 92.49 %) where the old demo had 92.04 % in the same conditions;
#   dropout 0.3 on it: mean 92.18 %.
#   Fifth session: fused_batch_norm (TensorFlow's one-op batch normalization instead of Keras 3's composed one, same
#   math) trains the demo in 0.61-0.77x the CPU (116-126 CPU s against 164-190, load 13-19); seeds 42/43/44
#   92.36/92.14/92.67 % (mean 92.39 %; rounding order differs, so each seed's path does); with an 8th epoch
#   92.53/92.35/92.84 % (mean 92.57 %) in 126-130 CPU s, still 0.66-0.79x the plain 7-epoch preset: adopted.
#   Keras on JAX (CPU) was 4.8x slower per step, TF threads 2/1 and depthwise-separable convolutions (-0.6 point for
#   -10 % CPU) did not pay.
#   Sixth session (full preset): the fused layer takes bf16 inputs too, but in bf16 it saves no CPU per step
#   (0.99-1.01x, bench/bench_train_step.py), and float32 with it costs what bf16 without it does (0.93-1.02x), so the
#   full preset keeps Keras's layer in bf16.
#   Sixth session: steps_per_execution 8 and validation after the last epoch only (validate_each_epoch=False) keep
#   the math (seeds 42/43/44 92.53/92.35/92.84 % to the digit); 0.92x the CPU under load (151-157 CPU s against
#   164, load 16-22), but no gain quiet (seed 42: 160 CPU s against 154, within the noise): kept as harmless, not
#   as a speed-up. Batch 256 at 4e-3 on top cost 0.82x but gave mean 92.54 % (-0.03): not adopted.
#   Seventh session: bf16 pays on the demo at batch 256 (an epoch 0.7x float32 batch 128's, where bf16 at batch 128
#   was 0.8x and float32 at 256 0.85x), but costs about 0.2 point at 8 epochs (mean 92.32 %); a 9th epoch buys it
#   back: seeds 42/43/44 92.55/92.40/92.78 % (mean 92.58 %, the old preset's 92.57 %) for 94-101 training CPU s
#   against its 137-160. Only where the CPU has native bf16 (trainer/training/native_bf16.py): a CPU without it
#   trains the same schedule in float32 (seeds 42/43/44 mean 92.42 % here; its speed there not measured: no such CPU).
#   Ninth session: on TensorFlow the batches come from input_pipeline.py (reshuffled each epoch, no autotuning thread
#   whose join stalled 30-45 s at epoch boundaries): the demo's seeds 42/43/44 92.64/92.55/92.90 % (mean 92.70 %) in
#   49-54 s of training; the full preset's levers tried (README "Ninth session") did not reach 94.0 %.
#   Tenth session (full preset): SGD with Nesterov momentum 0.9, learning rate 0.2, weight decay 5e-3 instead of
#   AdamW at 3e-3: seeds 42/43/44 93.92/93.72/93.77 % (mean 93.80 %) against AdamW's 93.55/93.68/93.49 % (mean
#   93.57 %), in 277-302 s of process time against 290-297, the same graph to serve. Around it, on seed 42: learning
#   rate 0.3 (-0.4), weight decay 1e-2 (-0.35), dropout 0.1 (-0.2), batch 64 or 256 (no faster, -0.06 to -0.2) and
#   flip-only augmentation (-0.3) lose. steps_per_execution 8 and validation after the last epoch keep the math
#   (93.92 % to the digit). The search space follows the optimizer (search_space.py).
#   Twelfth session (full preset, seed 42, against 93.92 %): weight averaging with the batch normalization statistics
#   measured again (0.999: 93.39 %, 0.998: 93.75 %), label smoothing 0.05 (93.80 %), warm-up 5 % (93.69 %), linear
#   decay (93.78 %), a one-conv first block at width 28 (93.57 %), residual blocks (93.64 %, 1.3x the CPU): none kept.
#   Thirteenth session (full preset): the first block at 16 filters instead of 24 (16/48/96, `first_width`) trains an
#   epoch in about 0.85x the time (the 28x28 block is the costliest, bench/bench_train_step.py --variant), so 8 epochs
#   fit where 7 did: seeds 42/43/44 94.01/93.86/93.80 % (mean 93.89 %, +0.09) in 264-284 s of process time (277-302
#   before), and 1.3-1.5x cheaper to serve (3,431-3,989 images/s on one thread against 2,601-2,618): adopted. Not
#   kept (seed 42, against 94.01 %): no weight decay on biases and normalization (93.73 %), width 16 for 12 epochs
#   (93.73 %), the same with shift-and-flip augmentation (93.29 %), width 20 (93.88 % but 353 s: 0.82x the step CPU
#   for 0.69x the multiply-adds), batch normalization after each block's last conv only (0.8x the CPU; 93.76 % at 9
#   epochs, 93.84 % at 10 in 335 s, 93.64 % with the 16-filter first block at 10), a first block of 8 filters at 10
#   epochs (93.43 %, 314 s), a third conv in the last block at 7 epochs (93.91 %); on the new preset, weight decay
#   3e-3 (93.84 %) and momentum 0.95 at learning rate 0.1 (93.80 %).
# gpu: 95.3% within 60 s on one H200 (bf16, XLA), where augmentation does pay off.
PRESETS = {
    "smoke": TrainConfig(
        ModelSpec(width=8, blocks=2, convs_per_block=1, dense_units=32, dropout=0.1),
        epochs=2,
        batch_size=64,
        learning_rate=3e-3,
        augment=False,
    ),
    "demo": TrainConfig(
        ModelSpec(width=16, blocks=3, convs_per_block=1, dense_units=128, dropout=0.2),
        epochs=9,
        batch_size=256,
        learning_rate=4e-3,
        augment=False,
        label_smoothing=0.05,
        mixed_precision=computes_bf16(),  # bf16 where the CPU computes it in hardware, else float32
        steps_per_execution=8,
        fused_batch_norm=True,
        validate_each_epoch=False,
    ),
    "full": TrainConfig(
        ModelSpec(width=24, blocks=3, convs_per_block=2, dense_units=128, dropout=0.2, first_width=16),
        epochs=8,
        batch_size=128,
        learning_rate=0.2,
        augment=False,
        weight_decay=5e-3,
        mixed_precision=True,
        steps_per_execution=8,
        validate_each_epoch=False,
        optimizer="sgd",
    ),
    "gpu": TrainConfig(
        ModelSpec(width=128, blocks=3, convs_per_block=2, dense_units=0, dropout=0.2),
        epochs=70,
        batch_size=512,
        learning_rate=2e-3,
        augment=True,
        mixed_precision=True,
    ),
}


SAVED_PRESETS = "presets"  # <dev bucket>/presets/<name>.json, written by `trainer tune --save-preset`


@dataclass
class OutputPaths:
    """Where a run writes. Unset directories default under the dev bucket (`root`), per run or per training key."""

    root: str
    model_dir: str | None = None
    checkpoint_dir: str | None = None
    tensorboard_dir: str | None = None

    def checkpoints(self, training_key: str) -> str:
        return self.checkpoint_dir or storage.join(self.root, "checkpoints", training_key)

    def model(self, run_id: str) -> str:
        return self.model_dir or storage.join(self.root, "runs", run_id, "model")

    def tensorboard(self, run_id: str) -> str:
        return self.tensorboard_dir or storage.join(self.root, "tensorboard", run_id)

    def run_record(self, run_id: str) -> str:
        return storage.join(self.root, "runs", run_id, "run.json")


@dataclass
class TrainResult:
    run_id: str
    model_dir: str | None  # None on workers other than the chief: they write nothing
    test_metrics: dict
    history: list = field(default_factory=list)
    resumed_from_epoch: int = 0
    seconds: float = 0.0
    model: object = None


def training_key(config: TrainConfig, dataset_version: str, num_workers: int = 1) -> str:
    """Same config + same data = same key = same checkpoint directory: rerunning a command resumes it."""
    payload = json.dumps(
        {"config": config.to_dict(), "dataset": dataset_version, "workers": num_workers}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def new_run_id(key: str) -> str:
    return f"run-{datetime.now(UTC):%Y%m%d-%H%M%S}-{key[:6]}"


def code_version() -> str:
    """The git commit the code came from: $CODE_VERSION (set at image build), else git, else 'unknown'."""
    if os.environ.get("CODE_VERSION"):
        return os.environ["CODE_VERSION"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).resolve().parent
        )
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ---- the training run -------------------------------------------------------------------------------------------


VALIDATION_BATCH = 1000  # inference only: larger batches, fewer steps


def split_train_validation(x: np.ndarray, y: np.ndarray, fraction: float, seed: int):
    """The shared stratified split (trainer.data.splits): AutoML validates on exactly these images too."""
    from trainer.data.splits import validation_mask

    mask = validation_mask(y, fraction, seed)
    return (x[~mask], y[~mask]), (x[mask], y[mask])


def one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(NUM_CLASSES, dtype="float32")[np.asarray(labels, dtype=np.int64)]


def compile_for_training(model, config: TrainConfig, steps_per_epoch: int):
    """Wrap with augmentation (if asked) and compile: AdamW or SGD with Nesterov momentum, warm-up then cosine or
    linear decay (schedules.py), label smoothing."""
    from trainer.training.augment import training_model

    trainable = training_model(model, config.max_shift, True, config.seed) if config.augment else model
    schedule = learning_rate_schedule(
        config.decay, config.learning_rate, config.epochs * steps_per_epoch, config.warmup_fraction
    )
    # with EMA, fit ends by writing the averaged weights into the model (Optimizer.finalize_variable_values)
    averaging = {"use_ema": config.ema_momentum > 0, "ema_momentum": config.ema_momentum or 0.99}
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            learning_rate=schedule,
            momentum=config.momentum,
            nesterov=True,
            weight_decay=config.weight_decay,
            **averaging,
        )
    elif config.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay, **averaging)
    else:
        raise CommandError(f"optimizer {config.optimizer!r}: expected 'adamw' or 'sgd'")
    if config.no_bias_decay:
        # the variables of one value per channel (biases, batch normalization's gamma and beta): "no bias decay",
        # one of the tricks of He et al., "Bag of Tricks for Image Classification" (2019); measured, not adopted
        optimizer.exclude_from_weight_decay(var_list=[v for v in trainable.trainable_variables if len(v.shape) <= 1])
    trainable.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=config.jit_compile if config.jit_compile == "auto" else config.jit_compile == "on",
        steps_per_execution=config.steps_per_execution,
    )
    return trainable


@contextmanager
def precision_policy(mixed: bool):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if mixed else "float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def float32_copy(model, spec: ModelSpec):
    """The same weights in a float32 model: what gets saved and exported, whatever policy trained it."""
    with precision_policy(False):
        copy = build_model(spec)
    copy.set_weights(model.get_weights())
    return copy


def resume_state(checkpoint_dir: str, key: str, run_id: str | None, fresh: bool):
    """(state, epochs already done): the unfinished run of this config and data, else a new run."""
    state = None if fresh else checkpoint.read_state(checkpoint_dir)
    if state is not None and state.training_key != key:
        raise CommandError(
            f"{checkpoint_dir} holds a checkpoint of a different configuration or dataset "
            f"(key {state.training_key}, this run {key}); pass --fresh to start over there, "
            "or a different --checkpoint-dir"
        )
    if state is None or state.completed:
        return checkpoint.CheckpointState(run_id=run_id or new_run_id(key), training_key=key), 0
    return state, state.epoch


def fit_arrays(x_train: np.ndarray, y_train: np.ndarray, config: TrainConfig):
    """Float pixels and one-hot labels for fit, and the validation pair; on JAX the training set is trimmed to
    whole batches, because XLA compiles one program per batch shape (a short last batch = a second compilation)."""
    (x_fit, y_fit), (x_val, y_val) = split_train_validation(x_train, y_train, config.validation_fraction, config.seed)
    if keras.backend.backend() == "jax":
        keep = np.random.default_rng(config.seed).permutation(len(x_fit))[
            : len(x_fit) // config.batch_size * config.batch_size
        ]
        x_fit, y_fit = x_fit[keep], y_fit[keep]
    return (x_fit.astype("float32"), one_hot(y_fit)), (x_val.astype("float32"), one_hot(y_val))


def fit_data(x_fit: np.ndarray, y_fit: np.ndarray, validation: tuple, config: TrainConfig, resumed_from: int) -> dict:
    """fit()'s data arguments: on TensorFlow, our tf.data batches (input_pipeline.py says why); elsewhere the arrays,
    which Keras batches and reshuffles each epoch itself. A resumed run shuffles from a seed of its own."""
    if keras.backend.backend() == "tensorflow":
        return {
            "x": tensorflow_batches(x_fit, y_fit, config.batch_size, shuffle_seed=config.seed + resumed_from),
            "shuffle": False,  # the batches shuffle themselves; Keras would only warn that it cannot
            "validation_data": tensorflow_batches(*validation, VALIDATION_BATCH, shuffle_seed=None),
        }
    return {
        "x": x_fit,
        "y": y_fit,
        "batch_size": config.batch_size,
        "shuffle": True,
        "validation_data": validation,
        "validation_batch_size": VALIDATION_BATCH,
    }


def train(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    config: TrainConfig,
    paths: OutputPaths,
    *,
    dataset: dict | None = None,
    run_id: str | None = None,
    fresh: bool = False,
    distribution=None,
    vertex=None,
    verbose=None,
    callbacks=(),
    checkpoint_every_s: float = 30.0,
) -> TrainResult:
    """Train (resuming from the newest checkpoint of the same config and data), save, and measure on the test set.

    The test set is only measured at the end, never used to choose anything. Checkpoints are written at most
    every `checkpoint_every_s` seconds (and after the last epoch), so a kill loses at most that much work.
    Only the chief (the one process without TF_CONFIG) writes: checkpoints, run record, TensorBoard, model.
    """
    distribution = distribution or distribute.from_environment()  # before anything starts TensorFlow
    started = time.perf_counter()
    dataset = dataset or {"version": "in-memory", "hash": None}
    chief = distribution.role.is_chief
    key = training_key(config, dataset["version"], distribution.role.num_workers)
    checkpoint_dir = paths.checkpoints(key)
    state, resumed_from = resume_state(checkpoint_dir, key, run_id, fresh)
    run_id = state.run_id
    keras.utils.set_random_seed(config.seed + resumed_from)

    with precision_policy(config.mixed_precision):
        (x_fit, y_fit), validation = fit_arrays(x_train, y_train, config)
        steps_per_epoch = -(-len(x_fit) // config.batch_size)
        with distribution.scope():
            model = build_model(config.model, FusedBatchNormalization if config.fused_batch_norm else None)
            trainable = compile_for_training(model, config, steps_per_epoch)
        distribution.prepare(trainable, (x_fit[:2], y_fit[:2]))
        if resumed_from:
            checkpoint.restore(trainable, checkpoint_dir, state)
            print(f"resuming run {run_id} after epoch {resumed_from}/{config.epochs} from {checkpoint_dir}", flush=True)

        params = {
            **config.to_dict(),
            "dataset_version": dataset["version"],
            "backend": keras.backend.backend(),
            "workers": distribution.role.num_workers,
        }
        record, epoch_callbacks = None, []
        if chief:
            record = RunRecord(
                paths.run_record(run_id), run_id, params, resumed_history=state.history if resumed_from else None
            )
            record.save()
            if vertex:
                vertex.run_id = run_id
                vertex.start(flatten(params), resume=bool(resumed_from))
            epoch_callbacks = [
                checkpoint.EpochCheckpoint(checkpoint_dir, state, min_interval_s=checkpoint_every_s),
                EpochRecorder(record, vertex),
            ]
            if keras.backend.backend() == "tensorflow":  # tf.summary; JAX runs write the run record only
                epoch_callbacks.append(tensorboard_callback(paths.tensorboard(run_id), write_graph=False))
        if verbose is None:
            verbose = (1 if sys.stdout.isatty() else 2) if chief else 0
        trainable.fit(
            **fit_data(x_fit, y_fit, validation, config, resumed_from),
            epochs=config.epochs,
            initial_epoch=resumed_from,
            # Given, Keras keeps the data iterator it makes at each epoch's end for the next epoch, where without it
            # Keras 3.15 makes a second one there and drops the first unused.
            steps_per_epoch=steps_per_epoch,
            validation_freq=1 if config.validate_each_epoch else config.epochs,
            callbacks=[*epoch_callbacks, *callbacks],
            verbose=verbose,
        )
        optimizer_steps = int(keras.ops.convert_to_numpy(trainable.optimizer.iterations))
        if config.ema_momentum > 0:  # the averaged weights need statistics of their own (batch_norm_statistics.py)
            recalibrate(model, x_fit)

    # the saved model is plain Keras: float32, and Keras's own BatchNormalization (the fused one is for training)
    final = float32_copy(model, config.model) if config.mixed_precision or config.fused_batch_norm else model
    test_metrics = {"test_accuracy": float(np.mean(predict_probabilities(final, x_test).argmax(axis=1) == y_test))}
    seconds = time.perf_counter() - started
    model_dir = None
    if chief:
        model_dir = paths.model(run_id)
        info = {
            "run_id": run_id,
            "config": config.to_dict(),
            "dataset": dataset,
            "history": state.history,
            "test_metrics": test_metrics,
            "backend": keras.backend.backend(),
            "keras": keras.__version__,
            "code_version": code_version(),
            "workers": distribution.role.num_workers,
            "resumed_from_epoch": resumed_from,
            "optimizer_steps": optimizer_steps,
            "seconds": round(seconds, 1),
        }
        model_files.save(final, model_dir, info)
        record.finish(test_metrics, model_dir=model_dir, seconds=round(seconds, 1))
        if vertex:
            vertex.finish(test_metrics)
        checkpoint.mark_completed(checkpoint_dir, state)
    return TrainResult(
        run_id=run_id,
        model_dir=model_dir,
        test_metrics=test_metrics,
        history=list(state.history),
        resumed_from_epoch=resumed_from,
        seconds=seconds,
        model=final,
    )


def report_tuning_metric(result: TrainResult) -> None:
    """Inside a Vertex AI tuning trial: the last epoch's validation accuracy, the way Vizier reads it (the
    cloudml-hypertune metrics file). Chosen on validation data: the test set never picks a trial."""
    import hypertune

    value = float(result.history[-1]["val_accuracy"])
    hypertune.HyperTune().report_hyperparameter_tuning_metric(
        hyperparameter_metric_tag="val_accuracy", metric_value=value, global_step=len(result.history)
    )
    print(f"reported val_accuracy {value:.4f} for tuning trial {os.environ['CLOUD_ML_TRIAL_ID']}")


def flatten(params: dict, prefix: str = "") -> dict:
    """{'model': {'width': 32}} -> {'model.width': 32}: Vertex AI Experiments takes flat scalar parameters."""
    out = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class EpochRecorder(keras.callbacks.Callback):
    """Appends each epoch's metrics and wall time to the run record (and Vertex AI Experiments)."""

    def __init__(self, record, vertex=None):
        super().__init__()
        self.record, self.vertex = record, vertex

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        metrics = {k: float(v) for k, v in (logs or {}).items()}
        metrics["seconds"] = round(time.perf_counter() - self._started, 2)
        self.record.log_epoch(epoch + 1, metrics)
        if self.vertex:
            self.vertex.log_epoch(epoch + 1, metrics)


# ---- command line -----------------------------------------------------------------------------------------------


def add_arguments(parser) -> None:
    parser.add_argument(
        "--preset",
        help=f"hyperparameter preset: {', '.join(sorted(PRESETS))}, or one `trainer tune --save-preset` saved "
        "(default: config training.preset)",
    )
    add_option_flags(parser)  # the training options (trainer/training/options.py)
    parser.add_argument("--dataset-version", help="dataset version (default: config, then LATEST)")
    parser.add_argument("--run-id", help="name of a new run (default: run-<UTC time>-<config hash>)")
    parser.add_argument("--model-dir", help="where the model goes (default: $AIP_MODEL_DIR, else the run's folder)")
    parser.add_argument("--checkpoint-dir", help="default: $AIP_CHECKPOINT_DIR, else per config in the dev bucket")
    parser.add_argument("--tensorboard-dir", help="default: $AIP_TENSORBOARD_LOG_DIR, else in the dev bucket")
    parser.add_argument("--fresh", action="store_true", help="ignore an unfinished checkpoint and start over")
    parser.add_argument(
        "--checkpoint-every",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="save a checkpoint at the end of an epoch at most this often (0: every epoch)",
    )


def resolve_config(settings, args) -> TrainConfig:
    """Preset, then config-file training.* values, then command-line flags."""
    training = settings.training
    config = preset(settings, getattr(args, "preset", None) or training.preset)
    return apply_options(config, training, args)


def saved_preset_uri(settings, name: str) -> str:
    return storage.join(settings.dev_bucket, SAVED_PRESETS, f"{name}.json")


def preset(settings, name: str) -> TrainConfig:
    """A built-in preset, else one `trainer tune --save-preset NAME` saved in the dev bucket."""
    if name in PRESETS:
        return PRESETS[name]
    uri = saved_preset_uri(settings, name)
    try:
        return TrainConfig.from_dict(json.loads(storage.read_text(uri))["config"])
    except storage.NotFound:
        raise CommandError(
            f"no preset '{name}': built-in ones are {', '.join(sorted(PRESETS))}, and {uri} does not exist "
            "(`python -m trainer tune --save-preset NAME` writes one)"
        ) from None


def output_paths(settings, args, environ=None) -> OutputPaths:
    """Flags first, then the Vertex AI custom-training variables, then the dev bucket."""
    environ = os.environ if environ is None else environ
    return OutputPaths(
        root=settings.dev_bucket,
        model_dir=args.model_dir or environ.get("AIP_MODEL_DIR") or None,
        checkpoint_dir=args.checkpoint_dir or environ.get("AIP_CHECKPOINT_DIR") or None,
        tensorboard_dir=args.tensorboard_dir or environ.get("AIP_TENSORBOARD_LOG_DIR") or None,
    )


def run(args, settings) -> int:
    from trainer.cloud.experiments import VertexExperiment
    from trainer.data.dataset import load_dataset

    distribution = distribute.from_environment()
    config = resolve_config(settings, args)
    data = load_dataset(settings, args.dataset_version or settings.training.dataset_version)
    role = distribution.role
    print(
        f"training {data.version} ({len(data.x_train):,} train / {len(data.x_test):,} test images), "
        f"preset {args.preset or settings.training.preset}, {config.epochs} epochs, "
        f"worker {role.task_type}:{role.task_index} of {role.num_workers}",
        flush=True,
    )
    vertex = VertexExperiment(settings, args.run_id or "") if settings.target == "gcp" else None
    result = train(
        data.x_train,
        data.y_train,
        data.x_test,
        data.y_test,
        config,
        output_paths(settings, args),
        dataset={"version": data.version, "hash": data.hash},
        run_id=args.run_id,
        fresh=args.fresh,
        distribution=distribution,
        vertex=vertex,
        checkpoint_every_s=args.checkpoint_every,
    )
    accuracy = result.test_metrics["test_accuracy"]
    if os.environ.get("CLOUD_ML_TRIAL_ID") and role.is_chief:
        report_tuning_metric(result)
    if result.model_dir:
        print(
            f"run {result.run_id}: test accuracy {accuracy:.4f} after {config.epochs} epochs in "
            f"{result.seconds:.0f} s; model in {result.model_dir}\n"
            f"next: python -m trainer evaluate --model-dir {result.model_dir} && "
            f"python -m trainer export --model-dir {result.model_dir}"
        )
    else:
        print(
            f"worker {role.task_type}:{role.task_index} done (test accuracy {accuracy:.4f}); the chief saved the model"
        )
    return 0
