"""What the notebooks in notebooks/ show, as functions: tables, figures, a smoke training and the champion's view.

Why here and not in the notebooks: a notebook cell that holds logic is tested by nothing but the notebook; these
functions are tested in tests/notebooks/, and each notebook cell is one call to them or to the trainer.
Figures are PNG bytes (what the report stores), built on matplotlib's Figure without pyplot (no global state).
"""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import storage
from contracts.dataset import CLASS_NAMES
from contracts.feature_schema import FEATURE_NAMES
from contracts.layout import CHAMPION, FEATURES_FILE, ModelFiles
from trainer.api import Evaluation, classification_report

METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1")


class NothingToExplore(RuntimeError):
    """The local target holds no data or model yet; the message names the command that makes them."""


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (IPython.display.Markdown renders it); floats with 4 decimals, ints with separators."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}"
        if isinstance(value, int | np.integer):
            return f"{int(value):,}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


# ---- notebook 1: the data ------------------------------------------------------------------------------------------


def class_balance_table(report: dict) -> str:
    balance = report["class_balance"]
    rows = [[name, balance["train"]["counts"][c], balance["test"]["counts"][c]] for c, name in enumerate(CLASS_NAMES)]
    return markdown_table(["class", "train", "test"], rows)


def outliers_table(report: dict) -> str:
    """The outliers the analysis found (the same `top` list the report shows), farthest first."""
    rows = [[o["image_id"], o["class"], o["distance"], o["distance_over_fence"]] for o in report["outliers"]["top"]]
    return markdown_table(["image", "class", "distance to class mean", "distance / fence"], rows)


def read_feature_table(settings, version: str) -> dict[str, np.ndarray]:
    """The stored feature table (`python -m trainer features`) of one dataset version, column -> array."""
    import pyarrow.parquet as pq

    from trainer.data.dataset import version_uri

    uri = storage.join(version_uri(settings, version), FEATURES_FILE)
    try:
        data = storage.read_bytes(uri)
    except storage.NotFound:
        raise NothingToExplore(f"{uri} does not exist: run `python -m trainer features` (or `make demo`)") from None
    table = pq.read_table(io.BytesIO(data))
    return {name: table.column(name).to_numpy() for name in table.column_names}


def feature_distributions_png(features: dict[str, np.ndarray], bins: int = 40) -> bytes:
    """One histogram per feature, train and test overlaid as shares of their split (they should match)."""
    from matplotlib.figure import Figure

    cols = 4
    rows = -(-len(FEATURE_NAMES) // cols)
    fig = Figure(figsize=(cols * 3.2, rows * 2.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    split = np.asarray(features["split"]).astype(str)
    for ax, name in zip(axes, FEATURE_NAMES, strict=False):
        values = np.asarray(features[name], dtype=np.float64)
        edges = np.histogram_bin_edges(values, bins=bins)
        for part in ("train", "test"):
            chosen = values[split == part]
            if len(chosen):
                ax.hist(chosen, bins=edges, weights=np.full(len(chosen), 1 / len(chosen)), histtype="step", label=part)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes[len(FEATURE_NAMES) :]:
        ax.axis("off")
    axes[0].legend(fontsize=7)
    fig.suptitle("Feature distributions (share of split)")
    return _png(fig)


# ---- notebook 2: train, evaluate, compare ----------------------------------------------------------------------


def train_smoke(settings, dataset, *, verbose: int = 2):
    """The smoke preset, in-process, fresh (never resumed), into a new run under the dev bucket: (TrainResult, s)."""
    from trainer.api import train_preset

    start = time.perf_counter()
    result = train_preset(settings, dataset, "smoke", fresh=True, verbose=verbose)
    return result, time.perf_counter() - start


@dataclass
class Champion:
    """The registry's champion, measured on the same test images as the new model."""

    version: str
    model_dir: str
    recorded: dict  # the metrics the registry holds for it (its own evaluation, maybe on another dataset version)
    dataset_version: str | None
    probabilities: np.ndarray
    evaluation: Evaluation


def champion_on(settings, images: np.ndarray, labels: np.ndarray, alias: str = CHAMPION) -> Champion | None:
    """The champion's serving artifact (ONNX, what the service runs) on these images; None without a champion."""
    from trainer.api import onnx_probabilities
    from trainer.models.registry import ModelRegistry

    registry = ModelRegistry.from_settings(settings)
    index = registry.read_index()
    version = index.alias(alias)
    if version is None:
        return None
    model_dir = registry.version_uri(version)
    with tempfile.TemporaryDirectory() as tmp:
        local = storage.download_file(storage.join(model_dir, ModelFiles.ONNX), Path(tmp) / ModelFiles.ONNX)
        probabilities = onnx_probabilities(local, images)
    record = index.versions[version]
    evaluation = classification_report(labels, probabilities.argmax(axis=1), CLASS_NAMES)
    return Champion(version, model_dir, dict(record.metrics), record.dataset_version, probabilities, evaluation)


def metrics_side_by_side(new: Evaluation, champion: Champion) -> str:
    """New model vs champion on this test set, and the champion's figures as the registry recorded them."""
    rows = [
        [name, new.metrics[name], champion.evaluation.metrics[name], champion.recorded.get(name, "-")]
        for name in METRICS
    ]
    rows += [
        [f"F1 {n['name']}", n["f1"], c["f1"], "-"]
        for n, c in zip(new.per_class, champion.evaluation.per_class, strict=True)
    ]
    return markdown_table(["metric", "new (smoke)", f"champion {champion.version}", "champion, as registered"], rows)


def disagreements(new_predicted: np.ndarray, champion_predicted: np.ndarray) -> np.ndarray:
    """Indices of the test images on which the two models predict different classes."""
    return np.flatnonzero(np.asarray(new_predicted) != np.asarray(champion_predicted))


def image_grid_png(images: np.ndarray, captions: Sequence[str], title: str, cols: int = 8) -> bytes:
    """Images (raw 0-255) with a caption each, as the analysis report draws its outliers."""
    from matplotlib.figure import Figure

    count = max(len(images), 1)
    rows = -(-count // cols)
    fig = Figure(figsize=(cols * 1.4, rows * 1.7))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, image, caption in zip(axes, images, captions, strict=False):
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(caption, fontsize=7)
    fig.suptitle(title)
    return _png(fig)


def disagreements_png(
    images: np.ndarray, labels: np.ndarray, new_predicted: np.ndarray, champion_predicted: np.ndarray, limit: int = 24
) -> bytes:
    chosen = disagreements(new_predicted, champion_predicted)
    names = np.asarray(CLASS_NAMES)
    captions = [
        f"true {names[labels[i]]}\nnew {names[new_predicted[i]]}\nchamp {names[champion_predicted[i]]}"
        for i in chosen[:limit]
    ]
    title = f"{len(chosen):,} of {len(labels):,} test images where the new model and the champion disagree"
    return image_grid_png(images[chosen[:limit]], captions, title)


# ---- notebook 3: the service -------------------------------------------------------------------------------------


def predictions_png(images: np.ndarray, predictions: Sequence[dict], labels: np.ndarray | None = None) -> bytes:
    """The images a client sent, captioned with the service's answer (and the true class, when known)."""
    captions = []
    for i, prediction in enumerate(predictions):
        probability = max(prediction.get("probabilities") or [0.0])
        caption = f"{prediction['label']} {probability:.2f}"
        if labels is not None:
            caption += f"\n(true {CLASS_NAMES[labels[i]]})"
        captions.append(caption)
    return image_grid_png(np.asarray(images), captions, "Predictions from the service")


def drift_table(report: dict) -> str:
    """PSI per feature and for the predicted classes, from `/monitoring/drift`."""
    if report.get("status") != "ok":
        return f"drift status **{report.get('status')}**: {report.get('detail', '')}"
    rows = [[name, item["psi"], "yes" if item["drifted"] else "no"] for name, item in report["features"].items()]
    rows.append(["predicted_class", report["classes"]["psi"], "yes" if report["classes"]["drifted"] else "no"])
    return markdown_table(["feature", f"PSI (threshold {report['threshold']})", "drifted"], rows)
