"""Input and prediction drift against the training baseline in metadata.json, shared by all gunicorn workers.

What is compared (docs/CONTRACTS.md): per feature, the share of served images in each of the baseline's 10 bins
(`searchsorted(edges, value, side="right")`), and the predicted-class shares against `classes.proportions`, as a
population stability index with proportions clamped to >= 1e-4.
Why shared files: each worker adds its counts into its own small memory-mapped file in the service's state
directory, so a report from any worker sums the traffic of all of them without locks or a second process.
Why sampling: computing features costs a fixed ~100-300 us per call (numpy calls on caches that inference has
just emptied) plus ~1 us per image; every image's predicted class is counted, and every k-th image's features
(DRIFT_SAMPLE_EVERY, default 8) are computed, in batches of PENDING (64): sampled images wait in a pending area
that every worker's report reads too (_CountStore), so no sampled image is ever counted late.
Counts accumulate from start-up or the last reset (POST /monitoring/drift/reset).
Why per client (issue 24): drift starts a retraining run, so one client sending odd images must not flag it. The
sampled images' features and predicted classes are counted per client bucket (service/caller.py: who the platform
says is calling, hashed into CLIENT_BUCKETS); a report needs DRIFT_MIN_CLIENTS distinct buckets, and a bucket over
DRIFT_MAX_CLIENT_IMAGES sampled images is scaled down to that many, so its share of the histograms is capped.
The bucket is computed only for requests with a sampled image (1 in DRIFT_SAMPLE_EVERY images).
"""

from __future__ import annotations

import fcntl
import glob
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

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

PENDING = 64  # sampled images per feature computation (_CountStore): amortizes its fixed cost
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


Update = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]  # (counts, images, classes, buckets)


class _CountStore:
    """Counts [client buckets + 1, features + 1, 10] (per bucket: the sampled images' feature bins and, last row,
    their predicted classes; slot ALL: every image's predicted class) for this process, plus the sum over all processes,
    and a header [reset generation, start time] every process sees.

    Sampled images wait in a pending area of PENDING images before their features are computed in one batch: the
    computation's cost is mostly fixed per call (numpy's per-call cost and cold caches after inference), so a batch
    of 64 costs about what a batch of 8 did. Why that changes no count: the pending area is shared too (a memory-mapped
    file per process beside its counts), and a read of the totals computes the features of every process's pending
    images, so any report counts every sampled image at once. A lock per process file (flock: shared to read,
    exclusive to append, flush or reset) keeps a reader from seeing images both pending and already counted."""

    def __init__(self, directory: str | None, pending: int = PENDING):
        self._dir = Path(directory) if directory else None
        self._pid = -1
        self._local: np.ndarray | None = None
        self._shape = (CLIENT_BUCKETS + 1, len(FEATURE_NAMES) + 1, N_BINS)
        self.pending = pending
        self._lock_fd = -1
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
                self._images = np.zeros((self.pending, *IMAGE_SHAPE), np.uint8)
                self._meta = np.zeros((self.pending + 1, 2), np.int64)
            else:
                self._local, self._images, self._meta, self._maps = self._open(self._pid, "w+")
                self._lock_fd = os.open(self._dir / f"counts-{self._pid}.f64", os.O_RDONLY | os.O_CLOEXEC)
        return self._local

    def _open(
        self, pid: int, mode: Literal["r", "r+", "w+"]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.memmap, ...]]:
        """A process's counts, pending images and pending (class, bucket) rows, whose last row holds [count, 0]."""
        assert self._dir is not None
        maps = (
            np.memmap(self._dir / f"counts-{pid}.f64", np.float64, mode, shape=self._shape),
            np.memmap(self._dir / f"pending-{pid}.u8", np.uint8, mode, shape=(self.pending, *IMAGE_SHAPE)),
            np.memmap(self._dir / f"pending-{pid}.i64", np.int64, mode, shape=(self.pending + 1, 2)),
        )
        counts, images, meta = (m.view(np.ndarray) for m in maps)
        return counts, images, meta, maps

    def append(self, images: np.ndarray, classes: np.ndarray, bucket: int, update: Update) -> None:
        """Add sampled images (uint8 or float pixels, truncated like astype(uint8)) of one caller: into the
        pending area, or through `update` once it is full."""
        counts = self.mine()
        fd = self._lock_fd  # flock directly, not through _locked: this runs in requests (1 in DRIFT_SAMPLE_EVERY)
        if fd >= 0:
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            meta = self._meta
            n, k = int(meta[-1, 0]), len(images)
            if n + k > self.pending:
                update(counts, self._images[:n], meta[:n, 0], meta[:n, 1])
                n = 0
            if k >= self.pending:
                update(counts, images, classes, np.full(k, bucket))
            else:
                self._images[n : n + k] = images
                meta[n : n + k, 0] = classes
                meta[n : n + k, 1] = bucket
                n += k
            meta[-1, 0] = n
        finally:
            if fd >= 0:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def flush(self, update: Update) -> None:
        """Count this process's pending images now."""
        counts = self.mine()
        with self._locked(self._lock_fd, fcntl.LOCK_EX):
            n = int(self._meta[-1, 0])
            if n:
                update(counts, self._images[:n], self._meta[:n, 0], self._meta[:n, 1])
                self._meta[-1, 0] = 0

    def total(self, update: Update) -> np.ndarray:
        """Every process's counts, its pending images counted through `update` (nothing is written back)."""
        if self._dir is None:
            out = self.mine().copy()
            n = int(self._meta[-1, 0])
            update(out, self._images[:n], self._meta[:n, 0], self._meta[:n, 1])
            return out
        out = np.zeros(self._shape)
        pending = []
        for counts, images, meta, _ in self._each_process("r", fcntl.LOCK_SH):
            n = int(meta[-1, 0])
            out += counts
            pending.append((images[:n].copy(), meta[:n, 0].copy(), meta[:n, 1].copy()))
        for batch in pending:  # features computed with no worker's lock held: its appends do not wait for them
            update(out, *batch)
        return out

    def reset(self) -> None:
        if self._dir is None:
            self.mine()[:] = 0
            self._meta[-1, 0] = 0
        else:
            for counts, _, meta, maps in self._each_process("r+", fcntl.LOCK_EX):
                counts[:] = 0
                meta[-1, 0] = 0
                for mapped in maps:
                    mapped.flush()
        self.header[:] = (self.header[0] + 1, time.time())

    def _each_process(
        self, mode: Literal["r", "r+"], lock: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.memmap, ...]]]:
        """Every process's files (_open), each under its lock while the caller uses them; a process whose files
        are gone or not all written yet is skipped."""
        assert self._dir is not None
        for path in glob.glob(str(self._dir / "counts-*.f64")):
            pid = int(Path(path).stem.split("-")[1])
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                with self._locked(fd, lock):
                    try:
                        opened = self._open(pid, mode)
                    except (FileNotFoundError, ValueError):  # a process that had not written its pending files yet
                        continue
                    yield opened
            finally:
                os.close(fd)

    @staticmethod
    @contextmanager
    def _locked(fd: int, mode: int) -> Iterator[None]:
        if fd < 0:  # counts in this process only: nothing to share
            yield
            return
        fcntl.flock(fd, mode)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

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
        self._seen = 0

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
        bucket = client_bucket(caller()) if caller is not None else 0
        step = self.sample_every
        self._store.append(pixels[first::step], predicted[first::step], bucket, self._add_features)

    def flush(self) -> None:
        """Add this worker's pending images' feature bins to its counts (reports count them without this)."""
        self._store.flush(self._add_features)

    def _add_features(self, counts: np.ndarray, images: np.ndarray, classes: np.ndarray, buckets: np.ndarray) -> None:
        """One histogram update for all features and the classes: each image's cell in its bucket's flattened
        [features + classes, bins] block, counted by one bincount (np.add.at and a call per feature cost more)."""
        if not len(images) or not self.baseline.usable:
            return
        cells = np.empty((len(FEATURE_NAMES) + 1, len(images)), np.intp)
        cells[:-1] = bin_matrix(self.baseline.edges, feature_matrix(images))
        cells[-1] = classes
        cells += _ROW_START
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
        per_client = self._store.total(self._add_features)[:ALL]
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
        self._store.reset()

    def report(self) -> dict[str, Any]:
        """PSI per feature and for predicted classes, the drift flag, and the numbers behind them."""
        stored = self._store.total(self._add_features)
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
