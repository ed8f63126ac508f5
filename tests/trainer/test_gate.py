"""The paired promotion gate on small generated predictions, with numbers worked out by hand: McNemar's exact
p-value, a per-class recall drop hidden in an unchanged accuracy, a calibration check, and a candidate identical to
the champion, which is reported as such and not promoted."""

import json

import numpy as np
import pytest

from contracts.dataset import CLASS_NAMES
from trainer.models.gate import (
    IDENTICAL,
    PROMOTE,
    REFUSE,
    GateRules,
    GateSet,
    decide,
    expected_calibration_error,
    mcnemar_exact,
)

LABELS = np.repeat(np.arange(10), 10)  # 100 images, 10 per class
SHIRT = CLASS_NAMES.index("Shirt")


def probabilities(predicted: np.ndarray, confidence: float = 0.9) -> np.ndarray:
    out = np.full((len(predicted), 10), (1 - confidence) / 9)
    out[np.arange(len(predicted)), predicted] = confidence
    return out


def wrong_at(indices) -> np.ndarray:
    predicted = LABELS.copy()
    predicted[list(indices)] = (LABELS[list(indices)] + 1) % 10
    return predicted


GATE = GateSet("official test set", LABELS, "content MD5s equal the published ones")


def test_mcnemar_exact_p_values():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(1, 9) == 2 * (1 + 10) / 1024 == 0.021484375
    assert mcnemar_exact(8, 2) == 2 * (1 + 10 + 45) / 1024 == 0.109375
    assert mcnemar_exact(5, 5) == 1.0  # capped


def test_a_candidate_significantly_worse_on_the_disagreements_is_refused():
    champion = wrong_at(range(0, 100, 10)[:1])  # wrong on 1 image
    candidate = wrong_at([*range(0, 100, 10)[1:10]])  # right where the champion was wrong, wrong on 9 others
    report = decide("cand", "champ", [(GATE, probabilities(candidate), probabilities(champion))], GateRules(0.05, 1, 1))
    (s,) = report.sets
    assert (s.only_candidate_right, s.only_champion_right, s.mcnemar_p) == (1, 9, 0.021484375)
    assert report.decision == REFUSE and "exact McNemar" in report.reasons[0] and "p = 0.0215" in report.reasons[0]


def test_a_drop_in_shirt_recall_cannot_hide_in_the_mean():
    shirts = np.flatnonzero(LABELS == SHIRT)[:3]
    champion = wrong_at([0, 10, 20])  # three errors elsewhere
    candidate = wrong_at(shirts)  # as many errors, all on Shirt: same accuracy, McNemar p = 1
    report = decide("cand", "champ", [(GATE, probabilities(candidate), probabilities(champion))])
    (s,) = report.sets
    assert (s.candidate_accuracy, s.champion_accuracy, s.mcnemar_p) == (0.97, 0.97, 1.0)
    assert s.recall_drops == {"Shirt": 0.3}
    assert s.per_class["Shirt"] == {
        "images": 10,
        "candidate_correct": 7,
        "champion_correct": 10,
        "candidate_recall": 0.7,
        "champion_recall": 1.0,
    }
    assert s.per_class["T-shirt/top"]["champion_correct"] == 9  # the champion's error at image 0
    assert "| Shirt | 10 | 7 | 10 | 0.7000 | 1.0000 |" in report.to_markdown()
    assert report.decision == REFUSE and report.reasons == [
        "official test set: recall of Shirt drops by 0.3000, more than the margin 0.02"
    ]


def test_an_overconfident_candidate_fails_the_calibration_check():
    predicted = wrong_at(range(0, 100, 10))  # 90 % right
    assert expected_calibration_error(probabilities(predicted, 0.9), LABELS) == pytest.approx(0.0, abs=1e-12)
    assert expected_calibration_error(probabilities(predicted, 0.99), LABELS) == pytest.approx(0.09)
    report = decide("cand", "champ", [(GATE, probabilities(predicted, 0.99), probabilities(predicted, 0.9))])
    assert report.decision == REFUSE and "calibration error 0.0900 exceeds the champion's 0.0000" in report.reasons[0]


def test_a_candidate_identical_on_every_gate_image_is_not_promoted_again():
    predicted = wrong_at([5, 15])
    split = GateSet("candidate test split v-new", LABELS[:50], "the candidate's own new test split")
    report = decide(
        "cand",
        "champ",
        [
            (GATE, probabilities(predicted, 0.91), probabilities(predicted, 0.9)),  # other probabilities, same classes
            (split, probabilities(predicted[:50]), probabilities(predicted[:50])),
        ],
    )
    assert report.decision == IDENTICAL
    assert report.reasons == [
        "the candidate predicts the champion's class on all 150 gate images: nothing new to promote (not promoted "
        "again)"
    ]
    assert "**Decision: identical**" in report.to_markdown()


def test_a_better_candidate_is_promoted_and_the_report_says_why():
    champion, candidate = wrong_at([0, 10, 20, 30]), wrong_at([0])
    # each as confident as it is accurate (ECE 0 for both), so only the paired rules speak
    report = decide("cand", "champ", [(GATE, probabilities(candidate, 0.99), probabilities(champion, 0.96))])
    assert report.decision == PROMOTE
    assert report.reasons == ["not worse on any rule (official test set: 0.9900 vs 0.9600, McNemar p = 0.25)"]
    document = json.loads(report.to_json())
    assert document["sets"][0]["only_candidate_right"] == 3 and document["sets"][0]["only_champion_right"] == 0
    assert document["sets"][0]["per_class"]["Trouser"]["candidate_recall"] == 1.0  # the champion missed image 10
    assert document["sets"][0]["per_class"]["Trouser"]["champion_recall"] == 0.9
    markdown = report.to_markdown()
    assert "| official test set | 100 | 0.9900 | 0.9600 | 3 | 0 | 3 | 0.25 |" in markdown


def test_mismatched_predictions_are_an_error_naming_the_set():
    with pytest.raises(ValueError, match="official test set"):
        decide("c", "d", [(GATE, probabilities(LABELS[:10]), probabilities(LABELS))])
    with pytest.raises(ValueError, match="at least one gate set"):
        decide("c", "d", [])
