"""The PromQL the project asks Cloud Monitoring (Managed Service for Prometheus), written once.

Why here: the drift alert (infra/components/pipelines.py) and the fleet's rollout and drift decisions read the same
series; a query typed twice drifts. PromQL, not a metric-type filter: an alert condition that names
`prometheus.googleapis.com/<name>/gauge` fails with 404 on a new project until the first point is written, while a
PromQL condition is accepted before the metric exists. Pure strings, no imports.
"""

from __future__ import annotations

DRIFT_DETECTED_GAUGE = "fmnist_drift_detected"  # service/metrics.py: 1 while the drift monitor flags drift
# True (a non-empty result) while any serving instance reports drift.
DRIFT_DETECTED_PROMQL = f"max({DRIFT_DETECTED_GAUGE}) > 0"

# ---- the rollout verdict over the fleet (service/rollout.py's series, summed over every instance and worker) ----
# One query per figure, each summed by client bucket: contracts.rollout.capped_evidence caps every bucket and
# counts distinct ones, so the fleet's verdict is judged exactly as one instance judges its own counters.
# `{pair}` / `{challenger}` are label matchers (rollout_selectors); with a window each series is an increase().
_PAIRED_SECONDS = "fmnist_rollout_paired_inference_seconds_total"
ROLLOUT_TALLY_PROMQL = {
    "requests": "sum by (client) ({f}(fmnist_rollout_requests_total{{{challenger}}}{w}))",
    "errors": "sum by (client) ({f}(fmnist_rollout_errors_total{{{challenger}}}{w}))",
    "compared": "sum by (client) ({f}(fmnist_rollout_paired_requests_total{{{pair}}}{w}))",
    "agreed": "sum by (client) ({f}(fmnist_rollout_paired_agreement_total{{{pair}}}{w}))",
    "challenger_seconds": "sum by (client) ({f}(" + _PAIRED_SECONDS + '{{{pair},role="challenger"}}{w}))',
    "champion_seconds": "sum by (client) ({f}(" + _PAIRED_SECONDS + '{{{pair},role="champion"}}{w}))',
}
_VERSION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-:/@")
_WINDOW_UNITS = ("s", "m", "h", "d")


def rollout_queries(champion: str, challenger: str, window: str | None = None) -> dict[str, str]:
    """The PromQL of each per-client figure for one champion/challenger pair; `window` such as "1h" counts only
    what happened in it (increase), None counts everything since each instance started."""
    for value in (champion, challenger):
        if not value or not set(value) <= _VERSION_CHARS:
            raise ValueError(f"model version {value!r}: expected letters, digits and _.-:/@ only")
    if window is not None and not (window[:-1].isdigit() and window.endswith(_WINDOW_UNITS)):
        raise ValueError(f"window {window!r}: expected a whole number and a unit (s, m, h, d), such as 1h")
    challenger_sel = f'model_version="{challenger}",role="challenger"'
    pair_sel = f'champion_version="{champion}",challenger_version="{challenger}"'
    function, range_ = ("increase", f"[{window}]") if window else ("", "")
    return {
        name: text.format(f=function, w=range_, challenger=challenger_sel, pair=pair_sel)
        for name, text in ROLLOUT_TALLY_PROMQL.items()
    }


# ---- ground truth over the fleet (service/feedback.py's counters) -------------------------------------------------
# Per label-poster bucket, so contracts.rollout.capped_accuracy caps and counts posters exactly as one instance does;
# per true class for the per-class accuracy (the Wilson interval is computed by the reader: contracts.rollout).
FEEDBACK_TALLY_PROMQL = {
    "labelled": "sum by (poster) ({f}(fmnist_feedback_poster_labelled_total{{{version}}}{w}))",
    "correct": "sum by (poster) ({f}(fmnist_feedback_poster_correct_total{{{version}}}{w}))",
}
CLASS_ACCURACY_PROMQL = {
    "labelled": "sum by (class_name) ({f}(fmnist_feedback_labelled_total{{{version}}}{w}))",
    "correct": "sum by (class_name) ({f}(fmnist_feedback_correct_total{{{version}}}{w}))",
}


def feedback_queries(version: str, window: str | None = None, *, by: str = "poster") -> dict[str, str]:
    """The PromQL of one version's labelled and correct counts, by label-poster bucket (the verdict's) or by true
    class (`by="class_name"`); `window` as in rollout_queries."""
    rollout_queries(version, version, window)  # the same checks of the version and the window
    texts = {"poster": FEEDBACK_TALLY_PROMQL, "class_name": CLASS_ACCURACY_PROMQL}[by]
    function, range_ = ("increase", f"[{window}]") if window else ("", "")
    selector = f'model_version="{version}"'
    return {name: text.format(f=function, w=range_, version=selector) for name, text in texts.items()}
