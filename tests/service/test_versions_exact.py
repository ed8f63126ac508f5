"""What a ModelSlot's swap and build do beyond serving the new version, exactly: the swap returns as soon as the
old version's last request ends (not a second later), it completes where the C library has no malloc_trim (musl,
macOS) or cannot be opened, each swap is counted under its role, and the ready line's session + warm-up time is
the build's own time in milliseconds."""

from __future__ import annotations

import logging
import re
import threading
import time

import pytest
from prometheus_client import REGISTRY

from service import versions
from service.config import ServiceConfig
from tests.service.model_factory import local_registry, make_version, register, signed_registry
from tests.service.test_versions import slot_for


def _swaps(role: str) -> float:
    return REGISTRY.get_sample_value("fmnist_model_swaps_total", {"role": role}) or 0.0


@pytest.fixture
def two_versions(tmp_path, model_dir):
    """A local registry whose champion is v1, v2 built and not registered yet."""
    registry = local_registry(tmp_path / "models")
    built = {name: make_version(model_dir, tmp_path / "build" / name, name) for name in ("v1", "v2")}
    register(registry, built["v1"][0], "v1", built["v1"][1])
    return registry, built


def test_a_swap_returns_as_soon_as_the_old_versions_last_request_ends(two_versions):
    registry, built = two_versions
    slot = slot_for(f"{registry.root}@champion")
    held = [slot.current]  # a request still running with v1, for 0.1 s more
    ended: list[float] = []

    def request_ends() -> None:
        held.clear()
        ended.append(time.monotonic())

    register(registry, built["v2"][0], "v2", built["v2"][1])
    timer = threading.Timer(0.1, request_ends)
    timer.start()
    try:
        assert slot.poll_once() is True and slot.current.version == "v2"
    finally:
        timer.join()
    waited = time.monotonic() - ended[0]
    assert waited < 0.9, f"the swap returned {waited:.2f} s after v1's last request ended"


@pytest.mark.parametrize("libc", [OSError("cannot open the process's own library"), object()], ids=["oserror", "musl"])
def test_a_swap_completes_where_malloc_trim_is_missing_or_the_c_library_cannot_be_opened(
    two_versions, monkeypatch, libc
):
    registry, built = two_versions
    slot = slot_for(f"{registry.root}@champion")

    def cdll(name):
        assert name is None  # the process's own symbols: glibc's malloc_trim where there is one
        if isinstance(libc, Exception):
            raise libc
        return libc  # no malloc_trim attribute, as on musl or macOS

    monkeypatch.setattr(versions.ctypes, "CDLL", cdll)
    register(registry, built["v2"][0], "v2", built["v2"][1])
    assert slot.poll_once() is True and slot.current.version == "v2"


def test_each_swap_is_counted_once_under_its_role(two_versions):
    registry, built = two_versions
    reference = f"{registry.root}@champion"
    before = _swaps("challenger")
    slot = versions.ModelSlot(reference, "challenger", ServiceConfig(model_uri=reference))
    slot.prepare()
    slot.activate()
    assert _swaps("challenger") == before + 1  # the first version served is a swap from nothing
    register(registry, built["v2"][0], "v2", built["v2"][1])
    assert slot.poll_once() is True
    assert _swaps("challenger") == before + 2


def test_the_ready_line_gives_the_builds_own_time_in_milliseconds(two_versions, caplog):
    registry, _ = two_versions
    caplog.set_level(logging.INFO, logger="service")
    started = time.perf_counter()
    slot_for(f"{registry.root}@champion")
    elapsed_ms = (time.perf_counter() - started) * 1000
    (ready,) = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "model_ready"]
    built_ms = float(re.fullmatch(r".*; session \+ warm-up (\d+\.\d) ms\)", ready.getMessage()).group(1))
    assert 0.1 <= built_ms <= elapsed_ms  # an ONNX Runtime session and one warm-up run take more than 0.1 ms


def test_an_unverified_version_is_called_unverified_in_its_ready_line(tmp_path, model_dir, caplog):
    import os

    caplog.set_level(logging.INFO, logger="service")
    directory, _ = make_version(model_dir, tmp_path / "old", "v-old", digests=False)
    slot_for(directory)
    (ready,) = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "model_ready"]
    assert ready.getMessage().startswith(f"model v-old ready in worker {os.getpid()} (model.onnx, unverified; ")


def test_a_public_key_that_is_not_pem_is_refused_naming_the_setting(tmp_path):
    from service.index_verification import PublicKeyError

    reference = f"{tmp_path / 'models'}@champion"
    config = ServiceConfig(model_uri=reference, index_public_key=b"not a key")
    with pytest.raises(PublicKeyError, match=r"^INDEX_PUBLIC_KEY: not a PEM public key \("):
        versions.ModelSlot(reference, "champion", config)


def test_the_masters_read_error_is_the_reason_nothing_serves_before_any_worker_polls(two_versions, tmp_path):
    registry, _ = two_versions
    metadata = tmp_path / "models" / "registry" / "versions" / "v1" / "metadata.json"
    assert metadata.is_file()
    metadata.rename(tmp_path / "metadata.json")
    metadata.mkdir()  # reading it fails with an OS error, as during a storage outage
    reference = f"{registry.root}@champion"
    slot = versions.ModelSlot(reference, "champion", ServiceConfig(model_uri=reference))
    slot.prepare()  # the gunicorn master, before forking: what /health says until a worker reads v1
    assert slot.pending is None and slot.refused == {}
    assert slot.waiting_reason == f"cannot load version v1: cannot read {metadata}: Is a directory"
    assert slot.waiting_code == "read_error"


def test_an_older_signed_index_is_refused_after_a_restart_too(tmp_path, model_dir):
    """The highest sequence accepted lives in SERVICE_STATE_DIR, so a restarted worker still refuses the
    promoter's own earlier index written back (a rollback by replay), and serves what the newest index it accepted
    names (its bytes are kept there too), not what the replay names."""
    import storage

    registry, promoter, built = signed_registry(tmp_path, model_dir)
    v1_index = storage.read_bytes(registry.index_uri)
    register(registry, built["v2"][0], "v2", built["v2"][1])
    state = tmp_path / "state"
    state.mkdir()
    reference = f"{registry.root}@champion"
    config = {"index_public_key": promoter.public_key_pem(), "state_dir": str(state)}
    assert slot_for(reference, **config).current.version == "v2"

    storage.write_bytes(registry.index_uri, v1_index)
    restarted = slot_for(reference, **config)  # a new worker (or a restarted service) on the same state dir
    assert restarted.current.version == "v2" and restarted.waiting_reason is None
    (state / "index-accepted.json").unlink()  # state from before the kept bytes: nothing to follow, nothing served
    restarted = slot_for(reference, **config)
    assert restarted.current is None
    assert restarted.waiting_reason.startswith(f"the registry index was refused: {registry.index_uri} has sequence ")
