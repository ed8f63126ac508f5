"""A ModelSlot between the gunicorn master's read and the worker's session, and around its polls: a worker that
cannot read the prepared file retries instead of refusing the version, a worker forked while nothing was promoted
looks again at boot, the master's gs:// download lands in the server's state directory while a worker's poll
streams the artifact and keeps no copy, a poll during another poll does not wait for it, an index rewrite that
keeps the alias reloads nothing; a registry slot's MODEL_ARTIFACT and REQUIRE_DIGESTS, and how long a swap waits
for the old version's last request."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from prometheus_client import REGISTRY

from service.config import ServiceConfig
from service.versions import ModelSlot
from tests.service.model_factory import local_registry, make_version, register
from tests.service.test_versions import CountingReads, slot_for


def _swaps(role: str = "champion") -> float:
    return REGISTRY.get_sample_value("fmnist_model_swaps_total", {"role": role}) or 0.0


def _files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def test_a_worker_that_cannot_read_the_prepared_file_retries_it_instead_of_refusing_it(tmp_path, model_dir):
    registry = local_registry(tmp_path / "models")
    v1 = make_version(model_dir, tmp_path / "build" / "v1", "v1")
    register(registry, v1[0], "v1", v1[1])
    reference = f"{registry.root}@champion"
    slot = ModelSlot(reference, "champion", ServiceConfig(model_uri=reference))
    slot.prepare()  # the master read and verified v1
    artifact = Path(registry.version_uri("v1")) / "model.onnx"
    aside = artifact.rename(tmp_path / "model.onnx")
    artifact.mkdir()  # the worker's open fails with an OS error, as during a file server's outage
    slot.activate()
    assert slot.current is None and slot.refused == {}  # an outage is no verdict on the version
    assert slot.waiting_code == "read_error"
    assert slot.waiting_reason == f"cannot load version v1: cannot read {artifact}: Is a directory"
    artifact.rmdir()
    aside.rename(artifact)
    assert slot.poll_once() is True and slot.current.version == "v1"  # the index never changed: retried anyway


def test_a_worker_forked_before_the_first_promotion_looks_again_at_boot(tmp_path, model_dir):
    root = tmp_path / "models"
    reference = f"{root}@champion"
    slot = ModelSlot(reference, "champion", ServiceConfig(model_uri=reference))
    slot.prepare()  # the master: no registry yet, nothing pending
    assert slot.pending is None and slot.waiting_code == "not_promoted"
    registry = local_registry(root)
    v1 = make_version(model_dir, tmp_path / "build" / "v1", "v1")
    register(registry, v1[0], "v1", v1[1])
    slot.activate()  # the worker, after the promotion: it serves without waiting for its first poll interval
    assert slot.current is not None and slot.current.version == "v1"


def test_the_masters_download_goes_to_the_state_dir_and_a_workers_poll_keeps_no_copy(gcs_bucket, tmp_path, model_dir):
    registry = local_registry(f"{gcs_bucket}/models")
    built = {name: make_version(model_dir, tmp_path / "build" / name, name) for name in ("v1", "v2")}
    register(registry, built["v1"][0], "v1", built["v1"][1])
    state = tmp_path / "state"
    state.mkdir()
    reference = f"{gcs_bucket}/models@champion"
    slot = ModelSlot(reference, "champion", ServiceConfig(model_uri=reference, state_dir=str(state)))
    slot.prepare()  # the master downloads once, into the server's state directory
    assert slot.pending is not None and Path(slot.pending.model_path).parent.parent == state
    downloaded = _files(state)
    assert [Path(name).name for name in downloaded] == ["model.onnx"]
    slot.activate()
    assert slot.current.version == "v1"

    register(registry, built["v2"][0], "v2", built["v2"][1])
    assert slot.poll_once() is True and slot.current.version == "v2"
    # a worker's poll streams the artifact into a scratch file it deletes: the version's object is what it names
    assert slot.current.bundle.model_path == f"{registry.version_uri('v2')}/model.onnx"
    assert _files(state) == downloaded

    directory = f"{gcs_bucket}/models/registry/versions/v2"  # a plain gs:// directory: the master reads it alone
    plain = ModelSlot(directory, "champion", ServiceConfig(model_uri=directory, state_dir=str(state)))
    plain.prepare()
    assert plain.pending is not None and Path(plain.pending.model_path).parent.parent == state
    assert len(_files(state)) == 2


def test_a_poll_while_another_poll_loads_returns_at_once(tmp_path, model_dir):
    registry = local_registry(tmp_path / "models")
    built = {name: make_version(model_dir, tmp_path / "build" / name, name) for name in ("v1", "v2")}
    register(registry, built["v1"][0], "v1", built["v1"][1])
    slot = slot_for(f"{registry.root}@champion")
    register(registry, built["v2"][0], "v2", built["v2"][1])
    returned: list[bool] = []
    with slot._poll_lock:  # another poll (or the worker's activate) is loading a version
        poller = threading.Thread(target=lambda: returned.append(slot.poll_once()), daemon=True)
        poller.start()
        poller.join(10)
        assert returned == [False], "a poll must not queue behind the one that is loading"
    assert slot.current.version == "v1"
    assert slot.poll_once() is True and slot.current.version == "v2"


def test_an_index_rewrite_that_keeps_the_alias_reloads_nothing(tmp_path, model_dir):
    registry = local_registry(tmp_path / "models")
    built = {name: make_version(model_dir, tmp_path / "build" / name, name) for name in ("v1", "v2")}
    register(registry, built["v1"][0], "v1", built["v1"][1])
    slot = slot_for(f"{registry.root}@champion")
    register(registry, built["v2"][0], "v2", built["v2"][1])
    assert slot.poll_once() is True and slot.current.version == "v2"
    serving, swaps = slot.current, _swaps()
    reads = CountingReads(slot)
    for n in range(2):
        registry.record("note", "v2", n=n)  # the index changes; the champion alias still names v2
        assert slot.poll_once() is False
    assert reads.names == ["index.json"] * 2 and slot.current is serving and _swaps() == swaps


def test_a_registry_slot_serves_int8_when_asked_and_refuses_an_undigested_version_when_digests_are_required(
    tmp_path, model_dir
):
    registry = local_registry(tmp_path / "models")
    v1 = make_version(model_dir, tmp_path / "build" / "v1", "v1")
    quantized = make_version(model_dir, tmp_path / "build" / "v2", "v2", int8=True)
    register(registry, v1[0], "v1", v1[1])
    reference = f"{registry.root}@champion"
    config = ServiceConfig(model_uri=reference, require_digests=True)
    slot = ModelSlot(reference, "champion", config, artifact_preference="int8")
    slot.prepare()
    slot.activate()
    assert slot.current.version == "v1" and slot.current.artifact == "model.onnx"  # v1 has no int8 artifact
    register(registry, quantized[0], "v2", quantized[1])
    assert slot.poll_once() is True and slot.current.artifact == "model.int8.onnx"
    assert slot.current.bundle.model_path == f"{registry.version_uri('v2')}/model.int8.onnx"

    undigested, _ = make_version(model_dir, tmp_path / "build" / "v3", "v3", digests=False)
    register(registry, undigested, "v3", None)
    assert slot.poll_once() is False and slot.current.version == "v2"
    assert "REQUIRE_DIGESTS is on" in slot.refused["v3"]


def test_a_swap_waits_for_the_old_versions_last_request_two_seconds_at_most(tmp_path, model_dir):
    registry = local_registry(tmp_path / "models")
    built = {name: make_version(model_dir, tmp_path / "build" / name, name) for name in ("v1", "v2", "v3")}
    register(registry, built["v1"][0], "v1", built["v1"][1])
    slot = slot_for(f"{registry.root}@champion")
    swapped: list[float] = []
    slot.on_swap(lambda loaded: swapped.append(time.monotonic()))
    held = slot.current  # a request still running with v1
    register(registry, built["v2"][0], "v2", built["v2"][1])
    assert slot.poll_once() is True
    waited = time.monotonic() - swapped[-1]
    assert waited >= 2.0, f"the swap returned {waited:.2f} s after it, while v1 was still in use"
    del held
    register(registry, built["v3"][0], "v3", built["v3"][1])  # nothing holds v2 but the slot
    assert slot.poll_once() is True
    waited = time.monotonic() - swapped[-1]
    assert waited < 1.0, f"the swap waited {waited:.2f} s for a version nobody used"
