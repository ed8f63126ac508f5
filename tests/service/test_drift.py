"""Drift: PSI as the contract defines it, no flag for traffic like the training data, a flag for shifted traffic."""

import json
import shutil

import numpy as np
import pytest

from service.drift import DriftMonitor, population_stability_index
from tests.service.conftest import ADMIN, ADMIN_ENV
from tests.service.model_factory import generated_images


def test_psi_matches_the_contract_formula():
    expected = np.full(10, 0.1)
    assert population_stability_index(expected, expected) == 0
    actual = np.array([0.5, 0.5] + [0] * 8)
    clamped = np.maximum(actual, 1e-4)
    assert population_stability_index(expected, actual) == pytest.approx(
        float(np.sum((clamped - expected) * np.log(clamped / expected)))
    )
    assert population_stability_index(expected, actual) > 1


def post_batches(client, images: np.ndarray, batch: int = 50) -> None:
    for start in range(0, len(images), batch):
        reply = client.post(
            "/predict", data=images[start : start + batch].tobytes(), content_type="application/octet-stream"
        )
        assert reply.status_code == 200, reply.get_json()


@pytest.fixture
def drift_client(make_app):
    app = make_app(DRIFT_SAMPLE_EVERY="1", DRIFT_MIN_IMAGES="200", **ADMIN_ENV)
    return app.test_client()


def test_traffic_like_the_baseline_raises_no_flag(drift_client):
    images, _ = generated_images(600, seed=11)
    post_batches(drift_client, images[:150])
    report = drift_client.get("/monitoring/drift").get_json()
    assert report["status"] == "insufficient_data" and report["drift_detected"] is False
    post_batches(drift_client, images[150:])
    report = drift_client.get("/monitoring/drift").get_json()
    assert report["status"] == "ok" and report["images_sampled"] == report["images_seen"] == 600
    assert report["drift_detected"] is False, report
    assert max(f["psi"] for f in report["features"].values()) < report["threshold"]
    assert report["classes"]["psi"] < report["threshold"]


@pytest.mark.parametrize("shift", ["inverted", "brightened"])
def test_shifted_traffic_raises_the_flag(drift_client, shift):
    images, _ = generated_images(400, seed=12)
    shifted = 255 - images if shift == "inverted" else np.clip(images.astype(int) + 90, 0, 255).astype(np.uint8)
    post_batches(drift_client, shifted)
    report = drift_client.get("/monitoring/drift").get_json()
    assert report["status"] == "ok" and report["drift_detected"] is True
    assert report["features"]["mean_intensity"]["drifted"] is True
    assert "mean_intensity" in report["drifted"]
    metrics = drift_client.get("/metrics").get_data(as_text=True)
    assert "fmnist_drift_detected 1.0" in metrics
    assert 'fmnist_drift_feature_psi{feature="mean_intensity"}' in metrics

    assert drift_client.post("/monitoring/drift/reset").status_code == 401  # without the operator's token
    assert drift_client.get("/monitoring/drift").get_json()["drift_detected"] is True
    reset = drift_client.post("/monitoring/drift/reset", headers=ADMIN).get_json()
    assert reset["images_seen"] == 0 and reset["drift_detected"] is False


def test_sampling_counts_every_kth_image_but_every_class(make_app):
    client = make_app(DRIFT_SAMPLE_EVERY="4", DRIFT_MIN_IMAGES="1").test_client()
    images, _ = generated_images(10, seed=13)
    for single in images:  # one image per request: the sampling phase carries across requests
        client.post("/predict", data=single.tobytes(), content_type="application/octet-stream")
    report = client.get("/monitoring/drift").get_json()
    assert report["images_seen"] == 10 and report["images_sampled"] == 3  # images 0, 4, 8


def test_model_without_baseline_reports_why(tmp_path, model_dir, make_app):
    shutil.copytree(model_dir, tmp_path / "m")
    metadata = json.loads((tmp_path / "m" / "metadata.json").read_text())
    del metadata["feature_baseline"]
    (tmp_path / "m" / "metadata.json").write_text(json.dumps(metadata))
    report = make_app(MODEL_URI=str(tmp_path / "m")).test_client().get("/monitoring/drift").get_json()
    assert report["status"] == "no_baseline" and "no feature_baseline" in report["detail"]


def test_other_feature_function_is_not_compared(model_dir):
    baseline = json.loads((model_dir / "metadata.json").read_text())["feature_baseline"]
    monitor = DriftMonitor({**baseline, "feature_function": "other/v9"}, 0.2, 1, 1)
    report = monitor.report()
    assert report["status"] == "no_baseline" and "other/v9" in report["detail"]


def test_counts_are_shared_through_the_state_directory(tmp_path, model_dir):
    """Two monitors on one directory stand in for two gunicorn workers (the live-server test uses real ones)."""
    import multiprocessing

    baseline = json.loads((model_dir / "metadata.json").read_text())["feature_baseline"]
    images, _ = generated_images(64, seed=14)

    def worker():
        child = DriftMonitor(baseline, 0.2, 1, 1, str(tmp_path))
        child.observe(images[:40].astype(np.float32), np.zeros(40, np.int64))
        child.flush()

    process = multiprocessing.get_context("fork").Process(target=worker)
    process.start()
    process.join(30)
    parent = DriftMonitor(baseline, 0.2, 1, 1, str(tmp_path))
    parent.observe(images[40:].astype(np.float32), np.ones(24, np.int64))
    report = parent.report()
    assert report["images_seen"] == 64 and report["images_sampled"] == 64
    assert report["classes"]["observed_proportions"][:2] == [pytest.approx(40 / 64), pytest.approx(24 / 64)]


def _post_as(client, images: np.ndarray, address: str, batch: int = 50) -> None:
    for start in range(0, len(images), batch):
        reply = client.post(
            "/predict",
            data=images[start : start + batch].tobytes(),
            content_type="application/octet-stream",
            headers={"X-Forwarded-For": address},  # the trusted proxy's hop (TRUSTED_PROXY_HOPS=1)
        )
        assert reply.status_code == 200, reply.get_json()


def test_one_client_cannot_flag_drift(make_app):
    """Drift starts a retraining run: 400 inverted images from one client flag nothing until enough distinct
    clients are seen, and then count as at most DRIFT_MAX_CLIENT_IMAGES (25, beside 12 clients sending 25 images
    each like the training data); without the cap the same traffic flags."""
    from service.caller import client_bucket

    env = {
        "DRIFT_SAMPLE_EVERY": "1",
        "DRIFT_MIN_IMAGES": "200",
        "DRIFT_MIN_CLIENTS": "5",
        "DRIFT_MAX_CLIENT_IMAGES": "25",
        "TRUSTED_PROXY_HOPS": "1",
    }
    images, _ = generated_images(300, seed=21)
    attack = 255 - generated_images(400, seed=22)[0]
    taken, honest = {client_bucket("ip:203.0.113.7")}, []
    for address in (f"198.51.100.{i}" for i in range(1, 255)):  # 12 honest clients in 12 other buckets
        if len(honest) < 12 and client_bucket(f"ip:{address}") not in taken:
            taken.add(client_bucket(f"ip:{address}"))
            honest.append(address)
    reports = {}
    for cap in ("25", "0"):
        client = make_app(**{**env, "DRIFT_MAX_CLIENT_IMAGES": cap}).test_client()
        _post_as(client, attack, "203.0.113.7")
        alone = client.get("/monitoring/drift").get_json()
        assert alone["status"] == "insufficient_data" and alone["drift_detected"] is False
        assert (alone["clients"], alone["images_sampled"]) == (1, 400) and "1 of the 5 distinct clients" in alone[
            "detail"
        ]
        for index, address in enumerate(honest):
            _post_as(client, images[25 * index : 25 * (index + 1)], address)
        reports[cap] = client.get("/monitoring/drift").get_json()
    capped, uncapped = reports["25"], reports["0"]
    assert capped["status"] == "ok" and capped["clients"] == 13 and capped["images_sampled"] == 700
    assert capped["images_credited"] == 25 + 300  # the attacker's 400 count as 25
    assert capped["drift_detected"] is False, (
        capped["drifted"],
        {k: v["psi"] for k, v in capped["features"].items()},
        capped["classes"]["psi"],
    )
    assert uncapped["images_credited"] == 700 and uncapped["drift_detected"] is True


def test_each_client_buckets_own_drift_is_exported_for_the_fleet_query(make_app):
    """/metrics: per client bucket, its sampled images and whether they drifted on their own, judged once the bucket
    holds DRIFT_MIN_IMAGES / DRIFT_MIN_CLIENTS (40 / 4 = 10) images and beyond what chance gives that many (a
    bucket of 30 ordinary images has PSI 0.65 on smoothed shares, over the 0.2 threshold, under 27.877 / 30 = 0.93);
    the fleet's alert counts the flagged buckets."""
    from service.caller import client_bucket

    env = {"DRIFT_SAMPLE_EVERY": "1", "DRIFT_MIN_IMAGES": "40", "DRIFT_MIN_CLIENTS": "4", "TRUSTED_PROXY_HOPS": "1"}
    client = make_app(**env).test_client()
    images, _ = generated_images(30, seed=23)
    _post_as(client, 255 - images[:9], "203.0.113.1")  # 9 drifted images: under 10, not judged yet
    _post_as(client, 255 - images[:20], "203.0.113.2")  # 20 drifted: flagged
    _post_as(client, images, "203.0.113.3")  # 30 like the training data: not flagged
    text = client.get("/metrics").get_data(as_text=True)
    flags = {
        f"{client_bucket(f'ip:203.0.113.{i}'):02d}": (count, flag)
        for i, count, flag in ((1, 9, 0), (2, 20, 1), (3, 30, 0))
    }
    for bucket, (count, flag) in flags.items():
        assert f'fmnist_drift_client_images{{client="{bucket}"}} {count:.1f}' in text
        assert f'fmnist_drift_client_detected{{client="{bucket}"}} {flag:.1f}' in text
    assert text.count("fmnist_drift_client_detected{") == 3
