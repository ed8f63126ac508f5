"""One worker's rollout, exactly: models whose answers and inference times the test sets (a clock that only the
models move), so every counter a request writes is pinned to its value, its role and its caller's client bucket,
which model a paired request runs first, and what /monitoring/rollout says when a model is missing (issue 27:
the service-rollout group's survivors in `Rollout.predict`, `_score`, `_compare`, `_first` and the handles)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client import REGISTRY

from contracts.rollout import Thresholds
from service.config import RolloutConfig
from service.rollout import Rollout, Route, read_counters, route

SECRET = b"exact-routing-secret-0123456789"
NAMES = [f"class-{i}" for i in range(10)]


class Clock:
    """time.perf_counter for service.rollout: it moves only while a model predicts (by the model's seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Scripted:
    """A classifier answering one-hot rows of `classes` (cycled), taking `seconds` per call, logging each call."""

    name: str
    classes: list[int]
    seconds: float
    clock: Clock
    calls: list[str]
    fail: bool = False

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        self.calls.append(self.name)
        self.clock.now += self.seconds
        if self.fail:
            raise RuntimeError(f"{self.name}'s session is gone")
        chosen = [self.classes[i % len(self.classes)] for i in range(len(pixels))]
        return np.eye(10, dtype=np.float32)[chosen]


@dataclass(frozen=True)
class Model:
    version: str
    classifier: Scripted
    class_names: list[str] = field(default_factory=lambda: NAMES)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr("service.rollout.time", SimpleNamespace(perf_counter=clock))
    return clock


@pytest.fixture
def models(clock):
    """The champion (0.25 s a call) and the challenger (0.5 s), versions of their own: the process-wide counters
    hold only this test's rows for them."""
    calls: list[str] = []
    tag = uuid.uuid4().hex[:8]

    def make(role: str, classes: list[int], seconds: float, fail: bool = False) -> Model:
        return Model(f"{role}-{tag}", Scripted(role, classes, seconds, clock, calls, fail))

    return SimpleNamespace(make=make, calls=calls)


def _config(mode: str = "shadow", percent: float = 10.0, every: int = 1) -> RolloutConfig:
    return RolloutConfig("candidate", "/m@candidate", mode, percent, every, Thresholds(), SECRET)


def _rollout(config: RolloutConfig, challenger: Model | None, waiting: str | None = None) -> Rollout:
    return Rollout(config, SimpleNamespace(current=challenger, waiting_reason=waiting))


def _rows(*versions: str) -> dict[str, dict[tuple[str, ...], float]]:
    """Every non-zero rollout sample naming one of `versions`, but the histogram's buckets (a model's handles create
    its class and answer counters at zero)."""
    out: dict[str, dict[tuple[str, ...], float]] = {}
    for name, table in read_counters(REGISTRY.collect()).items():
        if name.endswith("_bucket"):
            continue
        mine = {key: value for key, value in table.items() if value and set(key) & set(versions)}
        if mine:
            out[name] = mine
    return out


def _caller(salt: str, canary: bool, percent: float = 50.0) -> str:
    """A caller on the given side of a canary of `percent` for the challenger `salt`."""
    for i in range(1000):
        caller = f"ip:192.0.2.{i}"
        if route(SECRET, salt, caller).in_canary(percent) == canary:
            return caller
    raise AssertionError("no caller found")


def _pixels(n: int) -> np.ndarray:
    return np.zeros((n, 28, 28), np.float32)


def test_a_shadow_request_writes_each_counter_once_in_its_caller_s_bucket(models):
    champion = models.make("champion", [3, 3, 5, 7], 0.25)
    challenger = models.make("challenger", [3, 4, 5, 7], 0.5)
    rollout = _rollout(_config("shadow"), challenger)
    caller = "ip:198.51.100.7"
    bucket = route(SECRET, challenger.version, caller).bucket
    answer = rollout.predict(_pixels(4), champion, caller)
    assert answer.model is champion
    np.testing.assert_array_equal(answer.probabilities, np.eye(10, dtype=np.float32)[[3, 3, 5, 7]])
    ours, theirs = champion.version, challenger.version
    assert _rows(ours, theirs) == {
        "fmnist_rollout_requests_total": {(ours, "champion", bucket): 1.0, (theirs, "challenger", bucket): 1.0},
        "fmnist_rollout_answered_total": {(ours, "champion"): 1.0},
        "fmnist_rollout_predicted_class_total": {
            ("class-3", ours, "champion"): 2.0,
            ("class-5", ours, "champion"): 1.0,
            ("class-7", ours, "champion"): 1.0,
            ("class-3", theirs, "challenger"): 1.0,
            ("class-4", theirs, "challenger"): 1.0,
            ("class-5", theirs, "challenger"): 1.0,
            ("class-7", theirs, "challenger"): 1.0,
        },
        # per image: 0.25 s / 4 and 0.5 s / 4
        "fmnist_rollout_inference_duration_seconds_count": {(ours, "champion"): 1.0, (theirs, "challenger"): 1.0},
        "fmnist_rollout_inference_duration_seconds_sum": {(ours, "champion"): 0.0625, (theirs, "challenger"): 0.125},
        "fmnist_rollout_compared_total": {(ours, theirs): 4.0},
        "fmnist_rollout_agreed_total": {(ours, theirs): 3.0},
        "fmnist_rollout_paired_requests_total": {(ours, theirs, bucket): 1.0},
        "fmnist_rollout_paired_agreement_total": {(ours, theirs, bucket): 0.75},
        "fmnist_rollout_paired_inference_seconds_total": {
            (ours, theirs, "champion", bucket): 0.25,
            (ours, theirs, "challenger", bucket): 0.5,
        },
    }


def test_a_canary_client_is_answered_by_the_challenger_and_paired_in_its_own_bucket(models):
    champion = models.make("champion", [1, 2], 0.25)
    challenger = models.make("challenger", [1, 1], 0.5)
    rollout = _rollout(_config("canary", percent=50.0, every=2), challenger)
    caller = _caller(challenger.version, canary=True)
    bucket = route(SECRET, challenger.version, caller).bucket
    for _ in range(2):  # the second is paired (every 2)
        answer = rollout.predict(_pixels(2), champion, caller)
        assert answer.model is challenger
        np.testing.assert_array_equal(answer.probabilities, np.eye(10, dtype=np.float32)[[1, 1]])
    ours, theirs = champion.version, challenger.version
    rows = _rows(ours, theirs)
    assert rows["fmnist_rollout_requests_total"] == {
        (ours, "champion", bucket): 1.0,
        (theirs, "challenger", bucket): 2.0,
    }
    assert rows["fmnist_rollout_answered_total"] == {(theirs, "challenger"): 2.0}
    assert rows["fmnist_rollout_paired_requests_total"] == {(ours, theirs, bucket): 1.0}
    assert rows["fmnist_rollout_paired_agreement_total"] == {(ours, theirs, bucket): 0.5}
    assert rows["fmnist_rollout_paired_inference_seconds_total"] == {
        (ours, theirs, "champion", bucket): 0.25,
        (ours, theirs, "challenger", bucket): 0.5,
    }
    assert (rows["fmnist_rollout_compared_total"], rows["fmnist_rollout_agreed_total"]) == (
        {(ours, theirs): 2.0},
        {(ours, theirs): 1.0},
    )


def test_a_client_outside_the_canary_is_answered_by_the_champion_alone(models):
    champion = models.make("champion", [2], 0.25)
    challenger = models.make("challenger", [2], 0.5)
    rollout = _rollout(_config("canary", percent=50.0, every=1), challenger)
    caller = _caller(challenger.version, canary=False)
    bucket = route(SECRET, challenger.version, caller).bucket
    for _ in range(3):
        assert rollout.predict(_pixels(1), champion, caller).model is champion
    assert models.calls == ["champion"] * 3  # never paired, whatever the sampling says
    rows = _rows(champion.version, challenger.version)
    assert rows["fmnist_rollout_requests_total"] == {(champion.version, "champion", bucket): 3.0}
    assert rows["fmnist_rollout_answered_total"] == {(champion.version, "champion"): 3.0}
    assert "fmnist_rollout_paired_requests_total" not in rows


@pytest.mark.parametrize("mode", ["shadow", "canary"])
def test_paired_requests_alternate_which_model_runs_first_and_unpaired_ones_do_not_count(models, mode):
    """The second run of the same pixels finds warm caches: a fixed order would make one model look faster."""
    champion = models.make("champion", [0], 0.25)
    challenger = models.make("challenger", [0], 0.5)
    rollout = _rollout(_config(mode, percent=100.0, every=2), challenger)
    for _ in range(8):  # every second request is paired
        rollout.predict(_pixels(1), champion, "ip:203.0.113.9")
    alone = "champion" if mode == "shadow" else "challenger"  # who answers an unpaired request
    pairs = [("champion", "challenger"), ("challenger", "champion")] * 2
    expected = [call for pair in pairs for call in (alone, *pair)]
    assert models.calls == expected


def test_a_failing_challenger_s_error_is_counted_in_its_caller_s_bucket_and_the_champion_answers(models, caplog):
    champion = models.make("champion", [6], 0.25)
    challenger = models.make("challenger", [6], 0.5, fail=True)
    caller = _caller(challenger.version, canary=True)
    bucket = route(SECRET, challenger.version, caller).bucket
    rollout = _rollout(_config("canary", percent=50.0, every=1), challenger)
    for _ in range(2):  # the first paired request runs the champion first, the second the challenger
        answer = rollout.predict(_pixels(2), champion, caller)
        assert answer.model is champion
        np.testing.assert_array_equal(answer.probabilities, np.eye(10, dtype=np.float32)[[6, 6]])
    ours, theirs = champion.version, challenger.version
    rows = _rows(ours, theirs)
    assert rows["fmnist_rollout_errors_total"] == {(theirs, "challenger", bucket): 2.0}
    assert rows["fmnist_rollout_requests_total"] == {
        (ours, "champion", bucket): 2.0,  # scored once each, whichever ran first
        (theirs, "challenger", bucket): 2.0,
    }
    assert rows["fmnist_rollout_answered_total"] == {(ours, "champion"): 2.0}
    assert models.calls == ["champion", "challenger", "challenger", "champion"]
    assert "fmnist_rollout_compared_total" not in rows
    logged = [r for r in caplog.records if r.name == "service" and r.exc_info]
    assert [r.getMessage() for r in logged] == [f"challenger {theirs} failed on a canary request"] * 2
    assert str(logged[0].exc_info[1]) == "challenger's session is gone"


def test_the_report_reads_the_slot_and_names_what_is_missing(models):
    champion = models.make("champion", [0], 0.25)
    config = _config("shadow")
    waiting = _rollout(config, None, waiting="the registry has no 'candidate' alias")
    report = waiting.report(champion)
    assert report["challenger_reference"] == "candidate"  # the operator's document by default
    assert report["champion"]["version"] == champion.version and report["challenger"] is None
    assert report["verdict"] == {
        "decision": "wait",
        "codes": ["no_challenger"],
        "reasons": ["no challenger model loaded: the registry has no 'candidate' alias"],
    }
    challenger = models.make("challenger", [0], 0.5)
    report = _rollout(config, challenger).report(None)
    assert report["champion"] is None and report["challenger"]["version"] == challenger.version
    assert report["verdict"]["codes"] == ["no_champion"]
    public = _rollout(config, challenger).report(champion, full=False)
    assert "challenger_reference" not in public and "reasons" not in public["verdict"]


def test_a_route_is_the_keyed_hash_s_bucket_and_draw_and_reads_200_characters_of_the_caller():
    # blake2b(b"v2\0ip:10.0.0.5", key=SECRET, digest_size=8) = 12790558035223270540 (big-endian):
    # bucket 12790558035223270540 % 64 = 12, draw (12790558035223270540 // 64) % 10000 = 3602
    assert route(SECRET, "v2", "ip:10.0.0.5") == Route("12", 3602)
    assert route(SECRET, "v3", "ip:10.0.0.5") == Route("56", 9392)  # salted by the challenger's version
    long = "x" * 200
    assert route(SECRET, "v2", long + "a") == route(SECRET, "v2", long + "b") == Route("04", 3855)
    assert route(SECRET, "v2", long[1:] + "b") == Route("37", 5656)


@pytest.mark.parametrize(
    "draw,percent,inside",
    [(999, 10.0, True), (1000, 10.0, False), (1234, 12.34, False), (1234, 12.35, True), (28, 0.29, True)],
)
def test_a_draw_is_in_the_canary_below_the_percentage_in_basis_points(draw, percent, inside):
    assert Route("00", draw).in_canary(percent) is inside


def test_a_one_image_request_s_latency_is_its_whole_inference_time(models):
    champion = models.make("champion", [9], 0.25)
    challenger = models.make("challenger", [9], 0.5)
    _rollout(_config("shadow"), challenger).predict(_pixels(1), champion, "ip:198.51.100.8")
    rows = _rows(champion.version, challenger.version)
    assert rows["fmnist_rollout_inference_duration_seconds_sum"] == {
        (champion.version, "champion"): 0.25,
        (challenger.version, "challenger"): 0.5,
    }


def test_without_a_loaded_challenger_the_champion_answers_uncounted(models):
    champion = models.make("champion", [4, 2], 0.25)
    answer = _rollout(_config("canary", percent=100.0), None).predict(_pixels(2), champion, "ip:198.51.100.9")
    assert answer.model is champion
    np.testing.assert_array_equal(answer.probabilities, np.eye(10, dtype=np.float32)[[4, 2]])
    assert models.calls == ["champion"] and _rows(champion.version) == {}
