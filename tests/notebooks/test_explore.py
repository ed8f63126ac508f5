"""What the notebooks call, tested on its own: tables, the champion's view, and reaching the real service."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from lifecycle.notebook import explore, service_client
from settings import load_config


def test_markdown_table_formats_floats_ints_and_text():
    table = explore.markdown_table(["name", "share", "count"], [["Coat", 0.123456, 6000]])
    assert table.splitlines() == ["| name | share | count |", "|---|---|---|", "| Coat | 0.1235 | 6,000 |"]


def test_disagreements_are_the_indices_where_predictions_differ():
    assert explore.disagreements(np.array([1, 2, 3, 4]), np.array([1, 0, 3, 0])).tolist() == [1, 3]


def test_disagreement_figure_is_a_png_even_when_the_models_agree():
    images = np.zeros((3, 28, 28), np.uint8)
    labels = np.array([0, 1, 2])
    assert explore.disagreements_png(images, labels, labels, labels).startswith(b"\x89PNG")


def test_without_data_or_champion_the_helpers_name_the_command(tmp_path):
    settings = load_config("local", environ={"FMNIST_STORAGE_ROOT": str(tmp_path / "mlops")})
    assert explore.champion_on(settings, np.zeros((1, 28, 28), np.uint8), np.zeros(1, np.uint8)) is None
    with pytest.raises(explore.NothingToExplore, match="python -m trainer features"):
        explore.read_feature_table(settings, "v-missing")


def test_the_champion_measured_here_agrees_with_its_registered_evaluation(explored_world):
    from trainer.data.dataset import load_dataset

    dataset = load_dataset(explored_world.settings)
    champion = explore.champion_on(explored_world.settings, dataset.x_test, dataset.y_test)
    assert champion.version == explored_world.champion
    assert champion.dataset_version == dataset.version
    # the registry's figure came from Keras on the same test set; ONNX agrees on every argmax (export verifies it)
    assert champion.evaluation.metrics["accuracy"] == pytest.approx(champion.recorded["accuracy"], abs=1e-12)


def test_the_feature_table_has_a_row_per_image_and_every_feature(explored_world):
    features = explore.read_feature_table(explored_world.settings, explored_world.dataset_version)
    assert len(features["image_id"]) == 1300
    assert set(explore.FEATURE_NAMES) <= set(features)
    assert explore.feature_distributions_png(features).startswith(b"\x89PNG")


def test_the_local_service_answers_both_encodings_alike_and_stops_after_use(explored_world):
    from trainer.data.dataset import load_dataset

    dataset = load_dataset(explored_world.settings)
    with service_client.open_service(explored_world.settings, "local") as service:
        assert service.model()["model_version"] == explored_world.champion
        as_json = [p["class_id"] for p in service.predict_json(dataset.x_test[:20])]
        assert as_json == [p["class_id"] for p in service.predict_bytes(dataset.x_test[:20])]
        predicted = service_client.predicted_classes(service, dataset.x_test, batch=128)  # 3 requests
        champion = explore.champion_on(explored_world.settings, dataset.x_test, dataset.y_test)
        assert predicted.tolist() == champion.probabilities.argmax(axis=1).tolist()
        base = service.base_url
        with service_client.open_service(explored_world.settings, "local", url=base) as reached:
            assert reached.base_url == base  # an already running service is called, not a second one started
            assert reached.drift()["images_seen"] >= 320
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/health", timeout=2)


def test_connect_outlives_a_cell_and_disconnect_stops_it(explored_world):
    service = service_client.connect(explored_world.settings, "local")
    try:
        assert requests.get(f"{service.base_url}/health", timeout=5).status_code == 200
    finally:
        service_client.disconnect()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{service.base_url}/health", timeout=2)


def test_an_unreachable_service_is_reported_with_its_url():
    client = service_client.HttpService("http://127.0.0.1:9")
    with pytest.raises(service_client.ServiceUnreachable, match=r"GET http://127\.0\.0\.1:9/monitoring/drift"):
        client.drift()


@pytest.mark.parametrize(
    ("target", "url", "message"),
    [("cloud-run", None, "service_url"), ("kubernetes", None, "local, cloud-run, vertex")],
)
def test_a_target_that_cannot_work_fails_before_anything_starts(tmp_path, target, url, message):
    settings = load_config("local", environ={"FMNIST_STORAGE_ROOT": str(tmp_path)})
    with pytest.raises(ValueError, match=message), service_client.open_service(settings, target, url):
        pass


def test_drift_table_explains_a_report_without_psi():
    report = {"status": "insufficient_data", "detail": "12 of the 200 sampled images needed"}
    assert explore.drift_table(report) == "drift status **insufficient_data**: 12 of the 200 sampled images needed"


def test_without_credentials_or_gcloud_no_token_says_why(no_google_credentials):
    with pytest.raises(service_client.ServiceUnreachable, match="no identity token for https://x.run.app"):
        service_client.identity_token("https://x.run.app")


def test_a_cloud_run_url_is_called_with_gclouds_identity_token(no_google_credentials, explored_world):
    gcloud = no_google_credentials / "gcloud"
    gcloud.write_text("#!/bin/sh\necho token-from-gcloud\n")
    gcloud.chmod(0o755)
    with service_client.open_service(explored_world.settings, "local") as local:
        url = local.base_url  # the local process stands in for Cloud Run: it ignores the bearer token
        with service_client.open_service(explored_world.settings, "cloud-run", url) as remote:
            assert remote.session.headers["Authorization"] == "Bearer token-from-gcloud"
            assert remote.model()["model_version"] == explored_world.champion
