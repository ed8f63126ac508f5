"""Input and prediction drift against the training baseline in metadata.json, shared by all gunicorn workers.

What is compared (docs/CONTRACTS.md): per feature, the share of served images in each of the baseline's 10 bins
(`searchsorted(edges, value, side="right")`), and the predicted-class shares against `classes.proportions`, as a
population stability index with proportions clamped to >= 1e-4.
Why shared files: each worker adds its counts into its own small memory-mapped file in the service's state
directory, so a report from any worker sums the traffic of all of them without locks or a second process.
Why sampling: the feature function costs ~12 us per image, a third of the per-image budget at 30k images/s;
every image's predicted class is counted, and every k-th image's features (DRIFT_SAMPLE_EVERY, default 8)
are computed, in batches of at least 8: a request that brings fewer waits in a small per-worker buffer, so up
to 7 sampled images per worker are counted late (a report includes the reporting worker's own buffer).
Counts accumulate from start-up or the last reset (POST /monitoring/drift/reset).
Why per client (issue 24): drift starts a retraining run, so one client sending odd images must not flag it. The
sampled images' features and predicted classes are counted per client bucket (service/caller.py: who the platform
says is calling, hashed into CLIENT_BUCKETS); a report needs DRIFT_MIN_CLIENTS distinct buckets, and a bucket over
DRIFT_MAX_CLIENT_IMAGES sampled images is scaled down to that many, so its share of the histograms is capped.
The bucket is computed only for requests with a sampled image (1 in DRIFT_SAMPLE_EVERY images).
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from contracts.dataset import IMAGE_SHAPE
from contracts.dataset import NUM_CLASSES as N_CLASSES
from contracts.feature_schema import FEATURE_FUNCTION_ID, FEATURE_NAMES
from contracts.features import (
    N_BINS,
    bin_matrix,
    feature_matrix,
    population_stability_index,
)
from contracts.features import (
    PROPORTION_FLOOR as PSI_FLOOR,
)
from service.caller import client_bucket
from service.config import CLIENT_BUCKETS

FEATURE_BATCH = 8  # sampled images per feature computation: amortizes numpy's per-call cost
CELLS = (len(FEATURE_NAMES) + 1) * N_BINS  # one client bucket's counts: a row of bins per feature, then classes
# each feature row's first cell in a bucket's flattened counts, and the predicted classes' row
_ROW_START = np.arange(len(FEATURE_NAMES) + 1, dtype=np.intp)[:, None] * N_BINS
CHI2_999_9DOF = 27.877  # chi-square's 99.9 % quantile, 9 degrees of freedom (10 bins, 10 classes): client_drift
ALL = CLIENT_BUCKETS  # the store's last slot: every image's predicted class (images_seen), whoever sent it


class Baseline:
    """The metadata's feature_baseline block, checked against the feature function this service runs."""

    def __init__(self, block: object):
        self.problem: str | None = None
        self.edges = np.zeros((len(FEATURE_NAMES), N_BINS - 1))
        self.expected = np.full((len(FEATURE_NAMES), N_BINS), 1 / N_BINS)
        self.class_expected = np.full(N_CLASSES, 1 / N_CLASSES)
        if not block:
            self.problem = "metadata.json has no feature_baseline; drift cannot be measured for this model"
            return
        if not isinstance(block, dict):
            self.problem = f"metadata.json's feature_baseline is a {type(block).__name__}, not an object"
            return
        if block.get("feature_function") != FEATURE_FUNCTION_ID:
            self.problem = (
                f"the baseline was computed with {block.get('feature_function')!r}, this service computes "
                f"{FEATURE_FUNCTION_ID!r}; re-export the model with this version of contracts/features.py"
            )
            return
        features = block.get("features") or {}
        if not isinstance(features, dict):
            self.problem = "the baseline's features must be an object of feature name -> edges and proportions"
            return
        missing = [name for name in FEATURE_NAMES if name not in features]
        if missing:
            self.problem = f"the baseline lacks feature(s) {', '.join(missing)}"
            return
        try:
            for row, name in enumerate(FEATURE_NAMES):
                self.edges[row] = features[name]["edges"]
                self.expected[row] = features[name]["proportions"]
            self.class_expected[:] = block["classes"]["proportions"]
        except (KeyError, TypeError, ValueError) as exc:
            self.problem = f"the baseline is malformed ({exc}); expected 9 edges and 10 proportions per feature"
            return
        unordered = [name for row, name in enumerate(FEATURE_NAMES) if not np.all(np.diff(self.edges[row]) >= 0)]
        if unordered:  # quantiles are ascending; the binning (contracts.features.bin_matrix) relies on it
            self.problem = (
                f"the baseline's edges of {', '.join(unordered)} are not in ascending order; "
                "re-export the model (contracts.features.feature_baseline writes ascending quantiles)"
            )

    @property
    def usable(self) -> bool:
        return self.problem is None


class _CountStore:
    """Counts [client buckets + 1, features + 1, 10] (per bucket: the sampled images' feature bins and, last row,
    their predicted classes; slot ALL: every image's predicted class) for this process, plus the sum over all processes,
    and a header [reset generation, start time] every process sees (so a reset also drops other workers'
    half-filled buffers)."""

    def __init__(self, directory: str | None):
        self._dir = Path(directory) if directory else None
        self._pid = -1
        self._local: np.ndarray | None = None
        self._shape = (CLIENT_BUCKETS + 1, len(FEATURE_NAMES) + 1, N_BINS)
        if self._dir is None:
            self.header = np.array([0.0, time.time()])
        else:  # created before gunicorn forks: a shared mapping stays shared in the workers
            self._dir.mkdir(parents=True, exist_ok=True)
            mapped = np.memmap(self._dir / "header.f64", np.float64, "w+", shape=(2,))
            mapped[:] = (0.0, time.time())
            self._header_map = mapped
            self.header = mapped.view(np.ndarray)

    def mine(self) -> np.ndarray:
        """This process's counts as a plain ndarray (a view of its memory-mapped file when shared)."""
        if self._local is None or self._pid != os.getpid():
            self._pid = os.getpid()
            if self._dir is None:
                self._local = np.zeros(self._shape)
            else:
                mapped = np.memmap(self._dir / f"counts-{self._pid}.f64", np.float64, "w+", shape=self._shape)
                self._mapped = mapped  # keeps the mapping alive
                self._local = mapped.view(np.ndarray)
        return self._local

    def total(self) -> np.ndarray:
        if self._dir is None:
            return self.mine().copy()
        out = np.zeros(self._shape)
        for path in glob.glob(str(self._dir / "counts-*.f64")):
            data = np.fromfile(path, np.float64)
            if data.size == out.size:
                out += data.reshape(self._shape)
        return out

    def reset(self) -> None:
        if self._dir is None:
            self.mine()[:] = 0
        else:
            for path in glob.glob(str(self._dir / "counts-*.f64")):
                counts = np.memmap(path, np.float64, "r+", shape=self._shape)
                counts[:] = 0
                counts.flush()
        self.header[:] = (self.header[0] + 1, time.time())

    @property
    def generation(self) -> float:
        return float(self.header[0])

    def since(self) -> float:
        return float(self.header[1])


class DriftMonitor:
    """One per worker: observes served images, reports PSI over the counts of all workers."""

    def __init__(
        self,
        baseline_block: object,
        threshold: float,
        min_images: int,
        sample_every: int = 8,
        state_dir: str | None = None,
        min_clients: int = 1,
        max_client_images: int = 0,  # 0: no cap
    ):
        self.baseline = Baseline(baseline_block)
        self.threshold = threshold
        self.min_images = min_images
        self.min_clients = min_clients
        self.max_client_images = max_client_images
        self.sample_every = max(1, sample_every)
        self._store = _CountStore(state_dir)
        self._buffer = np.empty((2 * FEATURE_BATCH, *IMAGE_SHAPE), np.uint8)
        self._buffer_classes = np.zeros(2 * FEATURE_BATCH, np.int64)
        self._buffer_buckets = np.zeros(2 * FEATURE_BATCH, np.int64)
        self._buffered = 0
        self._seen = 0
        self._generation = self._store.generation

    def use_baseline(self, baseline_block: object) -> None:
        """Compare against this baseline from now on (a model was promoted after start-up)."""
        self.baseline = Baseline(baseline_block)

    def observe(self, pixels: np.ndarray, predicted: np.ndarray, caller: Callable[[], str] | None = None) -> None:
        """Count predicted classes of all images; histogram the features of every k-th image under its caller's
        client bucket (`caller` gives the caller's key, asked only when an image is sampled)."""
        counts = self._store.mine()
        n = len(predicted)
        if n == 1:
            counts[ALL, -1, int(predicted[0])] += 1
        else:
            counts[ALL, -1] += np.bincount(predicted, minlength=N_CLASSES)
        if not self.baseline.usable:
            return
        first = (-self._seen) % self.sample_every
        self._seen += n
        if first >= n:
            return  # none of these images is sampled: the common case for single-image requests
        self._drop_buffer_if_reset()
        bucket = client_bucket(caller()) if caller is not None else 0
        picked = pixels[first :: self.sample_every]
        classes = predicted[first :: self.sample_every]
        if len(picked) >= FEATURE_BATCH:
            self._add_features(picked, classes, np.full(len(picked), bucket))
            return
        if len(picked):
            end = self._buffered + len(picked)
            self._buffer[self._buffered : end] = picked  # float -> uint8 truncates, as the feature function does
            self._buffer_classes[self._buffered : end] = classes
            self._buffer_buckets[self._buffered : end] = bucket
            self._buffered = end
            if self._buffered >= FEATURE_BATCH:
                self.flush()

    def _drop_buffer_if_reset(self) -> None:
        if self._store.generation != self._generation:  # a worker reset the counts: older images do not count
            self._generation = self._store.generation
            self._buffered = 0

    def flush(self) -> None:
        """Add the buffered images' feature bins to this worker's counts."""
        self._drop_buffer_if_reset()
        if self._buffered:
            n = self._buffered
            self._add_features(self._buffer[:n], self._buffer_classes[:n], self._buffer_buckets[:n])
            self._buffered = 0

    def _add_features(self, images: np.ndarray, classes: np.ndarray, buckets: np.ndarray) -> None:
        """One histogram update for all features and the classes: each image's cell in its bucket's flattened
        [features + classes, bins] block, counted by one bincount (np.add.at and a call per feature cost more)."""
        cells = np.empty((len(FEATURE_NAMES) + 1, len(images)), np.intp)
        cells[:-1] = bin_matrix(self.baseline.edges, feature_matrix(images))
        cells[-1] = classes
        cells += _ROW_START
        counts = self._store.mine()
        first = int(buckets[0])
        if int(buckets.min()) == int(buckets.max()):  # the usual case: one request's images, one client
            counts[first] += np.bincount(cells.ravel(), minlength=CELLS).reshape(counts.shape[1:])
        else:
            cells += buckets * CELLS
            counts[:ALL] += np.bincount(cells.ravel(), minlength=ALL * CELLS).reshape(ALL, *counts.shape[1:])

    @property
    def min_client_images(self) -> int:
        """Sampled images one client bucket needs before its own drift is judged: its share of min_images."""
        return max(1, -(-self.min_images // self.min_clients))

    def client_drift(self) -> dict[str, tuple[int, bool]]:
        """{client bucket: (its sampled images, whether its own images drifted)} for every bucket with images.
        Why: the fleet's drift query (contracts.monitoring_queries) counts the DISTINCT buckets that drifted over
        every instance, so one client flooding odd images is one bucket, whatever it sends. Scrape time only.
        A bucket holds few images, so its PSI is judged on smoothed shares (half an image added to every bin: an
        empty bin would otherwise weigh ln(share / 1e-4)) and must exceed both the threshold and what chance gives
        that many images (n x PSI beyond chi-square's 99.9 % quantile at 9 degrees of freedom), once the bucket
        holds DRIFT_MIN_IMAGES / DRIFT_MIN_CLIENTS images."""
        self.flush()
        per_client = self._store.total()[:ALL]
        images = per_client[:, 0].sum(axis=1)
        seen = np.flatnonzero(images)
        drifted = np.zeros(len(images), dtype=bool)
        judged = seen[images[seen] >= self.min_client_images] if self.baseline.usable else seen[:0]
        if len(judged):  # every judged bucket's PSI per row at once (contracts.features' formula, vectorized)
            n = images[judged]
            shares = (per_client[judged] + 0.5) / (n + 0.5 * per_client.shape[-1])[:, None, None]
            expected = np.maximum(np.vstack([self.baseline.expected, self.baseline.class_expected]), PSI_FLOOR)
            observed = np.maximum(shares, PSI_FLOOR)
            worst = ((observed - expected) * np.log(observed / expected)).sum(axis=2).max(axis=1)
            drifted[judged] = worst > np.maximum(self.threshold, CHI2_999_9DOF / n)
        out: dict[str, tuple[int, bool]] = {}
        for bucket in seen.tolist():
            n_images, flag = int(images[bucket]), bool(drifted[bucket])
            out[f"{bucket:02d}"] = (n_images, flag)
        return out

    def reset(self) -> None:
        self._buffered = 0
        self._store.reset()

    def report(self) -> dict[str, Any]:
        """PSI per feature and for predicted classes, the drift flag, and the numbers behind them."""
        self.flush()
        stored = self._store.total()
        classes_seen = int(stored[ALL, -1].sum())
        per_client = stored[:ALL]
        images = per_client[:, 0].sum(axis=1)  # sampled images per client bucket
        clients, sampled = int(np.count_nonzero(images)), int(images.sum())
        cap = self.max_client_images
        weights = np.where(images > cap, cap / np.maximum(images, 1), 1.0) if cap else np.ones_like(images)
        counts = (per_client * weights[:, None, None]).sum(axis=0)
        report = {
            "drift_detected": False,
            "threshold": self.threshold,
            "min_images": self.min_images,
            "min_clients": self.min_clients,
            "max_client_images": cap or None,
            "images_seen": classes_seen,
            "images_sampled": sampled,
            "images_credited": round(float(counts[0].sum()), 3),
            "clients": clients,
            "sample_every": self.sample_every,
            "feature_function": FEATURE_FUNCTION_ID,
            "since": datetime.fromtimestamp(self._store.since(), UTC).isoformat(timespec="seconds"),
        }
        if not self.baseline.usable:
            return {**report, "status": "no_baseline", "detail": self.baseline.problem}
        if sampled < self.min_images or clients < self.min_clients:
            return {
                **report,
                "status": "insufficient_data",
                "detail": f"{sampled} of the {self.min_images} sampled images and {clients} of the "
                f"{self.min_clients} distinct clients needed before PSI is meaningful",
            }
        features = {}
        for row, name in enumerate(FEATURE_NAMES):
            psi = population_stability_index(self.baseline.expected[row], counts[row] / counts[row].sum())
            features[name] = {"psi": round(psi, 6), "drifted": psi > self.threshold}
        observed = counts[-1] / max(float(counts[-1].sum()), 1.0)  # the sampled images' classes, capped
        class_psi = population_stability_index(self.baseline.class_expected, observed)
        drifted = [name for name, item in features.items() if item["drifted"]]
        if class_psi > self.threshold:
            drifted.append("predicted_class")
        return {
            **report,
            "status": "ok",
            "drift_detected": bool(drifted),
            "drifted": drifted,
            "features": features,
            "classes": {
                "psi": round(class_psi, 6),
                "drifted": class_psi > self.threshold,
                "observed_proportions": [round(float(p), 6) for p in observed],
                "baseline_proportions": [float(p) for p in self.baseline.class_expected],
            },
        }
