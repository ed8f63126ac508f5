"""What each architecture costs to serve: images per second of its exported ONNX model on one ONNX Runtime thread.

Prints figures, asserts nothing. Serving cost depends on the graph only, not on the weights, so each variant is
built with fresh weights and exported (no training). The variants are timed alternately, 64 images per run, so load
on a shared machine hits them alike; each figure is the median over the rounds of the CPU time of the calling thread
(ONNX Runtime with one thread computes there), which load disturbs far less than the wall clock, beside the best
wall-clock run. Usage:
    .venv/bin/python bench/bench_serving_cost.py demo full 'w16b3=demo:width=16,blocks=3'
A variant is a preset name, or LABEL=PRESET:FIELD=VALUE,... with ModelSpec fields; none: demo and full (`make bench`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def parse_variant(text: str):
    """'demo' or 'w16b3=demo:width=16,blocks=3' -> (label, ModelSpec)."""
    from trainer.training.train import PRESETS

    label, _, rest = text.partition("=") if "=" in text.split(":")[0] else (text, "", text)
    preset, _, fields = rest.partition(":")
    if preset not in PRESETS:
        raise SystemExit(f"{text}: unknown preset {preset!r}; built-in ones are {', '.join(sorted(PRESETS))}")
    spec = PRESETS[preset].model
    for item in filter(None, fields.split(",")):
        name, _, value = item.partition("=")
        spec = replace(spec, **{name: json.loads(value)})
    return label, spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "variants", nargs="*", default=["demo", "full"], help="presets or LABEL=PRESET:FIELD=VALUE,... (see above)"
    )
    parser.add_argument("--rounds", type=int, default=300, help="timed runs per variant, alternating")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()

    import numpy as np

    from contracts.layout import INPUT_NAME, OUTPUT_NAME
    from trainer.models.export import export_onnx
    from trainer.models.model_dir import onnx_session
    from trainer.training.model import build_model

    x = np.random.default_rng(0).integers(0, 256, (args.batch, 28, 28)).astype("float32")
    sessions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for index, text in enumerate(args.variants):
            label, spec = parse_variant(text)
            model = build_model(spec)
            sessions[label] = (
                spec,
                model.count_params(),
                onnx_session(export_onnx(model, Path(tmp) / f"{index}.onnx"), threads=1),
            )
    cpu: dict[str, list[float]] = {label: [] for label in sessions}
    wall: dict[str, list[float]] = {label: [] for label in sessions}
    load_before = os.getloadavg()[0]
    for round_ in range(args.rounds + 10):
        for label, (_, _, session) in sessions.items():
            start_cpu, start = time.thread_time(), time.perf_counter()
            session.run([OUTPUT_NAME], {INPUT_NAME: x})
            if round_ >= 10:  # warm-up
                cpu[label].append(time.thread_time() - start_cpu)
                wall[label].append(time.perf_counter() - start)
    first = None
    print(f"load average before/after: {load_before:.2f}/{os.getloadavg()[0]:.2f}; {args.batch} images per run")
    for label, (spec, params, _) in sessions.items():
        per_cpu = args.batch / statistics.median(cpu[label])
        first = first or per_cpu
        print(
            f"{label}: {per_cpu:,.0f} images per CPU second on one thread ({per_cpu / first:.2f}x the first), "
            f"best wall run {args.batch / min(wall[label]):,.0f} images/s, {params:,} parameters, {spec.to_dict()}"
        )


if __name__ == "__main__":
    main()
