"""The fleet's accuracy PromQL: pinned text, and the verdict it feeds (contracts.rollout) from a Prometheus answer."""

from __future__ import annotations

import pytest

from contracts.monitoring_queries import feedback_queries
from contracts.rollout import Accuracy, Thresholds
from trainer.cloud.promql import fleet_accuracy, fleet_verdict


def test_the_queries_sum_by_poster_or_by_class_over_every_instance():
    assert feedback_queries("v2") == {
        "labelled": 'sum by (poster) ((fmnist_feedback_poster_labelled_total{model_version="v2"}))',
        "correct": 'sum by (poster) ((fmnist_feedback_poster_correct_total{model_version="v2"}))',
    }
    assert feedback_queries("v2", "1h", by="class_name")["correct"] == (
        'sum by (class_name) (increase(fmnist_feedback_correct_total{model_version="v2"}[1h]))'
    )
    with pytest.raises(ValueError, match="model version 'v2\"}'"):
        feedback_queries('v2"}')


def _answer(table: dict[str, dict[str, float]]):
    """A Prometheus instant-vector answer per query text: {query: {poster: value}}; other queries find nothing."""

    def ask(expr: str):
        return [{"metric": {"poster": p}, "value": [0, str(v)]} for p, v in table.get(expr, {}).items()]

    return ask


def test_a_challenger_worse_on_the_fleets_labels_is_rolled_back():
    champion, challenger = feedback_queries("v1"), feedback_queries("v2")
    ask = _answer(
        {
            champion["labelled"]: {"01": 150, "02": 150},
            champion["correct"]: {"01": 135, "02": 135},
            challenger["labelled"]: {"01": 5000, "02": 150},  # poster 01 flooded: credited 100
            challenger["correct"]: {"01": 3500, "02": 105},
        }
    )
    thresholds = Thresholds(min_labels=200, min_label_posters=2, max_poster_labels=100)
    assert fleet_accuracy(ask, "v2", 100) == Accuracy(70 + 70, 200, 2)
    decision, _ = fleet_verdict(ask, "v1", "v2", thresholds)
    assert decision.decision == "rollback"
    assert "accuracy_low" in decision.codes
