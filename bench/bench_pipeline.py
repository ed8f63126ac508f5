"""The lifecycle as a pipeline: compile time, and the compiled local pipeline executed on generated data.

    .venv/bin/python bench/bench_pipeline.py [--rounds 3] [--train 1000] [--test 300]

Compiles the dev and the local environment's step lists with kfp (.venv-kfp, `make pipeline-venv`), then runs the
compiled local pipeline with `lifecycle.orchestration.run_compiled` (smoke preset) against a fresh storage root
holding generated IDX files. Prints medians with the machine's load (`uptime`): the 2 cores are shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
KFP_PYTHON = REPO / ".venv-kfp" / "bin" / "python"


def compile_env(env: str, output: Path, *args: str, environ: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(
        [str(KFP_PYTHON), "-m", "lifecycle", "compile", "--env", env, "--output", str(output), *args],
        cwd=REPO,
        env={**os.environ, **(environ or {})},
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def main() -> int:
    from lifecycle.orchestration.run_compiled import run_compiled
    from trainer.data.synthetic import make_idx_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--test", type=int, default=300)
    args = parser.parse_args()
    if not KFP_PYTHON.exists():
        print(f"{KFP_PYTHON} is missing: run `make pipeline-venv`", file=sys.stderr)
        return 1
    print(f"load before: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        compiles = [compile_env("dev", root / "dev.yaml") for _ in range(args.rounds)]
        print(
            f"compile (dev, 10 steps, process start included): median {statistics.median(compiles):.2f} s "
            f"({', '.join(f'{c:.2f}' for c in compiles)})"
        )
        source = make_idx_dir(root / "idx", n_train=args.train, n_test=args.test)
        runs = []
        for i in range(args.rounds):
            environ = {"FMNIST_STORAGE_ROOT": str(root / f"mlops-{i}"), "FMNIST_REGISTRY__ACCURACY_FLOOR": "0.3"}
            os.environ.update(environ)
            compile_env("local", root / "local.yaml", "--preset", "smoke", "--source", str(source), environ=environ)
            start = time.perf_counter()
            run = run_compiled(
                root / "local.yaml", root / f"work-{i}", f"fmnist-lifecycle-bench-{i}", log=lambda *_: None
            )
            runs.append((time.perf_counter() - start, run))
        seconds = statistics.median(s for s, _ in runs)
        last = runs[-1][1]
        print(
            f"compiled local pipeline, {len(last.tasks)} tasks, {args.train:,}/{args.test:,} generated images, "
            f"smoke preset: median {seconds:.1f} s ({', '.join(f'{s:.1f}' for s, _ in runs)})"
        )
        print("  " + ", ".join(f"{t.name} {t.seconds:.1f} s" for t in last.tasks.values()))
    print(f"load after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
