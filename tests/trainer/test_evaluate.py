"""`python -m trainer evaluate`: metrics from a known confusion matrix, report files next to the model."""

import json

import numpy as np
import pytest

from trainer import cli
from trainer.models.evaluate import CONFUSION_JSON, CONFUSION_PNG, EVALUATION_FILE, classification_report, format_report


def test_metrics_match_a_hand_computed_example():
    # true: 0 0 0 1 1 2   predicted: 0 0 1 1 1 1  -> class 2 never predicted
    evaluation = classification_report(np.array([0, 0, 0, 1, 1, 2]), np.array([0, 0, 1, 1, 1, 1]), ["a", "b", "c"])
    assert evaluation.confusion.tolist() == [[2, 1, 0], [0, 2, 0], [0, 1, 0]]
    precision = [1.0, 2 / 4, 0.0]
    recall = [2 / 3, 1.0, 0.0]
    f1 = [2 * p * r / (p + r) if p + r else 0.0 for p, r in zip(precision, recall, strict=True)]
    assert evaluation.metrics["accuracy"] == pytest.approx(4 / 6)
    assert evaluation.metrics["macro_precision"] == pytest.approx(np.mean(precision))
    assert evaluation.metrics["macro_recall"] == pytest.approx(np.mean(recall))
    assert evaluation.metrics["macro_f1"] == pytest.approx(np.mean(f1))
    assert [row["support"] for row in evaluation.per_class] == [3, 2, 1]
    table = format_report(evaluation)
    assert "macro precision 0.5000" in table and table.count("\n") == 5


def test_cli_writes_report_files_next_to_the_model(cli_env, model_dir, capsys):
    assert cli.main(["evaluate", "--model-dir", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert "macro precision" in out and "Ankle boot" in out
    report = json.loads((model_dir / EVALUATION_FILE).read_text())
    assert set(report["metrics"]) == {"accuracy", "macro_precision", "macro_recall", "macro_f1"}
    assert len(report["per_class"]) == 10 and report["dataset"]["version"] == cli_env.dataset_version
    matrix = json.loads((model_dir / CONFUSION_JSON).read_text())["matrix"]
    assert np.asarray(matrix).sum() == 300 and np.trace(matrix) / 300 == pytest.approx(report["metrics"]["accuracy"])
    assert (model_dir / CONFUSION_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_refuses_a_directory_train_did_not_write(cli_env, tmp_path, capsys):
    assert cli.main(["evaluate", "--model-dir", str(tmp_path)]) == 1
    assert "is not a directory `python -m trainer train` wrote" in capsys.readouterr().err
