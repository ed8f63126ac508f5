"""Run one lifecycle step as a subprocess, with a header, its timing and a clear stop on failure."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


class StepFailed(RuntimeError):
    """A step exited non-zero; the message names the step, its command and how to re-run it alone."""


@dataclass
class StepLog:
    """What the run did, for the summary and the report."""

    timings: dict[str, float] = field(default_factory=dict)

    def peak_child_rss_mb(self) -> float:
        """Largest resident memory of any finished step process (Linux reports KiB)."""
        return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def run_step(
    log: StepLog,
    name: str,
    argv: list[str],
    env: dict[str, str] | None = None,
    outcomes: dict[int, str] | None = None,
) -> str | None:
    """Run `python <argv>` from the repo root; raise StepFailed on an exit status `outcomes` does not name.

    Returns the outcome of the exit status (None when `outcomes` is not given)."""
    banner(name)
    cmd = [sys.executable, *argv]
    print("$ python " + " ".join(argv), flush=True)
    start = time.perf_counter()
    quiet = {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore::FutureWarning"}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env={**quiet, **os.environ, **(env or {})})
    log.timings[name] = time.perf_counter() - start
    if outcomes and proc.returncode in outcomes:
        return outcomes[proc.returncode]
    if proc.returncode != 0:
        raise StepFailed(
            f"step '{name}' failed (exit {proc.returncode}); its message is above. "
            f"Re-run it alone with: python {' '.join(argv)}"
        )
    print(f"-- {name}: {log.timings[name]:.1f} s", flush=True)
    return None
