"""Wall and CPU seconds per real training epoch of preset variants, interleaved in one process.

Why: a whole three-seed run per variant is minutes, and the load moves between runs. Here every variant is built,
traced and warmed up in one process, then each trains one full epoch of the real training split in turn, round
after round, so each round sees nearly the same load; the medians over rounds are compared. Wall time is what the
80 s goal reads; CPU seconds over wall seconds shows how much of the two cores TensorFlow keeps busy. Prints
figures, asserts nothing. Issue 26 (README "Seventh session"):
    .venv/bin/python bench/bench_train_epoch.py --rounds 3 --variant 'b128:' \
        --variant 'bf16 b256:mixed_precision=true,batch_size=256'
A variant is NAME:FIELD=VALUE,... over the preset (JSON values; model.<field> for the architecture).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def parse_variant(text: str, preset):
    """'name:field=value,...' -> (name, config): the preset with each field set (model.<field> on its ModelSpec)."""
    name, _, sets = text.partition(":")
    config = preset
    for item in filter(None, sets.split(",")):
        field, _, raw = item.partition("=")
        value = json.loads(raw)
        if field.startswith("model."):
            config = replace(config, model=replace(config.model, **{field[len("model.") :]: value}))
        else:
            config = replace(config, **{field: value})
    return name or sets, config


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo", choices=["smoke", "demo", "full"])
    parser.add_argument("--variant", action="append", required=True, help="NAME:FIELD=VALUE,... (see above)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", default=os.environ.get("FM_DIR", "/usr/share/datasets/fashion-mnist"))
    args = parser.parse_args()

    import keras
    import numpy as np
    from bench_train import load_idx

    from trainer.training.fused_batch_norm import FusedBatchNormalization
    from trainer.training.model import build_model
    from trainer.training.train import PRESETS, compile_for_training, fit_arrays, fit_data, precision_policy

    data = load_idx(args.data)
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    variants = []
    for text in args.variant:
        name, config = parse_variant(text, PRESETS[args.preset])
        with precision_policy(config.mixed_precision):
            (x_fit, y_fit), validation = fit_arrays(data["train_images"], data["train_labels"], config)
            keras.utils.set_random_seed(config.seed)
            model = build_model(config.model, FusedBatchNormalization if config.fused_batch_norm else None)
            steps = -(-len(x_fit) // config.batch_size)
            trainable = compile_for_training(model, config, steps_per_epoch=steps)
            # the batches training takes (train.fit_data: on TensorFlow our pipeline, whose iterators end without
            # the 30-45 s join Keras's array pipeline can stall on); each fit below is one epoch of them
            batches = {k: v for k, v in fit_data(x_fit, y_fit, validation, config, 0).items() if "validation" not in k}
            trainable.fit(**batches, steps_per_epoch=4096 // config.batch_size, epochs=1, verbose=0)
        variants.append((name, config, trainable, batches, steps))
    seconds: dict[str, list[tuple[float, float]]] = {name: [] for name, *_ in variants}
    for round_ in range(args.rounds):
        for name, config, trainable, batches, steps in variants:
            with precision_policy(config.mixed_precision):
                wall, cpu = time.perf_counter(), cpu_seconds()
                trainable.fit(**batches, steps_per_epoch=steps, epochs=1, verbose=0)
                wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
            seconds[name].append((wall, cpu))
            print(f"round {round_} {name}: {wall:.2f} s wall, {cpu:.2f} CPU s ({cpu / wall:.2f} cores)", flush=True)
    reference = float(np.median([w for w, _ in seconds[variants[0][0]]]))
    for name, values in seconds.items():
        wall = float(np.median([w for w, _ in values]))
        cpu = float(np.median([c for _, c in values]))
        print(f"{name}: median {wall:.2f} s wall per epoch ({wall / reference:.2f}x), {cpu:.2f} CPU s")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
