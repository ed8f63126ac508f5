"""Replay protection of the signed index (issue 25): every registry write raises the index's sequence inside the
signed bytes, and the workers of one service share the highest sequence accepted (the real thing end to end:
tests/service/test_index_forgery.py)."""

from __future__ import annotations

import json

import pytest

from contracts.registry_index import RegistryIndexError, parse_index
from service.index_verification import ACCEPTED_FILE, SEQUENCE_FILE, IndexRefused, ReplayGuard
from trainer.models.registry import ModelRegistry


def index(sequence: int | None) -> bytes:
    document = {"versions": {}, "aliases": {}}
    if sequence is not None:
        document["sequence"] = sequence
    return json.dumps(document).encode()


def test_every_registry_write_raises_the_sequence(tmp_path):
    registry = ModelRegistry(str(tmp_path / "models"))
    version = registry.register({"model.onnx": b"x"}, {"accuracy": 0.9}, "custom", dataset_version=None)
    first = registry.read_index().sequence
    registry.promote(version)
    registry.record("canary_started", version)
    assert (first, registry.read_index().sequence) == (1, 3)


def test_a_lower_sequence_is_refused_by_every_worker_sharing_the_state_dir(tmp_path):
    one, two = ReplayGuard(str(tmp_path)), ReplayGuard(str(tmp_path))
    assert one.admit(index(5), "index.json") == 5
    assert (tmp_path / SEQUENCE_FILE).read_text() == "5"
    with pytest.raises(IndexRefused, match=r"sequence 3, older than .*\(sequence 5\)") as refused:
        two.admit(index(3), "index.json")  # the other worker never saw sequence 5 itself
    assert refused.value.reason == "replayed"
    assert two.admit(index(5), "index.json") == 5  # the same index read again by the other worker
    assert two.admit(index(6), "index.json") == 6
    with pytest.raises(IndexRefused):
        one.admit(index(None), "index.json")  # an index from before sequences, once one with a sequence served


def test_without_a_state_dir_the_guard_remembers_in_memory():
    guard = ReplayGuard(None)
    guard.admit(index(2), "index.json")
    with pytest.raises(IndexRefused, match="replay"):
        guard.admit(index(1), "index.json")


@pytest.mark.parametrize("bad", [-1, "7", 1.5, True])
def test_a_malformed_sequence_is_refused(bad, tmp_path):
    with pytest.raises(RegistryIndexError, match="sequence must be a non-negative integer"):
        parse_index({"versions": {}, "aliases": {}, "sequence": bad}, "index.json")
    with pytest.raises(IndexRefused) as refused:
        ReplayGuard(str(tmp_path)).admit(json.dumps({"sequence": bad}).encode(), "index.json")
    assert refused.value.reason == "malformed"


@pytest.mark.parametrize("shared", [True, False])
def test_the_newest_accepted_index_is_kept_for_every_worker(tmp_path, shared):
    """Its bytes, for a worker whose polls missed it (service/versions.py follows what it names on a replay)."""
    one = ReplayGuard(str(tmp_path) if shared else None)
    two = ReplayGuard(str(tmp_path)) if shared else one
    assert two.newest() is None
    one.admit(index(5), "index.json")
    assert two.newest() == index(5)
    with pytest.raises(IndexRefused):
        two.admit(index(4), "index.json")
    assert one.newest() == index(5)  # a refused index is never kept
    two.admit(index(7), "index.json")
    assert one.newest() == index(7)
    if shared:
        assert (tmp_path / ACCEPTED_FILE).read_bytes() == index(7) and sorted(p.name for p in tmp_path.iterdir()) == [
            ACCEPTED_FILE,
            SEQUENCE_FILE,
        ]  # no temporary file left
        (tmp_path / ACCEPTED_FILE).unlink()  # state from a service before the kept bytes: the next accept writes it
        two.admit(index(7), "index.json")
        assert one.newest() == index(7)
