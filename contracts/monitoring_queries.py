"""The PromQL the project asks Cloud Monitoring (Managed Service for Prometheus), written once.

Why here: the drift alert (infra/components/pipelines.py) and the fleet's rollout and drift decisions read the same
series; a query typed twice drifts. PromQL, not a metric-type filter: an alert condition that names
`prometheus.googleapis.com/<name>/gauge` fails with 404 on a new project until the first point is written, while a
PromQL condition is accepted before the metric exists. Pure strings, no imports.
"""

from __future__ import annotations

DRIFT_DETECTED_GAUGE = "fmnist_drift_detected"  # service/state.py: 1 while the drift monitor flags drift
# True (a non-empty result) while any serving instance reports drift.
DRIFT_DETECTED_PROMQL = f"max({DRIFT_DETECTED_GAUGE}) > 0"

# ---- drift that may start a retraining run: enough DISTINCT clients over the whole fleet -------------------------
# service/metrics.py: per client bucket, 1 when that bucket's own sampled images drifted (judged once it has
# DRIFT_MIN_IMAGES / DRIFT_MIN_CLIENTS images, so the flagged buckets together hold at least DRIFT_MIN_IMAGES).
DRIFT_CLIENT_GAUGE = "fmnist_drift_client_detected"
DRIFT_MIN_CLIENTS_CLOUD_RUN = 10  # service/config.py's DRIFT_MIN_CLIENTS default on Cloud Run
DRIFT_WINDOW = "1h"


def drift_fleet_promql(min_clients: int = DRIFT_MIN_CLIENTS_CLOUD_RUN, window: str = DRIFT_WINDOW) -> str:
    """Non-empty once at least `min_clients` distinct client buckets drifted on any instance within `window`: one
    client, however many images it sends to however many instances, is one bucket and never enough alone."""
    if min_clients < 1:
        raise ValueError(f"min_clients {min_clients}: expected at least 1 (DRIFT_MIN_CLIENTS)")
    _check_window(window)
    flagged = f"max by (client) (max_over_time({DRIFT_CLIENT_GAUGE}[{window}])) > 0"
    return f"count({flagged}) >= {min_clients}"


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
    if window is not None:
        _check_window(window)
    challenger_sel = f'model_version="{challenger}",role="challenger"'
    pair_sel = f'champion_version="{champion}",challenger_version="{challenger}"'
    function, range_ = ("increase", f"[{window}]") if window else ("", "")
    return {
        name: text.format(f=function, w=range_, challenger=challenger_sel, pair=pair_sel)
        for name, text in ROLLOUT_TALLY_PROMQL.items()
    }


# ---- operational events the trainer logs as one JSON line (trainer/errors.py: log_event), for log-based alerts ---
# Why log lines, not a metric: a log-based alert (condition_matched_log) needs no metric descriptor, so it is valid
# before the first failure, and the line carries what failed. Cloud Logging parses a JSON line into jsonPayload.
PIPELINE_STEP_FAILED = "pipeline_step_failed"  # trainer pipeline-step: the task's command failed (the run fails)
GATE_REFUSED = "gate_refused"  # the quality gate refused a promotion (registry promote, a pipeline's promote step)


def event_log_filter(event: str) -> str:
    """The Cloud Logging filter matching one trainer event line, wherever it ran (a pipeline task, a job)."""
    if event not in (PIPELINE_STEP_FAILED, GATE_REFUSED):
        raise ValueError(f"unknown trainer event {event!r}: expected {PIPELINE_STEP_FAILED} or {GATE_REFUSED}")
    return f'jsonPayload.event="{event}" AND jsonPayload.component="trainer"'


def _check_window(window: str) -> None:
    if not (window[:-1].isdigit() and window.endswith(_WINDOW_UNITS)):
        raise ValueError(f"window {window!r}: expected a whole number and a unit (s, m, h, d), such as 1h")


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
