"""ModelSlot on the trainer's real local registry: swaps, refusals that keep the old version serving, no
re-download of a refused version, an empty registry that gets a champion, rollback, pinned and plain references."""

import json
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from service.config import ServiceConfig
from service.model_errors import ModelRefused
from service.versions import NO_MODEL, ModelSlot
from tests.service.model_factory import local_registry, make_version, register


def refused_count(reason: str, role: str = "champion") -> float:
    return REGISTRY.get_sample_value("fmnist_model_refused_total", {"role": role, "reason": reason}) or 0.0


@pytest.fixture
def versions(tmp_path, model_dir):
    """Three versions of the test model, each with its own metadata and digests, not registered yet."""
    built = {}
    for name in ("v1", "v2", "v3"):
        built[name] = make_version(model_dir, tmp_path / "build" / name, name)
    return built


@pytest.fixture
def registry(tmp_path, versions):
    """A local models bucket whose champion is v1."""
    reg = local_registry(tmp_path / "models")
    register(reg, *versions["v1"][:1], "v1", versions["v1"][1])
    return reg


def slot_for(reference, **config) -> ModelSlot:
    slot = ModelSlot(str(reference), "champion", ServiceConfig(model_uri=str(reference), **config))
    slot.prepare()
    slot.activate()
    return slot


class CountingReads:
    """Wraps a slot's reader to count the reads of each file name (the bytes still come from the bucket); a local
    artifact is opened directly, and shows as its metadata.json read before it."""

    def __init__(self, slot: ModelSlot):
        self.names: list[str] = []
        reader, read, read_versioned, download = (
            slot._reader,
            slot._reader.read,
            slot._reader.read_versioned,
            slot._reader.download,
        )

        def counted(uri, generation=None):
            self.names.append(Path(uri).name)
            return read(uri, generation)

        def counted_versioned(uri):
            self.names.append(Path(uri).name)
            return read_versioned(uri)

        def counted_download(uri, sink):
            self.names.append(Path(uri).name)
            return download(uri, sink)

        reader.read, reader.read_versioned, reader.download = counted, counted_versioned, counted_download


def test_a_promotion_is_picked_up_by_the_next_poll_and_only_then(registry, versions):
    slot = slot_for(f"{registry.root}@champion")
    first = slot.current
    assert first.version == "v1" and first.artifact == "model.onnx" and first.bundle.verified
    first_id = id(first)
    del first  # the old version is dropped after a swap once nothing holds it
    assert slot.poll_once() is False  # nothing changed: nothing read but the index's status
    reads = CountingReads(slot)
    register(registry, versions["v2"][0], "v2", versions["v2"][1])
    assert slot.poll_once() is True
    assert slot.current.version == "v2" and id(slot.current) != first_id
    assert reads.names[:2] == ["index.json", "metadata.json"]
    assert slot.current.bundle.model_path == str(Path(registry.version_uri("v2")) / "model.onnx")
    reads.names.clear()
    assert slot.poll_once() is False and reads.names == []
    probabilities = slot.current.classifier.predict(_blank())
    assert probabilities.shape == (1, 10)


def _blank():
    import numpy as np

    return np.zeros((1, 28, 28), np.float32)


@pytest.mark.parametrize(
    "damage,reason,fragment",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:-100]), "digest_mismatch", "changed, truncated or damaged"),
        (lambda p: p.write_bytes(b"x" + p.read_bytes()[1:]), "digest_mismatch", "changed, truncated or damaged"),
        (lambda p: p.unlink(), "missing_file", "is missing (recorded sha256 "),
    ],
    ids=["truncated", "altered", "missing"],
)
def test_a_damaged_version_is_refused_and_the_old_one_keeps_serving(registry, versions, damage, reason, fragment):
    slot = slot_for(f"{registry.root}@champion")
    before = refused_count(reason)
    register(registry, versions["v2"][0], "v2", versions["v2"][1], promote=False)
    damage(Path(registry.version_uri("v2")) / "model.onnx")
    registry.promote("v2")
    assert slot.poll_once() is False
    assert slot.current.version == "v1"
    message = slot.refused["v2"]
    assert fragment in message and "model.onnx" in message
    recorded = versions["v2"][1]["model.onnx"]
    assert recorded in message
    if reason == "digest_mismatch":  # both digests, so the operator can tell which copy is wrong
        found = next(word for word in message.split() if len(word) == 64 and word != recorded)
        assert len(found) == 64
    assert refused_count(reason) == before + 1


def test_a_refused_version_is_not_downloaded_again(registry, versions):
    slot = slot_for(f"{registry.root}@champion")
    register(registry, versions["v2"][0], "v2", versions["v2"][1], promote=False)
    artifact = Path(registry.version_uri("v2")) / "model.onnx"
    artifact.write_bytes(artifact.read_bytes()[:1000])
    registry.promote("v2")
    assert slot.poll_once() is False and "v2" in slot.refused
    reads = CountingReads(slot)
    for n in range(3):
        registry.record("note", "v2", n=n)  # the index changes; the alias still names the refused version
        assert slot.poll_once() is False
    assert reads.names == ["index.json"] * 3  # the index, re-read because it changed; never v2's files
    assert slot.current.version == "v1"


def test_rollback_is_just_the_alias_moving_back(registry, versions):
    slot = slot_for(f"{registry.root}@champion")
    register(registry, versions["v2"][0], "v2", versions["v2"][1])
    assert slot.poll_once() and slot.current.version == "v2"
    registry.rollback()
    assert slot.poll_once() is True and slot.current.version == "v1"


def test_an_empty_registry_waits_then_serves_the_first_champion(tmp_path, versions):
    root = tmp_path / "models"
    slot = slot_for(f"{root}@champion")
    assert slot.current is None and slot.version == NO_MODEL
    assert "index.json does not exist" in slot.waiting_reason
    assert slot.poll_once() is False
    reg = local_registry(root)
    register(reg, versions["v1"][0], "v1", versions["v1"][1], promote=False)
    assert slot.poll_once() is False and "no 'champion' alias (aliases: candidate)" in slot.waiting_reason
    reg.promote("v1")
    assert slot.poll_once() is True and slot.current.version == "v1" and slot.waiting_reason is None


def test_a_refused_first_version_says_why_nothing_serves(tmp_path, versions):
    reg = local_registry(tmp_path / "models")
    register(reg, versions["v1"][0], "v1", versions["v1"][1], promote=False)
    (Path(reg.version_uri("v1")) / "model.onnx").write_bytes(b"not onnx")
    reg.promote("v1")
    slot = slot_for(f"{reg.root}@champion")
    assert slot.current is None and slot.waiting_reason.startswith("version v1 was refused: ")
    register(reg, versions["v2"][0], "v2", versions["v2"][1])
    assert slot.poll_once() is True and slot.current.version == "v2"


def test_a_graph_that_fails_warm_up_is_refused(registry, versions, tmp_path):
    from tests.service.test_runtime import _graph_without_softmax

    directory, _ = versions["v2"]
    _graph_without_softmax(directory / "model.onnx")
    from tests.service.model_factory import digest_files

    slot = slot_for(f"{registry.root}@champion")
    before = refused_count("invalid")
    register(registry, directory, "v2", digest_files(directory))
    assert slot.poll_once() is False and "do not sum to 1" in slot.refused["v2"]
    assert refused_count("invalid") == before + 1 and slot.current.version == "v1"


def test_a_malformed_index_keeps_the_current_version(registry, versions):
    slot = slot_for(f"{registry.root}@champion")
    Path(registry.index_uri).write_text("{not json")
    assert slot.poll_once() is False and slot.current.version == "v1"
    Path(registry.index_uri).write_text(json.dumps({"versions": {}, "aliases": {"champion": 7}}))
    assert slot.poll_once() is False and slot.current.version == "v1"


def test_a_plain_directory_never_polls(versions):
    directory, _ = versions["v1"]
    slot = slot_for(directory)
    assert slot.current.version == "v1" and not slot.follows_registry
    reads = CountingReads(slot)
    slot.start(0.01)
    assert slot._thread is None
    assert slot.poll_once() is False and reads.names == []


def test_a_plain_directory_with_a_damaged_artifact_stops_start_up(versions):
    directory, _ = versions["v1"]
    (directory / "model.onnx").write_bytes((directory / "model.onnx").read_bytes()[:-1])
    with pytest.raises(ModelRefused, match="changed, truncated or damaged"):
        slot_for(directory)


def test_a_version_id_reference_stays_on_that_version(registry, versions):
    slot = slot_for(f"{registry.root}@v1")
    register(registry, versions["v2"][0], "v2", versions["v2"][1])
    assert slot.poll_once() is False and slot.current.version == "v1"


def test_versions_without_digests_are_served_unverified_unless_required(tmp_path, model_dir, caplog):
    directory, _ = make_version(model_dir, tmp_path / "old", "v-old", digests=False)
    slot = slot_for(directory)
    assert slot.current.version == "v-old" and not slot.current.bundle.verified
    assert "served unverified" in caplog.text
    with pytest.raises(ModelRefused, match="REQUIRE_DIGESTS is on") as caught:
        slot_for(directory, require_digests=True)
    assert caught.value.reason == "no_digest"


def test_int8_serves_the_int8_artifact_when_the_export_passed_it(tmp_path, model_dir, caplog):
    with_int8, _ = make_version(model_dir, tmp_path / "q", "v-q", int8=True)
    slot = ModelSlot(str(with_int8), "champion", ServiceConfig(model_uri=str(with_int8)), artifact_preference="int8")
    slot.prepare()
    slot.activate()
    assert slot.current.artifact == "model.int8.onnx" and slot.current.bundle.verified
    without, _ = make_version(model_dir, tmp_path / "f", "v-f")
    slot = ModelSlot(str(without), "champion", ServiceConfig(model_uri=str(without)), artifact_preference="int8")
    slot.prepare()
    slot.activate()
    assert slot.current.artifact == "model.onnx"
    assert "has no int8 artifact" in caplog.text


def test_the_poll_thread_follows_the_alias(registry, versions):
    slot = slot_for(f"{registry.root}@champion")
    swapped = []
    slot.on_swap(lambda loaded: swapped.append(loaded.version))
    slot.start(0.05)
    try:
        register(registry, versions["v2"][0], "v2", versions["v2"][1])
        deadline = time.monotonic() + 10
        while slot.current.version != "v2" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert slot.current.version == "v2" and swapped == ["v2"]
    finally:
        slot.stop()
    assert slot._thread is None


def test_on_gcs_a_poll_is_one_generation_request_and_a_promotion_swaps(gcs_bucket, versions):
    reg = local_registry(f"{gcs_bucket}/models")
    register(reg, versions["v1"][0], "v1", versions["v1"][1])
    slot = slot_for(f"{gcs_bucket}/models@champion")
    assert slot.current.version == "v1" and slot.current.bundle.digests_from == "registry record"
    generations, reads = [], CountingReads(slot)
    generation = slot._reader.gcs().generation
    slot._reader.gcs().generation = lambda uri: generations.append(uri) or generation(uri)
    assert slot.poll_once() is False
    assert len(generations) == 1 and reads.names == []  # unchanged: one metadata request, no download
    register(reg, versions["v2"][0], "v2", versions["v2"][1])
    assert slot.poll_once() is True and slot.current.version == "v2"
    assert "model.onnx" in reads.names
    register(reg, versions["v3"][0], "v3", versions["v3"][1], promote=False)
    import storage

    storage.write_bytes(storage.join(reg.version_uri("v3"), "model.onnx"), b"\0" * 100)
    reg.promote("v3")
    assert slot.poll_once() is False and "changed, truncated or damaged" in slot.refused["v3"]
    assert slot.current.version == "v2"


def _damage(artifact: Path) -> None:
    artifact.write_bytes(artifact.read_bytes()[:-1])


def test_a_version_damaged_between_the_masters_read_and_the_workers_build_is_refused_and_polling_goes_on(
    registry, versions
):
    reference = f"{registry.root}@champion"
    slot = ModelSlot(reference, "champion", ServiceConfig(model_uri=reference))
    slot.prepare()  # the gunicorn master: v1 read and verified, no session yet
    _damage(Path(registry.version_uri("v1")) / "model.onnx")
    slot.activate()  # a worker: the session's file no longer matches its digest
    assert slot.current is None and list(slot.refused) == ["v1"]
    assert "changed, truncated or damaged" in slot.refused["v1"]
    assert slot.waiting_reason.startswith("version v1 was refused: ") and slot.waiting_code is not None
    register(registry, versions["v2"][0], "v2", versions["v2"][1])
    assert slot.poll_once() is True and slot.current.version == "v2"


def test_a_plain_directory_damaged_after_the_masters_read_stops_the_workers_boot(versions):
    directory, _ = versions["v1"]
    slot = ModelSlot(str(directory), "champion", ServiceConfig(model_uri=str(directory)))
    slot.prepare()
    _damage(directory / "model.onnx")
    with pytest.raises(ModelRefused, match="changed, truncated or damaged"):
        slot.activate()
