"""The promotion gate on pinned data: candidate and champion scored on the same images, compared pairwise.

Why not the registry's stored accuracies: each was measured on the test split of its own dataset version, so a
candidate trained on a new drop was compared with a champion measured on other images, and a drop with a matching
test split could carry a poisoned model through. Here both models predict the same gate sets (the official test
set, pinned by its published checksums, which no uploader can change; plus the candidate's own test split when it
is new) and the gate decides on:
- an exact McNemar test on the images the two disagree on (b: only the candidate right, c: only the champion
  right; two-sided binomial p on min(b, c) of b + c at 1/2): refused when the candidate is worse (c > b) with
  p < alpha. A plain accuracy difference ignores that both models got most images right together;
- per-class recall non-inferiority: no class may lose more than `recall_margin` (a drop in Shirt must not hide in
  the mean);
- calibration: the candidate's expected calibration error (15 equal-width confidence bins) may exceed the
  champion's by at most `calibration_tolerance` (the service reports probabilities, not just classes);
- identity: a candidate that predicts the champion's class on every gate image has nothing new to promote.
The report (JSON + Markdown) says which rule decided and with which numbers.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from contracts.dataset import CLASS_NAMES

PROMOTE, REFUSE, IDENTICAL = "promote", "refuse", "identical"
ECE_BINS = 15


@dataclass(frozen=True)
class GateRules:
    alpha: float = 0.05  # McNemar significance for "the candidate is worse"
    recall_margin: float = 0.02  # largest per-class recall drop allowed
    calibration_tolerance: float = 0.02  # largest ECE increase allowed


@dataclass(frozen=True)
class GateSet:
    """Images both models are scored on, and why they can be trusted."""

    name: str  # "official test set" or "candidate test split <dataset version>"
    labels: np.ndarray  # int [N]
    provenance: str  # e.g. "content MD5s equal the published ones"


def checked_labels(gate_set: GateSet, n_classes: int = len(CLASS_NAMES), images: int | None = None) -> np.ndarray:
    """The set's labels as int64 class indices, or a ValueError naming the set, the problem and the fix: a label
    outside the classes would otherwise fail deep in numpy (bincount, a strict zip) with neither. Whole floats pass
    (labels read back from a float array); `images`, when given, is how many images the labels must cover."""
    labels = np.asarray(gate_set.labels)
    fix = f"a gate set needs one class index 0-{n_classes - 1} per image: fix or drop those items (or rebuild the set)"
    if labels.ndim != 1:
        raise ValueError(f"{gate_set.name}: labels of shape {labels.shape}, not one label per image; {fix}")
    if images is not None and len(labels) != images:
        raise ValueError(f"{gate_set.name}: {len(labels):,} labels for {images:,} images; {fix}")
    if labels.dtype.kind not in "iuf":
        raise ValueError(f"{gate_set.name}: labels of type {labels.dtype}, not class indices; {fix}")
    if labels.dtype.kind == "f":
        fractional = ~(np.isfinite(labels) & (labels == np.round(labels)))
        if fractional.any():
            first = int(np.flatnonzero(fractional)[0])
            raise ValueError(
                f"{gate_set.name}: {int(fractional.sum()):,} of {len(labels):,} labels are not whole numbers "
                f"(the first, {labels[first]}, at index {first}); {fix}"
            )
    outside = (labels < 0) | (labels >= n_classes)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"{gate_set.name}: {int(outside.sum()):,} of {len(labels):,} labels are outside 0-{n_classes - 1} "
            f"(the first, {labels[first]}, at index {first}); {fix}"
        )
    return labels.astype(np.int64)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: P(X <= min(b, c)) * 2 for X ~ Binomial(b + c, 1/2), capped at 1."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Weighted mean |accuracy - confidence| over equal-width bins of the top probability."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(total / len(labels))


def class_hits(predicted: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(images of each class, of which predicted right)."""
    return np.bincount(labels, minlength=n_classes), np.bincount(labels[predicted == labels], minlength=n_classes)


def recalls(predicted: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    support, hits = class_hits(predicted, labels, n_classes)
    return np.divide(hits, support, out=np.zeros(n_classes), where=support > 0)


def per_class(
    pred_candidate: np.ndarray, pred_champion: np.ndarray, labels: np.ndarray, class_names
) -> dict[str, dict[str, float | int]]:
    """Each class's images and both models' right predictions and recalls: what the recall margin judged, and
    what import-evaluation sends to Vertex AI as one slice per class."""
    support, hits_a = class_hits(pred_candidate, labels, len(class_names))
    _, hits_b = class_hits(pred_champion, labels, len(class_names))
    return {
        name: {
            "images": int(n),
            "candidate_correct": int(a),
            "champion_correct": int(b),
            "candidate_recall": round(a / n, 6) if n else 0.0,
            "champion_recall": round(b / n, 6) if n else 0.0,
        }
        for name, n, a, b in zip(class_names, support, hits_a, hits_b, strict=True)
    }


@dataclass
class SetComparison:
    """Candidate vs champion on one gate set."""

    gate_set: str
    provenance: str
    images: int
    candidate_accuracy: float
    champion_accuracy: float
    only_candidate_right: int  # McNemar b
    only_champion_right: int  # McNemar c
    disagreements: int  # images where the predicted classes differ (right or wrong)
    mcnemar_p: float
    recall_drops: dict[str, float]  # class -> champion recall - candidate recall, where positive
    candidate_ece: float
    champion_ece: float
    per_class: dict[str, dict[str, float | int]]  # class -> images, {candidate,champion}_{correct,recall}
    reasons: list[str] = field(default_factory=list)  # why this set refuses; empty when it passes


def compare_on(
    gate_set: GateSet, candidate: np.ndarray, champion: np.ndarray, rules: GateRules, class_names=CLASS_NAMES
) -> SetComparison:
    """Candidate and champion probabilities [N, classes] on `gate_set`: the numbers and the rules they break."""
    labels = checked_labels(gate_set, len(class_names))
    if candidate.shape != champion.shape or candidate.shape[0] != len(labels):
        raise ValueError(
            f"{gate_set.name}: {candidate.shape} and {champion.shape} probabilities for {len(labels)} labels"
        )
    pred_a, pred_b = candidate.argmax(axis=1), champion.argmax(axis=1)
    right_a, right_b = pred_a == labels, pred_b == labels
    b, c = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    p = mcnemar_exact(b, c)
    drops = recalls(pred_b, labels, len(class_names)) - recalls(pred_a, labels, len(class_names))
    ece_a, ece_b = expected_calibration_error(candidate, labels), expected_calibration_error(champion, labels)
    out = SetComparison(
        gate_set.name,
        gate_set.provenance,
        len(labels),
        float(right_a.mean()),
        float(right_b.mean()),
        b,
        c,
        int((pred_a != pred_b).sum()),
        p,
        {name: round(float(d), 6) for name, d in zip(class_names, drops, strict=True) if d > 0},
        round(ece_a, 6),
        round(ece_b, 6),
        per_class(pred_a, pred_b, labels, class_names),
    )
    if c > b and p < rules.alpha:
        out.reasons.append(
            f"{gate_set.name}: the candidate is worse (exact McNemar: champion alone right on {c} images, candidate "
            f"alone on {b}, p = {p:.3g} < {rules.alpha})"
        )
    for name, drop in out.recall_drops.items():
        if drop > rules.recall_margin + 1e-12:
            out.reasons.append(
                f"{gate_set.name}: recall of {name} drops by {drop:.4f}, more than the margin {rules.recall_margin}"
            )
    if ece_a > ece_b + rules.calibration_tolerance + 1e-12:
        out.reasons.append(
            f"{gate_set.name}: calibration error {ece_a:.4f} exceeds the champion's {ece_b:.4f} by more than "
            f"{rules.calibration_tolerance}"
        )
    return out


@dataclass
class GateReport:
    candidate: str
    champion: str | None
    decision: str  # PROMOTE, REFUSE or IDENTICAL
    reasons: list[str]
    sets: list[SetComparison]
    rules: GateRules

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def to_markdown(self) -> str:
        lines = [
            f"# Promotion gate: {self.candidate} vs {self.champion or 'no champion'}",
            "",
            f"**Decision: {self.decision}**",
            "",
            *(f"- {reason}" for reason in self.reasons),
            "",
            f"Rules: McNemar alpha {self.rules.alpha}, per-class recall margin {self.rules.recall_margin}, "
            f"calibration tolerance {self.rules.calibration_tolerance} (ECE, {ECE_BINS} bins).",
            "",
            "| gate set | images | candidate acc. | champion acc. | only candidate right | only champion right "
            "| disagree | McNemar p | candidate ECE | champion ECE |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for s in self.sets:
            lines.append(
                f"| {s.gate_set} | {s.images:,} | {s.candidate_accuracy:.4f} | {s.champion_accuracy:.4f} "
                f"| {s.only_candidate_right} | {s.only_champion_right} | {s.disagreements} | {s.mcnemar_p:.3g} "
                f"| {s.candidate_ece:.4f} | {s.champion_ece:.4f} |"
            )
        for s in self.sets:
            if s.recall_drops:
                drops = ", ".join(f"{k} {v:.4f}" for k, v in sorted(s.recall_drops.items()))
                lines += ["", f"Recall drops on {s.gate_set}: {drops}. Provenance: {s.provenance}."]
            else:
                lines += ["", f"No class loses recall on {s.gate_set}. Provenance: {s.provenance}."]
            lines += [
                "",
                f"| class ({s.gate_set}) | images | candidate right | champion right | candidate recall "
                "| champion recall |",
                "|---|---:|---:|---:|---:|---:|",
                *(
                    f"| {name} | {c['images']:,} | {c['candidate_correct']:,} | {c['champion_correct']:,} "
                    f"| {c['candidate_recall']:.4f} | {c['champion_recall']:.4f} |"
                    for name, c in s.per_class.items()
                ),
            ]
        return "\n".join(lines) + "\n"


def decide(
    candidate: str,
    champion: str | None,
    scored: list[tuple[GateSet, np.ndarray, np.ndarray]],
    rules: GateRules = GateRules(),
) -> GateReport:
    """The gate's decision over every gate set: (set, candidate probabilities, champion probabilities) each."""
    if not scored:
        raise ValueError("the gate needs at least one gate set (the pinned official test set)")
    sets = [compare_on(gate_set, a, b, rules) for gate_set, a, b in scored]
    reasons = [reason for s in sets for reason in s.reasons]
    if reasons:
        return GateReport(candidate, champion, REFUSE, reasons, sets, rules)
    if all(s.disagreements == 0 for s in sets):
        total = sum(s.images for s in sets)
        return GateReport(
            candidate,
            champion,
            IDENTICAL,
            [
                f"the candidate predicts the champion's class on all {total:,} gate images: nothing new to "
                "promote (not promoted again)"
            ],
            sets,
            rules,
        )
    summary = "; ".join(
        f"{s.gate_set}: {s.candidate_accuracy:.4f} vs {s.champion_accuracy:.4f}, McNemar p = {s.mcnemar_p:.3g}"
        for s in sets
    )
    return GateReport(candidate, champion, PROMOTE, [f"not worse on any rule ({summary})"], sets, rules)
