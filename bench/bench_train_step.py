"""CPU per training step of a preset's model: Keras's or the fused batch normalization, bf16 or float32, interleaved.

Why: on two shared cores a whole training run per variant is minutes, and the load changes between runs, so one
run's CPU seconds against another's mixes the lever with the load. Here every variant is built and traced in one
process, then each trains the same 8 batches in turn, round after round: each round sees nearly the same load, and
the median over rounds is compared. Random pixels and labels (the cost of a step does not depend on them); prints
figures, asserts nothing. Issue 26 (README "Sixth session (full preset)"):
    .venv/bin/python bench/bench_train_step.py --preset full --rounds 6
Architectures instead (README "Thirteenth session"), each at the preset's precision with Keras's layer:
    .venv/bin/python bench/bench_train_step.py --preset full --variant "first block 16: first_width=16" \
        --variant "no first-conv BN: norm_last_only=true"
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VARIANTS = {  # name: (mixed_bfloat16, fused batch normalization)
    "bf16, Keras BN": (True, False),
    "bf16, fused BN": (True, True),
    "float32, Keras BN": (False, False),
    "float32, fused BN": (False, True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="full", choices=["smoke", "demo", "full"])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=8, help="training steps per variant per round")
    parser.add_argument(
        "--variant", action="append", default=[], metavar="LABEL: FIELD=VALUE ...",
        help="compare the preset's model with this one (ModelSpec fields, JSON values) instead of the precisions",
    )  # fmt: skip
    args = parser.parse_args()

    import keras
    import numpy as np

    from trainer.training.fused_batch_norm import FusedBatchNormalization
    from trainer.training.model import build_model
    from trainer.training.train import PRESETS, compile_for_training, precision_policy

    preset = PRESETS[args.preset]
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (preset.batch_size * args.steps, 28, 28)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 10, len(x)), 10).astype("float32")
    variants = {name: (mixed, fused, preset.model) for name, (mixed, fused) in VARIANTS.items()}
    if args.variant:
        variants = {"preset": (preset.mixed_precision, False, preset.model)}
        for text in args.variant:
            label, _, fields = text.partition(":")
            changes = {key: json.loads(value) for key, _, value in (item.partition("=") for item in fields.split())}
            variants[label.strip()] = (preset.mixed_precision, False, replace(preset.model, **changes))
    models = {}
    for name, (mixed, fused, spec) in variants.items():
        with precision_policy(mixed):
            config = replace(preset, mixed_precision=mixed, fused_batch_norm=fused, model=spec)
            model = build_model(config.model, FusedBatchNormalization if fused else None)
            trainable = compile_for_training(model, config, steps_per_epoch=100)
            trainable.fit(
                x[: 2 * preset.batch_size], y[: 2 * preset.batch_size], batch_size=preset.batch_size, verbose=0
            )
        models[name] = (trainable, mixed)
    cpu_ms: dict[str, list[float]] = {name: [] for name in models}
    for round_ in range(args.rounds):
        for name, (trainable, mixed) in models.items():
            with precision_policy(mixed):
                started = time.process_time()
                trainable.fit(x, y, batch_size=preset.batch_size, epochs=1, verbose=0, shuffle=False)
                cpu_ms[name].append((time.process_time() - started) / args.steps * 1000)
        print(f"round {round_}: " + ", ".join(f"{n} {v[-1]:.1f}" for n, v in cpu_ms.items()), flush=True)
    reference_name = "preset" if args.variant else "bf16, Keras BN" if preset.mixed_precision else "float32, Keras BN"
    reference = float(np.median(cpu_ms[reference_name]))
    for name, values in cpu_ms.items():
        median = float(np.median(values))
        print(f"{name}: median {median:.1f} ms CPU per step (min {min(values):.1f}), {median / reference:.2f}x")


if __name__ == "__main__":
    main()
