"""`python -m trainer evaluate`: test-set metrics, a per-class table and the confusion matrix, next to the model.

Why macro precision is reported beside accuracy: the seed project's headline was "97.2% precision" from AutoML,
so our numbers must be comparable with it (AutoML's own figure is at a 0.5 confidence threshold; see automl.py).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np

import storage
from contracts.dataset import CLASS_NAMES
from contracts.layout import ModelFiles
from trainer.data.dataset import Dataset, load_dataset
from trainer.models import model_dir as model_files

EVALUATION_FILE, CONFUSION_JSON, CONFUSION_PNG = (
    ModelFiles.EVALUATION,
    ModelFiles.CONFUSION_JSON,
    ModelFiles.CONFUSION_PNG,
)


@dataclass
class Evaluation:
    metrics: dict  # accuracy, macro_precision, macro_recall, macro_f1
    per_class: list  # one dict per class: name, precision, recall, f1, support
    confusion: np.ndarray  # [true, predicted] counts
    class_names: list

    def to_dict(self) -> dict:
        return {
            "metrics": self.metrics,
            "per_class": self.per_class,
            "confusion_matrix": self.confusion.tolist(),
            "class_names": self.class_names,
        }


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    return np.bincount(
        np.asarray(y_true, np.int64) * n_classes + np.asarray(y_pred, np.int64), minlength=n_classes * n_classes
    ).reshape(n_classes, n_classes)


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, class_names: list) -> Evaluation:
    """Accuracy and per-class/macro precision, recall, F1 (a class never predicted has precision 0)."""
    matrix = confusion_matrix(y_true, y_pred, len(class_names))
    correct = np.diag(matrix).astype(np.float64)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(correct, predicted, out=np.zeros_like(correct), where=predicted > 0)
    recall = np.divide(correct, actual, out=np.zeros_like(correct), where=actual > 0)
    f1 = np.divide(
        2 * precision * recall, precision + recall, out=np.zeros_like(correct), where=(precision + recall) > 0
    )
    per_class = [
        {
            "class": i,
            "name": name,
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(actual[i]),
        }
        for i, name in enumerate(class_names)
    ]
    metrics = {
        "accuracy": float(correct.sum() / max(matrix.sum(), 1)),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
    }
    return Evaluation(metrics, per_class, matrix, list(class_names))


def format_report(evaluation: Evaluation) -> str:
    lines = [f"{'class':<14}{'precision':>10}{'recall':>9}{'f1':>9}{'support':>9}"]
    for row in evaluation.per_class:
        lines.append(
            f"{row['name']:<14}{row['precision']:>10.4f}{row['recall']:>9.4f}{row['f1']:>9.4f}{row['support']:>9}"
        )
    m = evaluation.metrics
    lines.append(
        f"{'macro':<14}{m['macro_precision']:>10.4f}{m['macro_recall']:>9.4f}{m['macro_f1']:>9.4f}"
        f"{int(evaluation.confusion.sum()):>9}"
    )
    lines.append(f"accuracy {m['accuracy']:.4f}   macro precision {m['macro_precision']:.4f}")
    return "\n".join(lines)


def confusion_png(evaluation: Evaluation) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix, names = evaluation.confusion, evaluation.class_names
    fig, ax = plt.subplots(figsize=(8, 7), dpi=100)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Fashion-MNIST test set: accuracy {evaluation.metrics['accuracy']:.2%}")
    threshold = matrix.max() / 2
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(
                j,
                i,
                str(matrix[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if matrix[i, j] > threshold else "black",
            )
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()


def write_evaluation(model_dir: str, evaluation: Evaluation, dataset: dict) -> list[str]:
    """evaluation.json, confusion_matrix.json and confusion_matrix.png into the model directory."""
    files = {
        CONFUSION_JSON: json.dumps(
            {
                "class_names": evaluation.class_names,
                "matrix": evaluation.confusion.tolist(),
                "rows": "true",
                "columns": "predicted",
            }
        ),
        EVALUATION_FILE: json.dumps({**evaluation.to_dict(), "dataset": dataset}, indent=2),
    }
    written = []
    storage.write_bytes(storage.join(model_dir, CONFUSION_PNG), confusion_png(evaluation), content_type="image/png")
    written.append(storage.join(model_dir, CONFUSION_PNG))
    for name, text in files.items():
        storage.write_text(storage.join(model_dir, name), text, content_type="application/json")
        written.append(storage.join(model_dir, name))
    return written


@dataclass
class EvaluatedModel:
    """What evaluating a model directory produced: export goes on from here instead of loading everything again."""

    evaluation: Evaluation
    data: Dataset
    model: object
    probabilities: np.ndarray
    training: dict


def evaluate_model_dir(settings, model_dir: str, dataset_version: str | None = None) -> EvaluatedModel:
    """Load the model and the test set it belongs with, measure, and write the report files beside the model."""
    training = model_files.read_training_info(model_dir)
    data = load_dataset(settings, dataset_version or training["dataset"]["version"])
    model = model_files.load_keras_model(model_dir)
    probabilities = model_files.predict_probabilities(model, data.x_test)
    evaluation = classification_report(data.y_test, probabilities.argmax(axis=1), CLASS_NAMES)
    write_evaluation(model_dir, evaluation, {"version": data.version, "hash": data.hash})
    return EvaluatedModel(evaluation, data, model, probabilities, training)


def add_arguments(parser) -> None:
    parser.add_argument("--model-dir", required=True, help="a directory `python -m trainer train` wrote")
    parser.add_argument("--dataset-version", help="default: the version the model was trained on")


def run(args, settings) -> int:
    result = evaluate_model_dir(settings, args.model_dir, args.dataset_version)
    print(format_report(result.evaluation))
    print(
        f"wrote {EVALUATION_FILE}, {CONFUSION_JSON}, {CONFUSION_PNG} to {args.model_dir} "
        f"(test set of {result.data.version})"
    )
    return 0
