"""bench_train.py's anchor beside our run: the anchor's own output is what gets quoted, so its parsing and the
refusals before an hour of training are pinned here with a stand-in script that prints what fast_torch.py prints."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest

BENCH_TRAIN = Path(__file__).resolve().parents[1] / "bench" / "bench_train.py"


def bench_train():
    spec = importlib.util.spec_from_file_location("bench_train_under_test", BENCH_TRAIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def anchor_args(tmp_path: Path, printed: str, runs: str = "[[2, 16]]") -> argparse.Namespace:
    script = tmp_path / "fast_torch.py"
    script.write_text(
        "import os, sys\n"
        "print('device cpu  torch 0')\n"
        f"print({printed!r}.replace('RUNS', os.environ['RUNS']).replace('DATA', os.environ['FM_DIR']))\n"
    )
    return argparse.Namespace(
        anchor=script, anchor_python=sys.executable, anchor_runs=runs, data=str(tmp_path), out=None
    )


def test_the_anchors_last_epoch_is_its_time_and_accuracy(tmp_path):
    args = anchor_args(tmp_path, "epochs=2 width=16 [(1, 80.5, 0.871), (2, 161.25, 0.9012)]")
    anchor = bench_train().run_anchor(args)
    assert anchor["history"] == [[1, 80.5, 0.871], [2, 161.25, 0.9012]]
    assert (anchor["epochs"], anchor["train_seconds"], anchor["test_accuracy_flip_tta"]) == (2, 161.25, 0.9012)
    assert anchor["anchor_runs"] == [[2, 16]]
    assert anchor["process_cpu_seconds"] >= 0


def test_the_ratio_is_ours_over_the_anchors_time(tmp_path, capsys):
    args = anchor_args(tmp_path, "epochs=2 width=16 [(1, 100.0, 0.88), (2, 200.0, 0.90)]")
    args.out = str(tmp_path / "out.jsonl")
    bench_train().beside_anchor(
        args,
        [
            {"label": "a", "train_seconds": 90.0, "train_cpu_seconds": 170.0},
            {"label": "b", "train_seconds": 110.0, "train_cpu_seconds": 190.0},
        ],
    )
    printed = capsys.readouterr().out
    assert "ours 100 s of training (180 CPU s, mean of 2), anchor 200 s" in printed
    assert "0.50x its time" in printed and "or 0.50x the anchor's time (80 / 159 s" in printed
    assert '"ratio": 0.5' in Path(args.out).read_text()


def test_an_anchor_that_prints_no_epochs_line_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="printed no `epochs=` line"):
        bench_train().run_anchor(anchor_args(tmp_path, "nothing trained"))


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("anchor", "--anchor: .* is not a file; pass the path of fast_torch.py"),
        ("anchor_python", "--anchor-python: .* is not an interpreter; pass a venv's python that has torch"),
    ],
)
def test_a_missing_anchor_or_interpreter_is_refused_before_training(tmp_path, field, message):
    args = anchor_args(tmp_path, "epochs=1 width=16 [(1, 1.0, 0.5)]")
    setattr(args, field, tmp_path / "missing")
    with pytest.raises(SystemExit, match=message):
        bench_train().check_anchor(args)
