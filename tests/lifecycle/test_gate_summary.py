"""The `make demo` summary names the paired gate's decision: an identical candidate is not "refused" (issue 25)."""

from __future__ import annotations

import numpy as np
import pytest

import storage
from lifecycle.__main__ import gate_summary
from lifecycle.orchestration.plan import PROMOTED, REFUSED
from trainer.models.gate import GateSet, decide
from trainer.models.gate_sets import report_base
from trainer.models.registry import ModelRegistry

LABELS = np.array([0, 1, 2, 3] * 25)


def _write_report(root: str, candidate: np.ndarray, champion: np.ndarray) -> None:
    report = decide("v2", "v1", [(GateSet("official test set", LABELS, "pinned"), candidate, champion)])
    storage.write_text(report_base(root, "v2", "v1") + ".json", report.to_json())


def _probabilities(predictions: np.ndarray) -> np.ndarray:
    out = np.full((len(predictions), 10), 0.01)
    out[np.arange(len(predictions)), predictions] = 0.91
    return out


def test_an_identical_candidate_is_named_identical_not_refused(tmp_path):
    root = str(tmp_path)
    same = _probabilities(LABELS)
    _write_report(root, same, same)
    line = gate_summary(REFUSED, ModelRegistry(root).gate_report("v2", "v1"))
    assert line.startswith("not promoted: identical to the champion")
    assert "all 100 gate images" in line and "refused" not in line


def test_a_refusal_names_the_decision_and_its_reasons(tmp_path):
    root = str(tmp_path)
    worse = LABELS.copy()
    worse[:40] = (worse[:40] + 1) % 4  # the candidate gets 40 of 100 wrong where the champion is right
    _write_report(root, _probabilities(worse), _probabilities(LABELS))
    line = gate_summary(REFUSED, ModelRegistry(root).gate_report("v2", "v1"))
    assert line.startswith("refused by the quality gate, decision refuse (")
    assert "McNemar" in line


@pytest.mark.parametrize(("outcome", "expected"), [(PROMOTED, "promoted to champion"), (REFUSED, "refused by")])
def test_without_a_paired_report_the_outcome_alone_is_named(tmp_path, outcome, expected):
    assert ModelRegistry(str(tmp_path)).gate_report("v2", None) is None
    assert ModelRegistry(str(tmp_path)).gate_report("v2", "v1") is None
    assert gate_summary(outcome, None).startswith(expected)
