"""`python -m trainer analyze`: what is in a dataset version, written as JSON + Markdown + PNGs to the dev bucket.

Why these sections: class balance decides whether accuracy is a fair headline metric; pixel statistics and class
mean images show what the model sees; outliers and exact duplicates (within and across train/test) are the data
problems that silently inflate or distort test accuracy.

Outlier method (documented in the report): for each image, the Euclidean distance (pixels scaled to 0-1) to the
mean image of its own class; an image is an outlier when that distance lies beyond its class's Tukey "far out"
fence, Q3 + 3 * IQR of the class's distances. Per class, because a sandal and a coat differ by far more than a
typical coat from another coat. Exact duplicates: byte-identical 28x28 pixel arrays.
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

import numpy as np

import storage
from contracts.dataset import CLASS_NAMES, IMAGE_SHAPE, NUM_CLASSES
from trainer.data.dataset import Dataset

SEED_OUTLIER_PERCENT = 0.06  # what the seed project reported among 70,000 images
FENCE_IQR = 3.0
TOP_OUTLIERS = 24
SPLITS = ("train", "test")


def _splits(dataset: Dataset):
    return {"train": (dataset.x_train, dataset.y_train), "test": (dataset.x_test, dataset.y_test)}


def _image_id(split: str, index: int) -> str:
    return f"{split}-{index:05d}"  # the same ids as the feature table (trainer/feature_schema.py)


# ---- sections ---------------------------------------------------------------------------------------------------


def class_balance(dataset: Dataset) -> dict[str, Any]:
    out = {}
    for split, (_, labels) in _splits(dataset).items():
        counts = np.bincount(labels, minlength=NUM_CLASSES)
        out[split] = {
            "counts": counts.tolist(),
            "proportions": [round(float(p), 6) for p in counts / counts.sum()],
            "imbalance_ratio": round(float(counts.max() / max(counts.min(), 1)), 4),
        }
    return out


def _histogram_stats(hist: np.ndarray) -> dict[str, float]:
    levels = np.arange(256)
    total = hist.sum()
    mean = float((hist * levels).sum() / total)
    std = float(np.sqrt((hist * (levels - mean) ** 2).sum() / total))
    cdf = np.cumsum(hist)
    median = int(np.searchsorted(cdf, total / 2))
    return {
        "mean": round(mean, 4),
        "std": round(std, 4),
        "median": median,
        "zero_fraction": round(float(hist[0] / total), 6),
        "saturated_fraction": round(float(hist[255] / total), 6),
    }


def pixel_statistics(dataset: Dataset) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Intensity statistics (0-255) per split from exact 256-bin histograms, plus mean intensity per class."""
    stats, hists = {}, {}
    for split, (images, labels) in _splits(dataset).items():
        hist = np.bincount(images.reshape(-1), minlength=256)
        hists[split] = hist
        per_image = images.reshape(len(images), -1).mean(axis=1)
        per_class = np.bincount(labels, weights=per_image, minlength=NUM_CLASSES) / np.maximum(
            np.bincount(labels, minlength=NUM_CLASSES), 1
        )
        stats[split] = {
            **_histogram_stats(hist),
            "mean_by_class": {CLASS_NAMES[c]: round(float(per_class[c]), 3) for c in range(NUM_CLASSES)},
        }
    return stats, hists


def class_mean_images(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean image per class, float32 [10, 28, 28] on the 0-1 scale (zeros for an absent class)."""
    flat = images.reshape(len(images), -1).astype(np.float32) / 255
    onehot = np.eye(NUM_CLASSES, dtype=np.float32)[labels]
    counts = np.maximum(onehot.sum(axis=0), 1)
    return ((onehot.T @ flat) / counts[:, None]).reshape(NUM_CLASSES, *IMAGE_SHAPE)


def distances_to_class_mean(images: np.ndarray, labels: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Euclidean distance of each image (0-1 scale) to its class's mean image, via ||x||^2 - 2 x.m + ||m||^2."""
    flat = images.reshape(len(images), -1).astype(np.float32) / 255
    m = means.reshape(NUM_CLASSES, -1)
    own = m[labels]
    sq = (flat * flat).sum(axis=1) - 2 * np.einsum("ij,ij->i", flat, own) + (m * m).sum(axis=1)[labels]
    return np.sqrt(np.maximum(sq, 0))


def find_outliers(images: np.ndarray, labels: np.ndarray, ids: list[str], means: np.ndarray) -> dict[str, Any]:
    """Per-class Tukey far-out fence on distance to the class mean; also the counts other common rules give."""
    dist = distances_to_class_mean(images, labels, means)
    n = len(labels)
    flags = np.zeros(n, dtype=bool)
    score = np.zeros(n)  # distance / fence: > 1 means outlier
    rules = {
        "Q3 + 1.5 IQR (Tukey inner fence)": np.zeros(n, bool),
        "modified z > 3.5 (Iglewicz-Hoaglin)": np.zeros(n, bool),
        "z > 4": np.zeros(n, bool),
    }
    per_class = []
    for c in range(NUM_CLASSES):
        mask = labels == c
        if not mask.any():
            per_class.append(0)
            continue
        d = dist[mask]
        q1, median, q3 = np.percentile(d, [25, 50, 75])
        fence = q3 + FENCE_IQR * (q3 - q1)
        flags[mask] = d > fence
        score[mask] = d / fence if fence > 0 else 0
        per_class.append(int((d > fence).sum()))
        rules["Q3 + 1.5 IQR (Tukey inner fence)"][mask] = d > q3 + 1.5 * (q3 - q1)
        mad = np.median(np.abs(d - median))
        rules["modified z > 3.5 (Iglewicz-Hoaglin)"][mask] = 0.6745 * (d - median) / max(mad, 1e-12) > 3.5
        rules["z > 4"][mask] = (d - d.mean()) / max(d.std(), 1e-12) > 4
    count = int(flags.sum())
    percent = 100 * count / n
    farthest = np.argsort(-score)[:TOP_OUTLIERS]
    top = farthest[:count]
    return {
        "method": (
            "per class: Euclidean distance (pixels 0-1) from each image to its class's mean image; outlier "
            f"when beyond Q3 + {FENCE_IQR:g} * IQR of that class's distances (Tukey far-out fence)"
        ),
        "count": count,
        "total": n,
        "percent": round(percent, 4),
        "per_class": {CLASS_NAMES[c]: per_class[c] for c in range(NUM_CLASSES)},
        "seed_project_percent": SEED_OUTLIER_PERCENT,
        "comparison": (
            f"{percent:.2f}% here vs {SEED_OUTLIER_PERCENT}% in the seed project "
            f"({percent / SEED_OUTLIER_PERCENT:.1f}x); the figure depends mostly on the rule and threshold "
            "(see sensitivity), so the two agree only that outliers are a small fraction"
        ),
        "sensitivity_percent": {rule: round(100 * float(f.mean()), 4) for rule, f in rules.items()},
        "top": [
            {
                "image_id": ids[i],
                "label": int(labels[i]),
                "class": CLASS_NAMES[labels[i]],
                "distance": round(float(dist[i]), 4),
                "distance_over_fence": round(float(score[i]), 4),
            }
            for i in top
        ],
        "_farthest": [(int(i), float(score[i])) for i in farthest],
    }


def find_duplicates(dataset: Dataset) -> dict[str, Any]:
    """Groups of byte-identical images, counted within train, within test and across the two splits."""
    groups: dict[bytes, list[tuple[str, int]]] = {}
    for split, (images, _) in _splits(dataset).items():
        for i, image in enumerate(images):
            groups.setdefault(image.tobytes(), []).append((split, i))
    dup_groups = [g for g in groups.values() if len(g) > 1]
    labels = {split: lab for split, (_, lab) in _splits(dataset).items()}
    summary: dict[str, Any] = {"method": "byte-identical 28x28 pixel arrays (exact duplicates)"}
    for split in SPLITS:
        members = [[m for m in g if m[0] == split] for g in dup_groups]
        members = [m for m in members if len(m) > 1]
        summary[f"within_{split}"] = {
            "groups": len(members),
            "images": sum(len(m) for m in members),
            "redundant_copies": sum(len(m) - 1 for m in members),
        }
    across = [g for g in dup_groups if {m[0] for m in g} == set(SPLITS)]
    summary["across_splits"] = {
        "groups": len(across),
        "test_images_also_in_train": sum(1 for g in across for m in g if m[0] == "test"),
    }
    conflicts = [g for g in dup_groups if len({int(labels[s][i]) for s, i in g}) > 1]
    summary["label_conflicts"] = len(conflicts)
    summary["examples"] = [
        {"images": [_image_id(s, i) for s, i in g], "labels": [int(labels[s][i]) for s, i in g]}
        for g in (conflicts + [g for g in dup_groups if g not in conflicts])[:20]
    ]
    return summary


# ---- figures ----------------------------------------------------------------------------------------------------


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _figures(balance, hists, means, outlier_images, outlier_captions) -> dict[str, bytes]:
    from matplotlib.figure import Figure  # no pyplot: Agg rendering, no display, no global state

    figures = {}
    fig = Figure(figsize=(9, 3.5))
    ax = fig.subplots()
    x = np.arange(NUM_CLASSES)
    for offset, split in ((-0.2, "train"), (0.2, "test")):
        ax.bar(x + offset, balance[split]["proportions"], width=0.4, label=split)
    ax.set_xticks(x, CLASS_NAMES, rotation=30, ha="right")
    ax.set_ylabel("share of split")
    ax.set_title("Class balance per split")
    ax.set_ylim(0, 1.25 * max(max(balance[s]["proportions"]) for s in SPLITS))
    ax.legend(ncol=2, loc="upper right")
    figures["class_balance.png"] = _png(fig)

    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
    for split, hist in hists.items():
        ax.plot(np.arange(256), hist / hist.sum(), label=split)
    ax.set_yscale("log")
    ax.set_xlabel("pixel value")
    ax.set_ylabel("share of pixels (log)")
    ax.set_title("Pixel intensity distribution")
    ax.legend()
    figures["pixel_histogram.png"] = _png(fig)

    fig = Figure(figsize=(10, 4.5))
    for c, ax in enumerate(fig.subplots(2, 5).ravel()):
        ax.imshow(means[c], cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(CLASS_NAMES[c], fontsize=9)
        ax.axis("off")
    fig.suptitle("Mean image per class (train + test)")
    figures["mean_images.png"] = _png(fig)

    if len(outlier_images):  # empty only for a dataset without images
        cols = 8
        rows = (len(outlier_images) + cols - 1) // cols
        fig = Figure(figsize=(cols * 1.3, rows * 1.5))
        axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
        for ax in axes:
            ax.axis("off")
        for ax, image, caption in zip(axes, outlier_images, outlier_captions, strict=False):
            ax.imshow(image, cmap="gray_r", vmin=0, vmax=255)
            ax.set_title(caption, fontsize=7)
        fig.suptitle("Images farthest from their class mean (distance / fence; * = outlier, beyond the fence)")
        figures["outliers.png"] = _png(fig)
    return figures


# ---- report -----------------------------------------------------------------------------------------------------


def analyze(dataset: Dataset) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The report (JSON-ready dict) and its figures (name -> PNG bytes) for one dataset version."""
    start = time.perf_counter()
    balance = class_balance(dataset)
    pixels, hists = pixel_statistics(dataset)
    images = np.concatenate([dataset.x_train, dataset.x_test])
    labels = np.concatenate([dataset.y_train, dataset.y_test])
    ids = [_image_id("train", i) for i in range(len(dataset.y_train))] + [
        _image_id("test", i) for i in range(len(dataset.y_test))
    ]
    means = class_mean_images(images, labels)
    outliers = find_outliers(images, labels, ids, means)
    farthest = outliers.pop("_farthest")
    duplicates = find_duplicates(dataset)
    mean_distance = np.sqrt(((means[:, None] - means[None]) ** 2).sum(axis=(2, 3)))
    pairs = sorted((float(mean_distance[a, b]), a, b) for a in range(NUM_CLASSES) for b in range(a + 1, NUM_CLASSES))
    report = {
        "dataset_version": dataset.version,
        "dataset_hash": dataset.manifest.get("hash"),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "counts": {"train": int(len(dataset.y_train)), "test": int(len(dataset.y_test))},
        "class_balance": balance,
        "pixel_statistics": pixels,
        "closest_class_means": [
            {"classes": [CLASS_NAMES[a], CLASS_NAMES[b]], "distance": round(d, 3)} for d, a, b in pairs[:5]
        ],
        "outliers": outliers,
        "duplicates": duplicates,
    }
    captions = [f"{CLASS_NAMES[labels[i]]}\n{ids[i]} ({s:.2f}{'*' if s > 1 else ''})" for i, s in farthest]
    figures = _figures(balance, hists, means, images[[i for i, _ in farthest]], captions)
    report["figures"] = sorted(f"figures/{name}" for name in figures)
    report["seconds"] = round(time.perf_counter() - start, 2)
    return report, figures


def render_markdown(report: dict[str, Any]) -> str:
    """A human-readable version of the JSON report, with the figures linked."""
    r = report
    lines = [
        f"# Fashion-MNIST dataset analysis — {r['dataset_version']}",
        "",
        f"{r['counts']['train']:,} train and {r['counts']['test']:,} test images; dataset hash `{r['dataset_hash']}`.",
        "",
        "## Class balance",
        "",
        "| class | train | test |",
        "|---|---:|---:|",
    ]
    for c, name in enumerate(CLASS_NAMES):
        lines.append(
            f"| {name} | {r['class_balance']['train']['counts'][c]:,} | {r['class_balance']['test']['counts'][c]:,} |"
        )
    lines += [
        "",
        f"Imbalance ratio (largest / smallest class): train {r['class_balance']['train']['imbalance_ratio']}, "
        f"test {r['class_balance']['test']['imbalance_ratio']}.",
        "",
        "![class balance](figures/class_balance.png)",
        "",
        "## Pixel intensity (0-255)",
        "",
        "| split | mean | std | median | zero pixels | 255 pixels |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for split in SPLITS:
        p = r["pixel_statistics"][split]
        lines.append(
            f"| {split} | {p['mean']:.2f} | {p['std']:.2f} | {p['median']} | {100 * p['zero_fraction']:.1f}% "
            f"| {100 * p['saturated_fraction']:.2f}% |"
        )
    lines += [
        "",
        "![pixel histogram](figures/pixel_histogram.png)",
        "",
        "## Class mean images",
        "",
        "Closest class means (most easily confused on average): "
        + "; ".join(f"{' / '.join(p['classes'])} ({p['distance']})" for p in r["closest_class_means"])
        + ".",
        "",
        "![mean images](figures/mean_images.png)",
        "",
        "## Outliers",
        "",
        f"Method: {r['outliers']['method']}.",
        "",
        f"**{r['outliers']['count']:,} outliers of {r['outliers']['total']:,} images "
        f"({r['outliers']['percent']:.2f}%).** {r['outliers']['comparison']}.",
        "",
        "| rule | share flagged |",
        "|---|---:|",
        f"| Q3 + {FENCE_IQR:g} IQR (this report) | {r['outliers']['percent']:.2f}% |",
    ]
    lines += [f"| {rule} | {pct:.2f}% |" for rule, pct in r["outliers"]["sensitivity_percent"].items()]
    lines += ["", "Per class: " + ", ".join(f"{k} {v}" for k, v in r["outliers"]["per_class"].items()) + "."]
    if "figures/outliers.png" in r["figures"]:
        lines += ["", "![outliers](figures/outliers.png)"]
    d = r["duplicates"]
    lines += [
        "",
        "## Exact duplicates",
        "",
        f"Method: {d['method']}.",
        "",
        f"- within train: {d['within_train']['groups']} groups, "
        f"{d['within_train']['redundant_copies']} redundant copies",
        f"- within test: {d['within_test']['groups']} groups, {d['within_test']['redundant_copies']} redundant copies",
        f"- across splits: {d['across_splits']['groups']} groups; {d['across_splits']['test_images_also_in_train']} "
        "test images also appear in train",
        f"- groups whose copies carry different labels: {d['label_conflicts']}",
    ]
    if d["examples"]:
        lines += [
            "",
            "Examples: " + "; ".join(f"{', '.join(e['images'])} (labels {e['labels']})" for e in d["examples"][:10]),
        ]
    return "\n".join(lines) + "\n"


def report_uri(settings, version: str) -> str:
    return storage.join(settings.dev_bucket, "analysis", version)


def add_arguments(parser) -> None:
    parser.add_argument("--version", help="dataset version (default: LATEST in the datasets bucket)")


def run(args, settings) -> int:
    from trainer.data.dataset import load_dataset

    dataset = load_dataset(settings, args.version)
    report, figures = analyze(dataset)
    base = report_uri(settings, dataset.version)
    for name, png in figures.items():
        storage.write_bytes(storage.join(base, "figures", name), png, content_type="image/png")
    storage.write_text(storage.join(base, "report.md"), render_markdown(report), content_type="text/markdown")
    storage.write_text(
        storage.join(base, "report.json"), json.dumps(report, indent=2) + "\n", content_type="application/json"
    )
    o, d = report["outliers"], report["duplicates"]
    print(
        f"analysis of {dataset.version} written to {base} (report.json, report.md, {len(figures)} figures) "
        f"in {report['seconds']} s: {o['count']} outliers ({o['percent']:.2f}%, seed project {SEED_OUTLIER_PERCENT}%); "
        f"exact duplicates: {d['within_train']['redundant_copies']} within train, "
        f"{d['within_test']['redundant_copies']} within test, {d['across_splits']['test_images_also_in_train']} "
        f"test images also in train"
    )
    return 0
