"""The notebooks' helpers (lifecycle/notebook/explore.py) on hand-made inputs, value by value: each table's rows,
each figure's panels, captions and size (the figure itself, read before it becomes PNG bytes), without the trained
world of tests/notebooks/test_explore.py (issue 27's notebook-explore group)."""

from __future__ import annotations

import io

import numpy as np
import pytest

import storage
from contracts.dataset import CLASS_NAMES
from contracts.feature_schema import FEATURE_NAMES
from lifecycle.notebook import explore
from settings import load_config
from tests.service.model_factory import linear_softmax_onnx
from trainer.api import classification_report


@pytest.fixture
def figures(monkeypatch):
    """explore's figures as matplotlib Figures (what `_png` would save), to read their panels."""
    monkeypatch.setattr(explore, "_png", lambda fig: fig)


def test_a_figure_is_saved_as_a_png_at_100_dpi_cropped_to_its_content():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1))
    fig.text(0, 0, "x")
    png = explore._png(fig)
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert png.startswith(b"\x89PNG") and (width, height) == (28, 33)  # at 100 dpi, cropped to the text (2 x 1 in)


def test_markdown_table_formats_numpy_ints_and_leaves_other_numbers_alone():
    table = explore.markdown_table(["a", "b", "c"], [[np.int64(12345), True, 2.5]])
    assert table.splitlines()[2] == "| 12,345 | 1 | 2.5000 |"
    assert explore.markdown_table(["a"], [["x|y"]]).splitlines() == ["| a |", "|---|", "| x|y |"]


def test_class_balance_table_has_a_row_per_class_with_both_splits():
    report = {"class_balance": {"train": {"counts": list(range(10))}, "test": {"counts": list(range(100, 110))}}}
    lines = explore.class_balance_table(report).splitlines()
    assert lines[:3] == ["| class | train | test |", "|---|---|---|", "| T-shirt/top | 0 | 100 |"]
    assert lines[-1] == "| Ankle boot | 9 | 109 |" and len(lines) == 12


def test_outliers_table_keeps_the_reports_order_and_columns():
    top = [
        {"image_id": "train-7", "class": "Bag", "distance": 9.5, "distance_over_fence": 1.25, "label": 8},
        {"image_id": "test-1", "class": "Coat", "distance": 8.0, "distance_over_fence": 1.1, "label": 4},
    ]
    assert explore.outliers_table({"outliers": {"top": top}}).splitlines() == [
        "| image | class | distance to class mean | distance / fence |",
        "|---|---|---|---|",
        "| train-7 | Bag | 9.5000 | 1.2500 |",
        "| test-1 | Coat | 8.0000 | 1.1000 |",
    ]


def test_the_stored_feature_table_is_read_column_by_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trainer.data.dataset import version_uri

    settings = load_config("local", environ={"FMNIST_STORAGE_ROOT": str(tmp_path / "mlops")})
    buffer = io.BytesIO()
    pq.write_table(pa.table({"split": ["train", "test"], "ink_fraction": [0.25, 0.5]}), buffer)
    storage.write_bytes(storage.join(version_uri(settings, "v1"), "features.parquet"), buffer.getvalue())
    table = explore.read_feature_table(settings, "v1")
    assert list(table) == ["split", "ink_fraction"]
    assert table["split"].tolist() == ["train", "test"] and table["ink_fraction"].tolist() == [0.25, 0.5]
    with pytest.raises(explore.NothingToExplore) as caught:
        explore.read_feature_table(settings, "v2")
    missing = storage.join(version_uri(settings, "v2"), "features.parquet")
    assert str(caught.value) == f"{missing} does not exist: run `python -m trainer features` (or `make demo`)"


def test_feature_distributions_overlay_each_split_as_shares(figures):
    features = {name: np.arange(6, dtype=np.float64) * (i + 1) for i, name in enumerate(FEATURE_NAMES)}
    features["split"] = np.array(["train", "train", "train", "train", "test", "test"], dtype=object)
    fig = explore.feature_distributions_png(features, bins=3)
    axes = fig.axes
    assert len(axes) == 12 and tuple(fig.get_size_inches()) == pytest.approx((12.8, 7.8))
    assert [ax.get_title() for ax in axes[:9]] == list(FEATURE_NAMES) and not any(ax.axison for ax in axes[9:])
    assert fig.get_suptitle() == "Feature distributions (share of split)"
    first = axes[0]
    assert [p.get_label() for p in first.patches] == ["train", "test"]
    train_heights = sorted(set(np.round(first.patches[0].get_path().vertices[:, 1], 4)))
    assert train_heights == [0.0, 0.5]  # 4 train values over 3 bins: shares 0.5, 0.5 (and 0)
    assert first.get_legend() is not None and all(ax.get_legend() is None for ax in axes[1:])
    assert first.title.get_fontsize() == 9
    assert first.xaxis.get_major_ticks()[0].label1.get_fontsize() == 7
    assert first.get_legend().get_texts()[0].get_fontsize() == 7
    assert type(fig.get_layout_engine()).__name__ == "ConstrainedLayoutEngine"


def test_a_split_without_images_draws_nothing_for_it(figures):
    features = {name: np.arange(3, dtype=np.float64) for name in FEATURE_NAMES}
    features["split"] = np.array(["train"] * 3)
    fig = explore.feature_distributions_png(features)
    assert [p.get_label() for p in fig.axes[0].patches] == ["train"]
    assert len(fig.axes[0].patches[0].get_path().vertices) == 82  # 40 bins by default: a step outline of 82 points


def evaluation(predicted):
    labels = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    return classification_report(labels, np.asarray(predicted), list(CLASS_NAMES))


def test_metrics_side_by_side_puts_the_new_model_the_champion_and_its_record_in_columns():
    new = evaluation([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    champ = explore.Champion("v3", "gs://m/v3", {"accuracy": 0.75}, "d1", np.zeros((10, 10)), evaluation([0] * 10))
    lines = explore.metrics_side_by_side(new, champ).splitlines()
    assert lines[0] == "| metric | new (smoke) | champion v3 | champion, as registered |"
    assert lines[2] == "| accuracy | 1.0000 | 0.1000 | 0.7500 |"
    assert lines[3].startswith("| macro_precision | 1.0000 |") and lines[3].endswith("| - |")
    assert [line.split(" | ")[0] for line in lines[2:6]] == [f"| {m}" for m in explore.METRICS]
    assert lines[6] == "| F1 T-shirt/top | 1.0000 | 0.1818 | - |"
    assert lines[7] == "| F1 Trouser | 1.0000 | 0.0000 | - |" and len(lines) == 16


def test_the_disagreements_figure_captions_each_image_and_counts_them(figures):
    images = np.arange(4 * 4, dtype=np.uint8).reshape(4, 2, 2)
    labels, new, champ = np.array([0, 1, 2, 3]), np.array([0, 5, 2, 9]), np.array([0, 1, 2, 8])
    fig = explore.disagreements_png(images, labels, new, champ)
    assert fig.get_suptitle() == "2 of 4 test images where the new model and the champion disagree"
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["true Trouser\nnew Sandal\nchamp Trouser", "true Dress\nnew Ankle boot\nchamp Bag"]
    shown = [ax.images[0].get_array().tolist() for ax in fig.axes if ax.images]
    assert shown == [images[1].tolist(), images[3].tolist()]
    limited = explore.disagreements_png(images, labels, new, champ, limit=1)
    assert [ax.get_title() for ax in limited.axes if ax.get_title()] == titles[:1]


def test_the_image_grid_has_eight_columns_and_draws_raw_pixels_in_grey(figures):
    fig = explore.image_grid_png(np.full((9, 2, 2), 50, np.uint8), [str(i) for i in range(9)], "t")
    assert len(fig.axes) == 16 and tuple(fig.get_size_inches()) == pytest.approx((8 * 1.4, 2 * 1.7))
    assert not any(ax.axison for ax in fig.axes)
    image = fig.axes[0].images[0]
    assert image.get_cmap().name == "gray_r" and image.get_clim() == (0, 255)
    assert fig.axes[8].get_title() == "8" and fig.axes[0].title.get_fontsize() == 7
    empty = explore.image_grid_png(np.zeros((0, 2, 2), np.uint8), [], "none", cols=3)
    assert len(empty.axes) == 3 and tuple(empty.get_size_inches()) == pytest.approx((3 * 1.4, 1.7))
    assert len(explore.image_grid_png(np.zeros((0, 2, 2), np.uint8), [], "none", cols=1).axes) == 1


def test_the_disagreements_figure_shows_24_images_by_default(figures):
    images, labels = np.zeros((30, 2, 2), np.uint8), np.zeros(30, np.int64)
    fig = explore.disagreements_png(images, labels, labels, labels + 1)
    assert sum(bool(ax.images) for ax in fig.axes) == 24
    assert fig.get_suptitle() == "30 of 30 test images where the new model and the champion disagree"


def test_predictions_figure_captions_the_answer_its_probability_and_the_truth(figures):
    predictions = [{"label": "Bag", "probabilities": [0.1, 0.875]}, {"label": "Coat", "probabilities": None}]
    fig = explore.predictions_png(np.zeros((2, 2, 2), np.uint8), predictions, np.array([8, 0]))
    assert [ax.get_title() for ax in fig.axes[:2]] == ["Bag 0.88\n(true Bag)", "Coat 0.00\n(true T-shirt/top)"]
    assert fig.get_suptitle() == "Predictions from the service"
    bare = explore.predictions_png(np.zeros((1, 2, 2), np.uint8), predictions[:1])
    assert bare.axes[0].get_title() == "Bag 0.88"


def test_drift_table_lists_each_feature_and_the_predicted_classes():
    report = {
        "status": "ok",
        "threshold": 0.2,
        "features": {"ink_fraction": {"psi": 0.31, "drifted": True}, "bbox_width": {"psi": 0.01, "drifted": False}},
        "classes": {"psi": 0.05, "drifted": False},
    }
    assert explore.drift_table(report).splitlines() == [
        "| feature | PSI (threshold 0.2) | drifted |",
        "|---|---|---|",
        "| ink_fraction | 0.3100 | yes |",
        "| bbox_width | 0.0100 | no |",
        "| predicted_class | 0.0500 | no |",
    ]
    assert explore.drift_table({**report, "classes": {"psi": 0.5, "drifted": True}}).endswith("| 0.5000 | yes |")
    assert explore.drift_table({"status": "empty"}) == "drift status **empty**: "


def test_train_smoke_trains_the_smoke_preset_afresh_and_times_it(monkeypatch):
    import trainer.api

    calls = []
    monkeypatch.setattr(trainer.api, "train_preset", lambda *args, **kwargs: calls.append((args, kwargs)) or "result")
    result, seconds = explore.train_smoke("settings", "dataset")
    assert result == "result" and 0 <= seconds < 5
    assert calls == [(("settings", "dataset", "smoke"), {"fresh": True, "verbose": 2})]
    explore.train_smoke("settings", "dataset", verbose=0)
    assert calls[1][1] == {"fresh": True, "verbose": 0}


def tiny_onnx(favoured: int) -> bytes:
    """A softmax over pixels @ w, where only `favoured`'s column is non-zero: any inked image is that class."""
    weights = np.zeros((784, 10), np.float32)
    weights[:, favoured] = 0.001
    return linear_softmax_onnx(weights)


@pytest.mark.slow  # ONNX Runtime and the registry: this module takes ~10 s
def test_champion_on_runs_the_aliased_versions_onnx_artifact_on_the_images(tmp_path):
    from trainer.models.registry import SOURCES, ModelRegistry

    settings = load_config("local", environ={"FMNIST_STORAGE_ROOT": str(tmp_path / "mlops")})
    registry = ModelRegistry.from_settings(settings)
    champion = registry.register(
        {"model.onnx": tiny_onnx(3)}, {"accuracy": 0.5}, SOURCES[0], dataset_version="d7", alias="champion"
    )
    candidate = registry.register({"model.onnx": tiny_onnx(8)}, {"accuracy": 0.9}, SOURCES[0], dataset_version=None)
    images = np.stack([np.full((28, 28), 100, np.uint8), np.zeros((28, 28), np.uint8)])  # inked, then blank
    labels = np.array([3, 4])
    seen = explore.champion_on(settings, images, labels)
    assert seen is not None
    assert (seen.version, seen.model_dir) == (champion, registry.version_uri(champion))
    assert (seen.recorded, seen.dataset_version) == ({"accuracy": 0.5}, "d7")
    logits = np.zeros(10)
    logits[3] = 784 * 100 * 0.001
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(seen.probabilities, [expected, np.full(10, 0.1)], rtol=1e-4, atol=1e-6)
    assert seen.evaluation.metrics["accuracy"] == 0.5 and seen.evaluation.class_names == list(CLASS_NAMES)
    assert seen.evaluation.per_class[3]["recall"] == 1.0 and seen.evaluation.confusion[4, 0] == 1
    other = explore.champion_on(settings, images, labels, alias="candidate")
    assert other is not None and other.version == candidate and other.probabilities.argmax(axis=1).tolist() == [8, 0]
    assert explore.champion_on(settings, images, labels, alias="previous") is None
