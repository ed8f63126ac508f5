"""The fleet drift query (contracts.monitoring_queries.drift_fleet_promql): its exact text and its refusals."""

import pytest

from contracts.monitoring_queries import DRIFT_MIN_CLIENTS_CLOUD_RUN, drift_fleet_promql


def test_the_fleet_drift_query_counts_distinct_flagged_client_buckets():
    assert drift_fleet_promql(5, "10m") == (
        "count(max by (client) (max_over_time(fmnist_drift_client_detected[10m])) > 0) >= 5"
    )
    assert drift_fleet_promql().endswith(f">= {DRIFT_MIN_CLIENTS_CLOUD_RUN}")


def test_the_service_on_cloud_run_needs_as_many_clients_as_the_alert():
    from service.config import ServiceConfig

    config = ServiceConfig.from_env(
        {"MODEL_URI": "gs://b/m@champion", "K_SERVICE": "fmnist", "REQUIRE_SIGNED_INDEX": "false"}
    )
    assert config.drift_min_clients == DRIFT_MIN_CLIENTS_CLOUD_RUN == 10


@pytest.mark.parametrize("min_clients, window, message", [(0, "1h", "at least 1"), (3, "1 hour", "unit")])
def test_bad_arguments_are_refused(min_clients, window, message):
    with pytest.raises(ValueError, match=message):
        drift_fleet_promql(min_clients, window)
