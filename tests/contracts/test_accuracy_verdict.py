"""Accuracy from labels in the rollout verdict: Wilson and Newcombe figures, poster caps, and when accuracy decides."""

from __future__ import annotations

import pytest

from contracts.feedback import COLUMN_NAMES, sqlite_schema, view_select
from contracts.rollout import (
    REASON_CODES,
    Accuracy,
    Agreement,
    Thresholds,
    VersionStats,
    accuracy_difference,
    capped_accuracy,
    verdict,
    wilson_interval,
)

THRESHOLDS = Thresholds(min_requests=10, min_clients=1, min_labels=200, min_label_posters=2, max_poster_labels=100)
CHAMPION = VersionStats("v1", 1000, 0)
CHALLENGER = VersionStats("v2", 500, 0, clients=20)
AGREEING = Agreement(500, 500)


def test_wilson_and_newcombe_match_the_published_examples():
    # Newcombe (1998), "Interval estimation for the difference between independent proportions", method 10:
    # 56/70 - 48/80 -> 0.0524 to 0.3339; 9/10 - 3/10 -> 0.1705 to 0.8090; and his Wilson interval of 81/263
    assert accuracy_difference(Accuracy(56, 70), Accuracy(48, 80)) == pytest.approx((0.0524, 0.3339), abs=5e-5)
    assert accuracy_difference(Accuracy(9, 10), Accuracy(3, 10)) == pytest.approx((0.1705, 0.8090), abs=5e-5)
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert Agreement(81, 263).interval() == wilson_interval(81, 263)


def test_each_poster_is_capped_and_counted():
    # 300 labels at 90 % count as 100 at 90 %; 50 at 20 % count whole; an empty poster is no poster
    assert capped_accuracy([(300, 270), (50, 10), (0, 0)], 100) == Accuracy(100, 150, 2)


def _verdict(champion: Accuracy, challenger: Accuracy):
    return verdict(CHAMPION, CHALLENGER, AGREEING, THRESHOLDS, accuracy=(champion, challenger))


def test_a_clearly_less_accurate_challenger_rolls_back():
    # 150/200 vs 180/200: difference -15 %, interval -22.3 % to -7.6 %, all below -2 %
    decision = _verdict(Accuracy(180, 200, 2), Accuracy(150, 200, 2))
    assert decision.decision == "rollback"
    assert decision.codes == ["accuracy_low"]
    assert "75.00% on 200 labels vs the champion's 90.00% on 200" in decision.reasons[0]


def test_an_equally_accurate_challenger_waits_until_the_labels_say_so_then_passes():
    # 90 % on both sides: on 200 labels each the difference interval is about +-5.9 %, so it may be 2 % worse
    waiting = _verdict(Accuracy(180, 200, 2), Accuracy(180, 200, 2))
    assert (waiting.decision, waiting.codes) == ("wait", ["accuracy_uncertain"])
    # on 2,000 each the interval is +-1.86 %: within the 2 % margin (comparing both Wilson intervals' ends would
    # still call it a 3.7 % gap and roll it back)
    passing = _verdict(Accuracy(1800, 2000, 20), Accuracy(1800, 2000, 20))
    assert (passing.decision, passing.codes) == ("promote", ["passed"])


@pytest.mark.parametrize(
    ("champion", "challenger"),
    [
        (Accuracy(180, 200, 2), Accuracy(0, 199, 2)),  # one label short on the challenger
        (Accuracy(180, 200, 2), Accuracy(0, 200, 1)),  # enough labels, but from one poster
        (Accuracy(180, 199, 2), Accuracy(0, 200, 2)),  # the champion is short
    ],
)
def test_too_few_labels_or_posters_leave_the_verdict_to_the_other_checks(champion, challenger):
    assert _verdict(champion, challenger).decision == "promote"
    assert verdict(CHAMPION, CHALLENGER, AGREEING, THRESHOLDS).decision == "promote"


def test_one_poster_alone_cannot_reach_the_minimum_whatever_it_posts():
    one = capped_accuracy([(10_000, 0)], THRESHOLDS.max_poster_labels)
    assert one == Accuracy(0, 100, 1)
    assert _verdict(Accuracy(180, 200, 2), one).decision == "promote"
    # with an honest poster beside it, the flood weighs as much as the honest labels, no more
    two = capped_accuracy([(10_000, 0), (100, 95)], THRESHOLDS.max_poster_labels)
    assert two == Accuracy(95, 200, 2)


def test_the_new_reason_codes_are_in_the_closed_set():
    assert {"accuracy_low", "accuracy_uncertain"} <= set(REASON_CODES)


def test_one_column_list_for_sqlite_and_the_bigquery_view():
    assert sqlite_schema().startswith("CREATE TABLE IF NOT EXISTS feedback_rows (feedback_event TEXT, request_id")
    sql = view_select("p.d.run_googleapis_com_stdout")
    assert "CAST(jsonPayload.predicted_class AS INT64) AS predicted_class" in sql
    assert "TIMESTAMP(jsonPayload.logged_at) AS logged_at" in sql
    assert sql.endswith("FROM `p.d.run_googleapis_com_stdout` WHERE jsonPayload.feedback_event IS NOT NULL")
    assert [part.rsplit(" AS ", 1)[-1] for part in sql[7 : sql.index(" FROM ")].split(", ")] == list(COLUMN_NAMES)
