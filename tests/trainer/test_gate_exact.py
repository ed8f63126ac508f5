"""The paired gate's exact numbers and edges (found by `make mutate`'s gate group): each rule at its boundary (a
value equal to the limit passes, one over it refuses), the default rules, the calibration bins an image falls in,
the report's Markdown and JSON as a reviewer reads them, and predictions that do not fit the labels."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from tests.trainer.test_gate import GATE, LABELS, probabilities, wrong_at
from trainer.models.gate import (
    ECE_BINS,
    PROMOTE,
    REFUSE,
    GateRules,
    GateSet,
    checked_labels,
    compare_on,
    decide,
    expected_calibration_error,
)

EDGES = np.linspace(0.0, 1.0, ECE_BINS + 1)


def test_the_default_rules_are_the_documented_ones():
    assert (GateRules().alpha, GateRules().recall_margin, GateRules().calibration_tolerance) == (0.05, 0.02, 0.02)
    assert ECE_BINS == 15


def test_under_the_default_rules_a_champion_better_by_chance_does_not_refuse_the_candidate():
    labels = np.repeat(np.arange(10), 100)  # 1,000 images: one miss in a class is a recall drop of 0.01
    gate_set = GateSet("official test set", labels, "pinned")
    champion, candidate = labels.copy(), labels.copy()
    champion[[0, 100]] = 9  # the champion misses 2 images, the candidate 4 others, in four classes
    candidate[[200, 300, 400, 500]] = 9
    report = decide("cand", "champ", [(gate_set, probabilities(candidate, 0.995), probabilities(champion, 0.998))])
    (s,) = report.sets
    assert (s.only_candidate_right, s.only_champion_right, s.mcnemar_p) == (2, 4, 0.6875)
    assert s.recall_drops == {"Pullover": 0.01, "Dress": 0.01, "Coat": 0.01, "Sandal": 0.01}
    assert report.decision == PROMOTE  # p = 0.69 is no evidence that it is worse; each drop is within 0.02
    significant = decide("cand", "champ", [(gate_set, probabilities(candidate, 0.995), probabilities(labels, 0.999))])
    assert significant.decision == PROMOTE and significant.sets[0].mcnemar_p == 0.125  # 0 vs 4: p = 2/16


def test_a_p_value_equal_to_alpha_does_not_refuse():
    champion = wrong_at([0])
    candidate = wrong_at(range(10, 100, 10))  # 9 images only the champion gets right, 1 only the candidate
    scored = [(GATE, probabilities(candidate), probabilities(champion))]
    loose = GateRules(alpha=0.021484375, recall_margin=1, calibration_tolerance=1)  # exactly mcnemar_exact(1, 9)
    assert decide("cand", "champ", scored, loose).decision == PROMOTE
    strict = GateRules(alpha=0.0214844, recall_margin=1, calibration_tolerance=1)
    report = decide("cand", "champ", scored, strict)
    assert report.decision == REFUSE
    assert report.reasons == [
        "official test set: the candidate is worse (exact McNemar: champion alone right on 9 images, candidate "
        "alone on 1, p = 0.0215 < 0.0214844)"
    ]


def test_a_recall_drop_equal_to_the_margin_passes_and_one_over_it_refuses():
    candidate = wrong_at(np.flatnonzero(LABELS == 6)[:3])  # Shirt recall 1.0 -> 0.7 (0.30000000000000004 in floats)
    scored = [(GATE, probabilities(candidate), probabilities(LABELS))]
    assert decide("c", "d", scored, GateRules(alpha=0, recall_margin=0.3, calibration_tolerance=1)).decision == PROMOTE
    report = decide("c", "d", scored, GateRules(alpha=0, recall_margin=0.299999, calibration_tolerance=1))
    assert report.reasons == ["official test set: recall of Shirt drops by 0.3000, more than the margin 0.299999"]


def test_a_calibration_error_equal_to_the_tolerance_passes_and_one_over_it_refuses():
    predicted = wrong_at(range(0, 100, 10))  # 90 % right: ECE 0.01 at confidence 0.91, 0.03 at 0.93, 0.04 at 0.94
    champion = probabilities(predicted, 0.91)
    assert expected_calibration_error(probabilities(predicted, 0.93), LABELS) == pytest.approx(0.03)
    # 0.03 - 0.01 is the default tolerance 0.02 (0.020000000000000351 in floats): not more than allowed
    equal = decide("c", "d", [(GATE, probabilities(predicted, 0.93), champion)])
    assert equal.reasons[0].startswith("the candidate predicts the champion's class on all 100 gate images")
    report = decide("c", "d", [(GATE, probabilities(predicted, 0.94), champion)])
    assert report.reasons == [
        "official test set: calibration error 0.0400 exceeds the champion's 0.0100 by more than 0.02"
    ]


def _two_groups(first: float, first_right: bool, second: float, second_right: bool) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of 20 images: 10 at confidence `first`, 10 at `second`, each group all right or all wrong."""
    labels = np.zeros(20, np.int64)
    predicted = np.array([0 if first_right else 1] * 10 + [0 if second_right else 1] * 10)
    out = probabilities(predicted, 0.5)
    out[:10] = probabilities(predicted[:10], first)
    out[10:] = probabilities(predicted[10:], second)
    return out, labels


def test_each_confidence_falls_in_its_own_of_15_equal_bins_upper_edge_included():
    # 0.99 (the last bin) right, 0.9 (the one below) wrong: 0.5 * 0.01 + 0.5 * 0.9 (one bin: abs(0.5 - 0.945))
    assert expected_calibration_error(*_two_groups(0.99, True, 0.9, False)) == pytest.approx(0.455)
    # a confidence on an edge belongs to the bin below it: 9/15 right shares (8/15, 9/15] with 0.59 wrong
    on_edge = float(EDGES[9])
    assert expected_calibration_error(*_two_groups(on_edge, True, 0.59, False)) == pytest.approx(
        abs(0.5 - (on_edge + 0.59) / 2)
    )
    # 0.59 and 0.61 lie either side of 9/15: two bins of 15 (13 bins, or 15 spread over 0-2, would hold both)
    assert expected_calibration_error(*_two_groups(0.59, False, 0.61, True)) == pytest.approx(0.5 * 0.59 + 0.5 * 0.39)
    # low bins: 0.12 wrong in (1/15, 2/15], 0.25 right in (3/15, 4/15]
    assert expected_calibration_error(*_two_groups(0.12, False, 0.25, True)) == pytest.approx(0.5 * 0.12 + 0.5 * 0.75)


def test_recalls_and_drops_are_rounded_to_six_places_and_an_absent_class_reads_zero():
    labels = np.array([0, 0, 0, 1, 1, 1])
    gate_set = GateSet("three a class", labels, "hand-made")
    candidate = np.array([0, 0, 1, 1, 1, 1])  # one T-shirt/top missed
    s = compare_on(gate_set, probabilities(candidate), probabilities(labels), GateRules())
    assert s.recall_drops == {"T-shirt/top": 0.333333}
    assert s.per_class["T-shirt/top"] == {
        "images": 3,
        "candidate_correct": 2,
        "champion_correct": 3,
        "candidate_recall": 0.666667,
        "champion_recall": 1.0,
    }
    assert s.per_class["Bag"] == {
        "images": 0,
        "candidate_correct": 0,
        "champion_correct": 0,
        "candidate_recall": 0.0,
        "champion_recall": 0.0,
    }
    assert (s.images, s.disagreements, s.candidate_accuracy) == (6, 1, 5 / 6)


def test_predictions_of_the_right_shape_for_other_images_are_refused_by_name():
    ten = probabilities(LABELS[:10])
    with pytest.raises(ValueError) as raised:
        compare_on(GATE, ten, ten, GateRules())  # both models agree on a shape, but not the gate set's 100 images
    assert str(raised.value) == "official test set: (10, 10) and (10, 10) probabilities for 100 labels"


def test_every_broken_rule_of_every_set_is_a_reason_in_order():
    split = GateSet("candidate test split v9", LABELS, "dataset version v9")
    worse = wrong_at(range(0, 100, 5))  # 20 wrong, two in each class: every recall drops by 0.2
    scored = [(GATE, probabilities(worse), probabilities(LABELS)), (split, probabilities(worse), probabilities(LABELS))]
    report = decide("c", "d", scored, GateRules(0.05, 0.15, 1))
    assert report.decision == REFUSE and len(report.reasons) == 2 * 11
    assert report.reasons[0].startswith("official test set: the candidate is worse (exact McNemar: champion alone ")
    assert report.reasons[1] == "official test set: recall of T-shirt/top drops by 0.2000, more than the margin 0.15"
    assert report.reasons[11].startswith("candidate test split v9: the candidate is worse")


def test_the_report_as_a_reviewer_reads_it():
    champion, candidate = wrong_at([0, 10, 20, 30]), wrong_at([0])
    split = GateSet("candidate test split v9", LABELS[:20], "dataset version v9")
    report = decide(
        "cand",
        "champ",
        [
            (GATE, probabilities(candidate, 0.99), probabilities(champion, 0.96)),
            (split, probabilities(wrong_at([10])[:20], 0.95), probabilities(LABELS[:20], 0.95)),
        ],
        GateRules(0.05, 0.2, 0.1),
    )
    official_rows = [
        "| T-shirt/top | 10 | 9 | 9 | 0.9000 | 0.9000 |",
        "| Trouser | 10 | 10 | 9 | 1.0000 | 0.9000 |",
        "| Pullover | 10 | 10 | 9 | 1.0000 | 0.9000 |",
        "| Dress | 10 | 10 | 9 | 1.0000 | 0.9000 |",
        *(f"| {name} | 10 | 10 | 10 | 1.0000 | 1.0000 |" for name in ("Coat", "Sandal", "Shirt", "Sneaker", "Bag")),
        "| Ankle boot | 10 | 10 | 10 | 1.0000 | 1.0000 |",
    ]
    split_rows = [
        "| T-shirt/top | 10 | 10 | 10 | 1.0000 | 1.0000 |",
        "| Trouser | 10 | 9 | 10 | 0.9000 | 1.0000 |",
        *(
            f"| {name} | 0 | 0 | 0 | 0.0000 | 0.0000 |"
            for name in ("Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
        ),
    ]
    class_header = "| images | candidate right | champion right | candidate recall | champion recall |"
    assert (
        report.to_markdown()
        == "\n".join(
            [
                "# Promotion gate: cand vs champ",
                "",
                "**Decision: promote**",
                "",
                "- not worse on any rule (official test set: 0.9900 vs 0.9600, McNemar p = 0.25; candidate test split "
                "v9: 0.9500 vs 1.0000, McNemar p = 1)",
                "",
                "Rules: McNemar alpha 0.05, per-class recall margin 0.2, calibration tolerance 0.1 (ECE, 15 bins).",
                "",
                "| gate set | images | candidate acc. | champion acc. | only candidate right | only champion right "
                "| disagree | McNemar p | candidate ECE | champion ECE |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
                "| official test set | 100 | 0.9900 | 0.9600 | 3 | 0 | 3 | 0.25 | 0.0000 | 0.0000 |",
                "| candidate test split v9 | 20 | 0.9500 | 1.0000 | 0 | 1 | 1 | 1 | 0.0000 | 0.0500 |",
                "",
                "No class loses recall on official test set. Provenance: content MD5s equal the published ones.",
                "",
                f"| class (official test set) {class_header}",
                "|---|---:|---:|---:|---:|---:|",
                *official_rows,
                "",
                "Recall drops on candidate test split v9: Trouser 0.1000. Provenance: dataset version v9.",
                "",
                f"| class (candidate test split v9) {class_header}",
                "|---|---:|---:|---:|---:|---:|",
                *split_rows,
            ]
        )
        + "\n"
    )
    assert report.to_json().startswith('{\n  "candidate": "cand",\n  "champion": "champ",\n  "decision": "promote",')
    document = json.loads(report.to_json())
    assert document["rules"] == {"alpha": 0.05, "recall_margin": 0.2, "calibration_tolerance": 0.1}
    assert document["sets"][1]["recall_drops"] == {"Trouser": 0.1}
    assert document["sets"][1]["provenance"] == "dataset version v9"
    first = decide("cand", None, [(GATE, probabilities(candidate), probabilities(champion))])
    assert first.to_markdown().startswith("# Promotion gate: cand vs no champion\n")


def test_a_set_lacking_some_classes_is_judged_without_a_division_by_zero_or_unset_memory():
    labels = np.array([0, 0, 0, 1])  # eight classes absent, Trouser a single image
    gate_set = GateSet("small", labels, "hand-made")
    candidate, champion = np.array([0, 1, 1, 0]), np.array([0, 0, 1, 1])  # Trouser missed; champion 2 of 3 T-shirts
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns of 0/0 and of `where` without `out` (uninitialized recalls)
        s = compare_on(gate_set, probabilities(candidate), probabilities(champion), GateRules())
    assert s.recall_drops == {"T-shirt/top": 0.333333, "Trouser": 1.0}  # absent classes drop nothing
    assert s.per_class["T-shirt/top"]["champion_recall"] == 0.666667
    assert s.per_class["Trouser"] == {
        "images": 1,
        "candidate_correct": 0,
        "champion_correct": 1,
        "candidate_recall": 0.0,
        "champion_recall": 1.0,
    }


def test_a_refusal_and_an_identical_candidate_name_both_versions_and_every_drop():
    candidate = wrong_at([60, 61, 30])  # two Shirts and a Dress missed
    refused = decide("cand", "champ", [(GATE, probabilities(candidate), probabilities(LABELS))])
    assert (refused.candidate, refused.champion, refused.decision) == ("cand", "champ", REFUSE)
    assert "Recall drops on official test set: Dress 0.1000, Shirt 0.2000. Provenance: " in refused.to_markdown()
    same = decide("cand", "champ", [(GATE, probabilities(LABELS), probabilities(LABELS))])
    assert (same.candidate, same.champion) == ("cand", "champ")
    with pytest.raises(ValueError) as empty:
        decide("cand", "champ", [])
    assert str(empty.value) == "the gate needs at least one gate set (the pinned official test set)"


def test_the_stored_report_lists_its_keys_in_order_so_two_reports_diff_line_by_line():
    report = decide("cand", "champ", [(GATE, probabilities(wrong_at([0])), probabilities(LABELS))])
    keys = list(json.loads(report.to_json(), object_pairs_hook=lambda pairs: pairs))
    assert [key for key, _ in keys] == ["candidate", "champion", "decision", "reasons", "rules", "sets"]
    assert report.to_json().index('"Ankle boot"') < report.to_json().index('"T-shirt/top"')


def test_labels_read_back_as_floats_are_judged_as_the_same_classes():
    candidate, champion = wrong_at([0]), wrong_at([0, 10])
    as_ints = compare_on(GATE, probabilities(candidate), probabilities(champion), GateRules())
    floats = GateSet("official test set", LABELS.astype(np.float64), "labels from a float array")
    as_floats = compare_on(floats, probabilities(candidate), probabilities(champion), GateRules())
    assert as_floats.per_class == as_ints.per_class and as_floats.recall_drops == as_ints.recall_drops == {}
    assert (as_floats.only_candidate_right, as_floats.candidate_accuracy) == (1, 0.99)


def test_both_calibration_errors_are_reported_to_six_places():
    labels = np.zeros(3, np.int64)  # every image right: the calibration error is 1 - confidence
    gate_set = GateSet("thirds", labels, "hand-made")
    s = compare_on(gate_set, probabilities(labels, 2 / 3), probabilities(labels, 5 / 7), GateRules())
    assert (s.candidate_ece, s.champion_ece) == (0.333333, 0.285714)


def test_a_figure_exactly_at_the_limit_plus_the_float_tolerance_still_passes():
    # the rules refuse only what exceeds limit + 1e-12; these limits put each figure exactly there
    shirts = wrong_at(np.flatnonzero(LABELS == 6)[:3])  # Shirt recall drops by 0.3 (rounded to six places)
    margin = 0.3 - 1e-12
    assert margin + 1e-12 == 0.3
    recall = decide("c", "d", [(GATE, probabilities(shirts), probabilities(LABELS))], GateRules(1e-9, margin, 1))
    assert recall.decision == PROMOTE
    predicted = wrong_at(range(0, 100, 10))
    candidate, champion = probabilities(predicted, 0.93), probabilities(predicted, 0.91)
    increase = expected_calibration_error(candidate, LABELS) - expected_calibration_error(champion, LABELS)
    tolerance = increase - 1e-12
    assert expected_calibration_error(champion, LABELS) + tolerance + 1e-12 == expected_calibration_error(
        candidate, LABELS
    )
    calibration = decide("c", "d", [(GATE, candidate, champion)], GateRules(1e-9, 1, tolerance))
    assert calibration.reasons[0].startswith("the candidate predicts the champion's class")  # not refused


FIX = "a gate set needs one class index 0-9 per image: fix or drop those items (or rebuild the set)"


def _decide_with_labels(labels) -> str:
    """The error a user gets from decide() on these labels, both models right everywhere they can be."""
    predictions = probabilities(np.zeros(len(labels), np.int64))
    with pytest.raises(ValueError) as raised:
        decide("cand", "champ", [(GateSet("official test set", labels, "pinned"), predictions, predictions)])
    return str(raised.value)


def test_a_label_outside_zero_to_nine_is_named_with_the_fix_not_a_numpy_error():
    labels = LABELS.copy()
    labels[[7, 12]] = 10
    assert _decide_with_labels(labels) == (
        f"official test set: 2 of 100 labels are outside 0-9 (the first, 10, at index 7); {FIX}"
    )
    assert _decide_with_labels(np.array([3, -1, 0, 2])) == (
        f"official test set: 1 of 4 labels are outside 0-9 (the first, -1, at index 1); {FIX}"
    )


def test_labels_at_the_edges_of_the_classes_pass_and_the_first_ones_outside_do_not():
    edges = GateSet("edges", np.array([0.0, 9.0, 0.0, 9.0]), "hand-made")
    assert checked_labels(edges).tolist() == [0, 9, 0, 9] and checked_labels(edges).dtype == np.int64
    assert _decide_with_labels(np.array([9.0, 10.0])).startswith("official test set: 1 of 2 labels are outside 0-9")
    assert _decide_with_labels(np.array([0, -1], np.int8)).startswith("official test set: 1 of 2 labels are outside")
    three = GateSet("three classes", np.array([0, 2, 3]), "hand-made")
    with pytest.raises(ValueError, match=r"^three classes: 1 of 3 labels are outside 0-2 \(the first, 3, at index 2\)"):
        checked_labels(three, n_classes=3)
    thirds = np.full((3, 3), 1 / 3)  # a gate over three named classes: label 3 is outside them
    with pytest.raises(ValueError, match=r"^three classes: 1 of 3 labels are outside 0-2 \(the first, 3, at index 2\)"):
        compare_on(three, thirds, thirds, GateRules(), class_names=["a", "b", "c"])


def test_a_label_that_is_not_a_whole_number_is_named_with_the_fix():
    assert _decide_with_labels(np.array([1.0, 2.5, 3.0, np.nan])) == (
        f"official test set: 2 of 4 labels are not whole numbers (the first, 2.5, at index 1); {FIX}"
    )
    assert _decide_with_labels(np.array([0.0, np.inf])).startswith(
        "official test set: 1 of 2 labels are not whole numbers (the first, inf, at index 1)"
    )
    assert (
        _decide_with_labels(np.array(["0", "1"])) == f"official test set: labels of type <U1, not class indices; {FIX}"
    )
    assert _decide_with_labels(np.array([True, False])) == (
        f"official test set: labels of type bool, not class indices; {FIX}"
    )


def test_labels_of_another_shape_than_one_per_image_are_named_with_the_fix():
    column = GateSet("official test set", LABELS.reshape(100, 1), "pinned")
    ten = probabilities(LABELS)
    with pytest.raises(ValueError) as raised:
        compare_on(column, ten, ten, GateRules())
    assert str(raised.value) == f"official test set: labels of shape (100, 1), not one label per image; {FIX}"
    with pytest.raises(ValueError) as counted:
        checked_labels(GATE, images=99)
    assert str(counted.value) == f"official test set: 100 labels for 99 images; {FIX}"
    assert checked_labels(GATE, images=100).tolist() == LABELS.tolist()
