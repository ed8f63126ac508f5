"""Dataset analysis on generated data with planted outliers and duplicates whose counts are known."""

import argparse
import json

import numpy as np
import pytest

import storage
from contracts.dataset import CLASS_NAMES
from tests.conftest import make_images
from trainer.data import analyze as analysis
from trainer.data import ingest
from trainer.data.dataset import Dataset

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def dataset_with_known_problems() -> tuple[Dataset, list[str]]:
    """300 train / 100 test images; planted: 3 outliers, duplicates within train, within test, across, one conflict."""
    y_train = (np.arange(300) % 10).astype(np.uint8)
    y_test = (np.arange(100) % 10).astype(np.uint8)
    x_train, x_test = make_images(y_train, seed=11), make_images(y_test, seed=12)
    outliers = []
    for size, index in enumerate((0, 10, 25)):  # classes 0, 0, 5: a solid white square is far from any class mean
        x_train[index] = 0
        x_train[index, 2 : 24 + size, 2:26] = 255
        outliers.append(f"train-{index:05d}")
    x_train[101] = x_train[100]
    y_train[101] = y_train[100]  # within train (same label)
    x_train[102] = x_train[100]
    y_train[102] = y_train[100]  # ... a group of three: 2 redundant copies
    x_test[51] = x_test[50]
    y_test[51] = y_test[50]  # within test
    x_test[60] = x_train[200]  # across splits, same label (both class 0)
    x_test[61] = x_train[201]  # across splits, label 1 in train ...
    y_test[61] = 7  # ... but 7 in test: a label conflict
    return Dataset(x_train, y_train, x_test, y_test, "v-test00000000", {"hash": "0" * 64}), outliers


@pytest.fixture(scope="module")
def analyzed():
    dataset, outliers = dataset_with_known_problems()
    report, figures = analysis.analyze(dataset)
    return dataset, outliers, report, figures


def test_class_balance_counts_per_split(analyzed):
    dataset, _, report, _ = analyzed
    assert report["class_balance"]["train"]["counts"] == np.bincount(dataset.y_train, minlength=10).tolist()
    assert report["class_balance"]["test"]["counts"][1] == 8 and report["class_balance"]["test"]["counts"][7] == 11
    assert report["class_balance"]["test"]["imbalance_ratio"] == pytest.approx(11 / 8, abs=1e-4)


def test_pixel_statistics_match_numpy(analyzed):
    dataset, _, report, _ = analyzed
    stats = report["pixel_statistics"]["train"]
    assert stats["mean"] == pytest.approx(dataset.x_train.mean(), abs=1e-3)
    assert stats["std"] == pytest.approx(dataset.x_train.std(), abs=1e-3)
    assert stats["median"] == int(np.median(dataset.x_train))
    assert stats["zero_fraction"] == pytest.approx((dataset.x_train == 0).mean(), abs=1e-6)
    assert set(stats["mean_by_class"]) == set(CLASS_NAMES)


def test_planted_outliers_are_found_and_compared_with_the_seed_figure(analyzed):
    _, planted, report, _ = analyzed
    outliers = report["outliers"]
    flagged = {entry["image_id"] for entry in outliers["top"]}
    assert set(planted) <= flagged
    assert len(outliers["top"]) == min(outliers["count"], analysis.TOP_OUTLIERS)
    assert 3 <= outliers["count"] <= 8  # the synthetic images are otherwise alike
    assert outliers["percent"] == pytest.approx(100 * outliers["count"] / 400, abs=1e-4)
    assert outliers["per_class"]["T-shirt/top"] >= 2 and outliers["per_class"]["Sandal"] >= 1
    assert outliers["seed_project_percent"] == 0.06 and "0.06%" in outliers["comparison"]
    assert "Q3 + 3 * IQR" in outliers["method"]


def test_exact_duplicates_within_and_across_splits(analyzed):
    _, _, report, _ = analyzed
    d = report["duplicates"]
    assert d["within_train"] == {"groups": 1, "images": 3, "redundant_copies": 2}
    assert d["within_test"] == {"groups": 1, "images": 2, "redundant_copies": 1}
    assert d["across_splits"] == {"groups": 2, "test_images_also_in_train": 2}
    assert d["label_conflicts"] == 1
    assert d["examples"][0] == {"images": ["train-00201", "test-00061"], "labels": [1, 7]}


def test_figures_are_pngs_and_markdown_links_them(analyzed):
    _, _, report, figures = analyzed
    assert set(figures) == {"class_balance.png", "pixel_histogram.png", "mean_images.png", "outliers.png"}
    assert all(png.startswith(PNG_MAGIC) for png in figures.values())
    markdown = analysis.render_markdown(report)
    for name in figures:
        assert f"(figures/{name})" in markdown
    assert "seed project" in markdown and "label_conflicts" not in markdown
    json.dumps(report)


def test_analyze_command_writes_report_into_the_dev_bucket(settings, idx_dir, capsys):
    version = ingest.ingest(settings, ingest.Source("directory", str(idx_dir)))
    assert analysis.run(argparse.Namespace(version=None), settings) == 0
    base = analysis.report_uri(settings, version)
    names = sorted(uri[len(base) + 1 :] for uri in storage.list_uris(base))
    assert names == [
        "figures/class_balance.png",
        "figures/mean_images.png",
        "figures/outliers.png",
        "figures/pixel_histogram.png",
        "report.json",
        "report.md",
    ]
    report = json.loads(storage.read_text(storage.join(base, "report.json")))
    assert report["dataset_version"] == version and report["counts"] == {"train": 600, "test": 200}
    assert "outliers" in capsys.readouterr().out
