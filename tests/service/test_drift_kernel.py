"""The drift histograms' one-pass update (service/drift.py: feature matrix, bin matrix, one bincount per update)
counts exactly what the per-feature formula counted: searchsorted per feature, np.add.at per client bucket."""

import json
import os

import numpy as np
import pytest

from contracts.features import N_BINS, bin_index, compute_image_features
from service.config import CLIENT_BUCKETS
from service.drift import ALL, FEATURE_NAMES, DriftMonitor
from tests.service.model_factory import generated_images


def reference_counts(baseline: dict, images: np.ndarray, classes: np.ndarray, buckets: np.ndarray) -> np.ndarray:
    """[buckets + 1, features + 1, bins] as the old per-feature update filled them."""
    counts = np.zeros((CLIENT_BUCKETS + 1, len(FEATURE_NAMES) + 1, N_BINS))
    values = compute_image_features(images.astype(np.uint8))
    for row, name in enumerate(FEATURE_NAMES):
        bins = bin_index(baseline["features"][name]["edges"], values[name])
        np.add.at(counts[:, row, :], (buckets, bins), 1)
    np.add.at(counts[:, -1, :], (buckets, classes), 1)
    return counts


@pytest.fixture
def baseline(model_dir):
    return json.loads((model_dir / "metadata.json").read_text())["feature_baseline"]


@pytest.mark.parametrize("inverted", [False, True])
def test_one_clients_requests_count_what_the_per_feature_formula_counted(baseline, inverted):
    images, _ = generated_images(640, seed=21)
    if inverted:
        images = 255 - images
    classes = np.random.default_rng(4).integers(0, 10, len(images))
    monitor = DriftMonitor(baseline, 0.2, 1, sample_every=1)
    for start in range(0, len(images), 64):  # 64-image requests: every image sampled, one update per request
        monitor.observe(images[start : start + 64].astype(np.float32), classes[start : start + 64], lambda: "ip:a")
    counts = monitor._store.mine()
    bucket = np.full(len(images), counts[:ALL, 0].sum(axis=1).argmax())
    expected = reference_counts(baseline, images, classes, bucket)
    np.testing.assert_array_equal(counts[:ALL], expected[:ALL])
    assert counts[:ALL].sum() == len(images) * (len(FEATURE_NAMES) + 1)


def test_a_buffer_of_many_clients_counts_each_image_under_its_own_bucket(baseline):
    """Single-image requests from different callers fill one buffer: the update spans several buckets."""
    images, _ = generated_images(96, seed=22)
    classes = np.random.default_rng(5).integers(0, 10, len(images))
    monitor = DriftMonitor(baseline, 0.2, 1, sample_every=3)
    callers = [f"ip:10.0.0.{i % 7}" for i in range(len(images))]
    for i in range(len(images)):
        monitor.observe(images[i : i + 1].astype(np.float32), classes[i : i + 1], lambda key=callers[i]: key)
    monitor.flush()
    from service.caller import client_bucket

    sampled = np.arange(0, len(images), 3)
    buckets = np.array([client_bucket(callers[i]) for i in sampled])
    assert len(set(buckets.tolist())) > 1
    expected = reference_counts(baseline, images[sampled], classes[sampled], buckets)
    np.testing.assert_array_equal(monitor._store.mine()[:ALL], expected[:ALL])


def test_a_baseline_with_unordered_edges_is_refused_with_the_feature_named(baseline):
    broken = json.loads(json.dumps(baseline))
    broken["features"]["bbox_width"]["edges"] = [9, 8, 7, 6, 5, 4, 3, 2, 1]
    monitor = DriftMonitor(broken, 0.2, 1)
    assert not monitor.baseline.usable
    assert "bbox_width" in str(monitor.baseline.problem) and "ascending" in str(monitor.baseline.problem)
    assert DriftMonitor(baseline, 0.2, 1).baseline.usable


def _in_child(target) -> None:
    import multiprocessing

    process = multiprocessing.get_context("fork").Process(target=target)
    process.start()
    process.join(60)
    assert process.exitcode == 0


def test_another_workers_pending_images_are_counted_by_every_report_exactly_once(tmp_path, baseline):
    """A worker's sampled images wait in its shared pending area (fewer than PENDING): a report from another
    worker counts them, the same counts as after that worker's own flush, never twice."""
    images, _ = generated_images(64 * 5, seed=23)
    classes = np.random.default_rng(6).integers(0, 10, len(images))

    def worker():
        child = DriftMonitor(baseline, 0.2, 1, 8, str(tmp_path))
        for start in range(0, len(images), 64):  # 8 sampled per request: 40 pending, none computed
            child.observe(images[start : start + 64].astype(np.float32), classes[start : start + 64], lambda: "ip:w")
        assert int(child._store._meta[-1, 0]) == 40

    _in_child(worker)
    reader = DriftMonitor(baseline, 0.2, 1, 8, str(tmp_path))
    pending = reader._store.total(reader._add_features)
    report = reader.report()
    assert (report["images_seen"], report["images_sampled"]) == (320, 40)

    sampled = np.arange(0, len(images), 8)
    from service.caller import client_bucket

    expected = reference_counts(baseline, images[sampled], classes[sampled], np.full(40, client_bucket("ip:w")))
    np.testing.assert_array_equal(pending[:ALL], expected[:ALL])

    def flush_then_exit():  # the writer's pid names its files: flush them as that worker would
        child = DriftMonitor(baseline, 0.2, 1, 8, str(tmp_path))
        store = child._store
        (pid,) = [int(p.stem.split("-")[1]) for p in tmp_path.glob("counts-*.f64")]
        store._pid = pid
        store._local, store._images, store._meta, store._maps = store._open(pid, "r+")
        store._lock_fd = os.open(tmp_path / f"counts-{pid}.f64", os.O_RDONLY)
        child.flush()
        assert int(store._meta[-1, 0]) == 0

    _in_child(flush_then_exit)
    np.testing.assert_array_equal(reader._store.total(reader._add_features), pending)


def test_a_full_pending_area_is_computed_and_a_reset_empties_every_workers_pending_images(tmp_path, baseline):
    images, _ = generated_images(200, seed=24)
    classes = np.zeros(len(images), np.int64)
    monitor = DriftMonitor(baseline, 0.2, 1, 1, str(tmp_path))
    for start in range(0, 100, 25):  # 25 sampled per request: the third overflows 64 pending (50 counted), 50 wait
        monitor.observe(images[start : start + 25].astype(np.float32), classes[start : start + 25], lambda: "ip:a")
    counted = monitor._store.mine()[:ALL, 0].sum()
    assert (counted, int(monitor._store._meta[-1, 0])) == (50, 50)
    assert monitor.report()["images_sampled"] == 100

    other = DriftMonitor(baseline, 0.2, 1, 1, str(tmp_path))
    other.reset()
    assert int(monitor._store._meta[-1, 0]) == 0 and monitor._store.mine().sum() == 0
    assert monitor.report()["images_sampled"] == 0
