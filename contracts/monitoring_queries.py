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
