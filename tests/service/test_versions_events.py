"""What a ModelSlot tells the operator while a version cannot be read, exactly: the warning and its searchable
fields (once per distinct error, with the retry interval), why nothing serves, and that the reason follows the
registry; and the poll thread itself: MODEL_POLL_S by default, a daemon named after its role (it must not keep a
worker from exiting), an unexpected failure logged and polled past, `stop` bounded by its timeout."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from tests.service.model_factory import local_registry, make_version, register, signed_registry
from tests.service.test_versions import slot_for


def _records(caplog, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "fields", {}).get("event") == event]


def _unreadable(path: Path, aside: Path) -> Path:
    """Make `path` fail to read with an OS error (a directory where the file was), as a storage outage would."""
    path.rename(aside)
    path.mkdir()
    return aside


def _wait_for(condition, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_a_read_error_is_logged_once_with_its_fields_while_the_old_version_serves(tmp_path, model_dir, caplog):
    caplog.set_level(logging.INFO, logger="service")
    registry = local_registry(tmp_path / "models")
    v1, v2 = (make_version(model_dir, tmp_path / "build" / name, name) for name in ("v1", "v2"))
    register(registry, v1[0], "v1", v1[1])
    reference = f"{registry.root}@champion"
    slot = slot_for(reference, model_poll_s=7.5)
    register(registry, v2[0], "v2", v2[1], promote=False)
    metadata = Path(registry.version_uri("v2")) / "metadata.json"
    _unreadable(metadata, tmp_path / "metadata.json")
    registry.promote("v2")

    assert slot.poll_once() is False and slot.poll_once() is False  # the same error twice: one warning
    (warning,) = _records(caplog, "read_error")
    assert warning.levelno == logging.WARNING
    message = f"cannot load version v2: cannot read {metadata}: Is a directory"
    assert warning.getMessage() == f"{message}; retrying every 7.5 s"
    assert warning.fields == {"event": "read_error", "role": "champion", "reference": reference}
    assert slot.current.version == "v1"
    assert (slot.waiting_reason, slot.waiting_code) == (None, None)  # something serves: nobody is waiting


def test_nothing_serves_while_the_first_version_cannot_be_read_and_the_reason_follows_the_registry(tmp_path, model_dir):
    registry = local_registry(tmp_path / "models")
    v1 = make_version(model_dir, tmp_path / "build" / "v1", "v1")
    register(registry, v1[0], "v1", v1[1])
    metadata = Path(registry.version_uri("v1")) / "metadata.json"
    aside = _unreadable(metadata, tmp_path / "metadata.json")
    slot = slot_for(f"{registry.root}@champion")
    assert slot.current is None
    assert slot.waiting_reason == f"cannot load version v1: cannot read {metadata}: Is a directory"
    assert slot.waiting_code == "read_error"

    index = Path(registry.index_uri)
    saved = index.read_bytes()
    index.unlink()  # the registry is emptied after the read error: the reason says so, not the stale error
    assert slot.poll_once() is False
    assert slot.waiting_code == "not_promoted" and "index.json does not exist" in slot.waiting_reason

    index.write_bytes(saved)
    metadata.rmdir()
    aside.rename(metadata)
    assert slot.poll_once() is True and slot.current.version == "v1"
    assert (slot.waiting_reason, slot.waiting_code) == (None, None)


def test_the_poll_thread_polls_every_model_poll_s_as_a_daemon_named_after_its_role(tmp_path, model_dir):
    registry = local_registry(tmp_path / "models")
    v1, v2 = (make_version(model_dir, tmp_path / "build" / name, name) for name in ("v1", "v2"))
    register(registry, v1[0], "v1", v1[1])
    slot = slot_for(f"{registry.root}@champion", model_poll_s=0.05)
    slot.start()  # no interval given: MODEL_POLL_S
    try:
        thread = slot._thread
        assert thread is not None and thread.name == "model-poll-champion" and thread.daemon is True
        register(registry, v2[0], "v2", v2[1])
        assert _wait_for(lambda: slot.current.version == "v2")
    finally:
        slot.stop()


def test_an_unexpected_poll_failure_is_logged_and_the_thread_polls_on(tmp_path, model_dir, caplog):
    registry = local_registry(tmp_path / "models")
    v1 = make_version(model_dir, tmp_path / "build" / "v1", "v1")
    register(registry, v1[0], "v1", v1[1])
    slot = slot_for(f"{registry.root}@champion")
    calls = []

    def failing_once() -> bool:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("a bug in one poll")
        return False

    slot.poll_once = failing_once
    slot.start(0.02)
    try:
        assert _wait_for(lambda: len(calls) >= 3)
    finally:
        slot.stop()
    (failure,) = [r for r in caplog.records if r.levelno == logging.ERROR and "poll failed" in r.getMessage()]
    assert failure.getMessage() == "the champion model poll failed; trying again in 0.02 s"
    assert failure.exc_info is not None and str(failure.exc_info[1]) == "a bug in one poll"


def test_stop_waits_for_a_hung_poll_no_longer_than_its_timeout(tmp_path, model_dir):
    registry = local_registry(tmp_path / "models")
    v1 = make_version(model_dir, tmp_path / "build" / "v1", "v1")
    register(registry, v1[0], "v1", v1[1])
    slot = slot_for(f"{registry.root}@champion")
    entered, release = threading.Event(), threading.Event()

    def hung() -> bool:
        entered.set()
        release.wait(20)  # a storage read that does not come back
        return False

    slot.poll_once = hung
    slot.start(0.01)
    releaser = threading.Timer(8.0, release.set)  # ends the hang in any case, so a broken stop fails, not hangs
    releaser.start()
    try:
        assert entered.wait(15)
        started = time.monotonic()
        slot.stop(timeout_s=0.3)
        assert time.monotonic() - started < 5.0
        assert slot._thread is None
    finally:
        release.set()
        releaser.cancel()


def _served_registry(tmp_path, model_dir, *names, **config):
    """A local registry whose champion is the first of `names` (the others built, not registered) and its slot."""
    registry = local_registry(tmp_path / "models")
    built = {name: make_version(model_dir, tmp_path / "build" / name, name) for name in names}
    register(registry, built[names[0]][0], names[0], built[names[0]][1])
    reference = f"{registry.root}@champion"
    return registry, built, reference, slot_for(reference, **config)


def test_a_refusal_and_a_swap_are_logged_with_their_fields(tmp_path, model_dir, caplog):
    import os

    caplog.set_level(logging.INFO, logger="service")
    registry, built, reference, slot = _served_registry(tmp_path, model_dir, "v1", "v2", "v3")
    (ready,) = _records(caplog, "model_ready")
    assert ready.getMessage().startswith(
        f"model v1 ready in worker {os.getpid()} (model.onnx, sha256 checked against the registry record; "
        "session + warm-up "
    )
    assert ready.fields == {
        "event": "model_ready", "role": "champion", "reference": reference, "model_version": "v1",
        "artifact": "model.onnx",
    }  # fmt: skip
    assert _records(caplog, "model_swapped") == []  # the first version is no swap

    register(registry, built["v2"][0], "v2", built["v2"][1], promote=False)
    artifact = Path(registry.version_uri("v2")) / "model.onnx"
    artifact.write_bytes(artifact.read_bytes()[:-10])
    registry.promote("v2")
    assert slot.poll_once() is False
    (refusal,) = _records(caplog, "model_refused")
    detail = slot.refused["v2"]
    assert refusal.levelno == logging.ERROR
    assert refusal.getMessage() == (
        f"refused model version v2 for champion (digest_mismatch): {detail}; still serving v1"
    )
    assert refusal.fields == {
        "event": "model_refused", "role": "champion", "reference": reference, "model_version": "v2",
        "reason": "digest_mismatch", "detail": detail,
    }  # fmt: skip

    register(registry, built["v3"][0], "v3", built["v3"][1])
    assert slot.poll_once() is True
    (swap,) = _records(caplog, "model_swapped")
    assert swap.getMessage() == "champion now serves v3 (was v1)"
    assert swap.fields == {
        "event": "model_swapped", "role": "champion", "reference": reference, "model_version": "v3",
        "previous": "v1",
    }  # fmt: skip


def test_a_refused_first_version_is_logged_as_nothing_served(tmp_path, model_dir, caplog):
    registry = local_registry(tmp_path / "models")
    v1 = make_version(model_dir, tmp_path / "build" / "v1", "v1")
    register(registry, v1[0], "v1", v1[1], promote=False)
    artifact = Path(registry.version_uri("v1")) / "model.onnx"
    artifact.write_bytes(artifact.read_bytes()[:-10])
    registry.promote("v1")
    slot = slot_for(f"{registry.root}@champion")
    (refusal,) = _records(caplog, "model_refused")
    assert refusal.getMessage() == (
        f"refused model version v1 for champion (digest_mismatch): {slot.refused['v1']}; "
        "nothing is served until another version is promoted"
    )
    assert slot.waiting_reason == f"version v1 was refused: {slot.refused['v1']}"
    assert slot.waiting_code == "refused_digest_mismatch"


def test_an_index_without_the_alias_or_malformed_keeps_the_version_and_says_so(tmp_path, model_dir, caplog):
    import json

    registry, _, reference, slot = _served_registry(tmp_path, model_dir, "v1")
    index = Path(registry.index_uri)
    document = json.loads(index.read_text())
    del document["aliases"]["champion"]
    index.write_text(json.dumps(document))
    assert slot.poll_once() is False and slot.current.version == "v1"
    (unset,) = _records(caplog, "model_unset")
    assert unset.levelno == logging.WARNING
    assert unset.getMessage().startswith(f"no model to serve: the registry at {registry.root} has no 'champion' alias")
    assert unset.getMessage().endswith("; still serving v1")
    assert unset.fields == {"event": "model_unset", "role": "champion", "reference": reference}
    assert (slot.waiting_reason, slot.waiting_code) == (None, None)

    index.write_text("{not json")
    assert slot.poll_once() is False and slot.current.version == "v1"
    (invalid,) = _records(caplog, "index_invalid")
    assert invalid.levelno == logging.ERROR
    assert invalid.getMessage() == f"{invalid.fields['reason']}; still serving v1"
    assert invalid.fields["reason"].startswith(f"{index} is not valid JSON (")
    assert (slot.waiting_reason, slot.waiting_code) == (None, None)

    document["aliases"]["champion"] = "v1"
    document["versions"]["v1"]["path"] = "../../outside"
    index.write_text(json.dumps(document))
    assert slot.poll_once() is False and slot.current.version == "v1"
    outside = _records(caplog, "index_invalid")[-1].fields["reason"]
    assert outside.startswith(f"{index}: versions.v1.path '../../outside' must be a path relative to ")


def test_an_unreadable_index_is_warned_about_once_and_read_again_when_it_is_back(tmp_path, model_dir, caplog):
    registry, built, reference, slot = _served_registry(tmp_path, model_dir, "v1", "v2")
    index = Path(registry.index_uri)
    register(registry, built["v2"][0], "v2", built["v2"][1])
    aside = _unreadable(index, tmp_path / "index.json")
    assert slot.poll_once() is False and slot.poll_once() is False
    (warning,) = _records(caplog, "read_error")
    assert warning.getMessage() == f"cannot read {index}: Is a directory; retrying every 30 s"
    assert slot.current.version == "v1" and slot.waiting_reason is None
    index.rmdir()
    aside.rename(index)
    assert slot.poll_once() is True and slot.current.version == "v2"


def test_an_unreadable_signature_is_retried_and_warned_about_once(tmp_path, model_dir, caplog):
    from contracts.index_signature import signature_name

    registry, promoter, built = signed_registry(tmp_path, model_dir)
    slot = slot_for(f"{registry.root}@champion", index_public_key=promoter.public_key_pem())
    register(registry, built["v2"][0], "v2", built["v2"][1])
    signature = Path(registry.root) / signature_name(Path(registry.index_uri).read_bytes())
    aside = _unreadable(signature, tmp_path / "signature.json")
    assert slot.poll_once() is False and slot.poll_once() is False  # an outage, not a refusal: retried
    (warning,) = _records(caplog, "read_error")
    assert warning.getMessage() == f"cannot read {signature}: Is a directory; retrying every 30 s"
    assert _records(caplog, "index_refused") == [] and slot.current.version == "v1"
    signature.rmdir()
    aside.rename(signature)
    assert slot.poll_once() is True and slot.current.version == "v2"


def test_a_malformed_index_before_any_version_is_the_reason_nothing_serves(tmp_path):
    root = tmp_path / "models"
    (root / "registry").mkdir(parents=True)
    (root / "registry" / "index.json").write_text("[]")
    slot = slot_for(f"{root}@champion")
    assert slot.current is None and slot.waiting_code == "index_invalid"
    assert "index.json" in slot.waiting_reason and "got list" in slot.waiting_reason


def _index_refused(role: str, reason: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("fmnist_index_refused_total", {"role": role, "reason": reason}) or 0.0


def test_a_forged_and_a_replayed_index_are_refused_in_process_with_their_reason(tmp_path, model_dir, caplog):
    import storage
    from tests.service.test_index_forgery import forge

    registry, promoter, built = signed_registry(tmp_path, model_dir, ("v1", "evil", "v2"))
    v1_index = storage.read_bytes(registry.index_uri)
    reference = f"{registry.root}@champion"
    slot = slot_for(reference, index_public_key=promoter.public_key_pem())
    assert slot.current.version == "v1"

    before = _index_refused("champion", "unsigned")
    forge(registry, built["evil"][0], "evil", built["evil"][1])
    assert slot.poll_once() is False and slot.current.version == "v1"
    (refusal,) = _records(caplog, "index_refused")
    detail = refusal.fields["detail"]
    assert detail.startswith("the registry index (sha256 ") and "is unsigned" in detail
    assert refusal.levelno == logging.ERROR
    assert refusal.getMessage() == f"refused the registry index for champion (unsigned): {detail}; still serving v1"
    assert refusal.fields == {
        "event": "index_refused", "role": "champion", "reference": reference, "reason": "unsigned", "detail": detail,
    }  # fmt: skip
    assert _index_refused("champion", "unsigned") == before + 1
    assert slot.waiting_reason is None
    assert slot.poll_once() is False and len(_records(caplog, "index_refused")) == 1  # once per index version

    assert registry.restore()[:2] == (2, "v1")  # the promoter builds on its own index only (test_index_forgery.py)
    assert slot.poll_once() is False and len(_records(caplog, "index_refused")) == 1  # its own index: accepted
    register(registry, built["v2"][0], "v2", built["v2"][1])
    assert slot.poll_once() is True and slot.current.version == "v2"
    storage.write_bytes(registry.index_uri, v1_index)  # the promoter's own earlier index, written back
    assert slot.poll_once() is False and slot.current.version == "v2"
    replayed = _records(caplog, "index_refused")[-1]
    assert replayed.fields["reason"] == "replayed" and replayed.getMessage().endswith("; still serving v2")
    assert replayed.fields["detail"].startswith(f"{registry.index_uri} has sequence ")  # which index was old


def test_an_unsigned_index_at_start_up_is_why_nothing_serves(tmp_path, model_dir, caplog):
    from trainer.models.index_signing import LocalKeySigner

    promoter = LocalKeySigner(tmp_path / "promoter")
    registry = local_registry(tmp_path / "models")  # written without the promoter's key
    v1 = make_version(model_dir, tmp_path / "build" / "v1", "v1")
    register(registry, v1[0], "v1", v1[1])
    slot = slot_for(f"{registry.root}@champion", index_public_key=promoter.public_key_pem())
    assert slot.current is None
    (refusal,) = _records(caplog, "index_refused")
    assert refusal.getMessage().endswith("; nothing is served")
    assert slot.waiting_reason == f"the registry index was refused: {refusal.fields['detail']}"


@pytest.mark.parametrize("refused", ["replayed", "unsigned"])
def test_a_worker_whose_polls_missed_the_newest_index_follows_it_when_a_refused_one_lands(
    tmp_path, model_dir, caplog, refused
):
    """Two workers of one instance (two slots, one state directory): worker B's polls saw v1's index, then only the
    refused index written right after v2's (a replay, or a forgery). It follows what the newest index accepted (by
    worker A) names, v2, instead of staying on v1 beside A on v2: the second half of the CI failure of wave 3's
    tenth submission."""
    import storage
    from tests.service.test_index_forgery import forge

    registry, promoter, built = signed_registry(tmp_path, model_dir, ("v1", "v2", "evil"))
    v1_index = storage.read_bytes(registry.index_uri)
    reference, state = f"{registry.root}@champion", tmp_path / "state"
    state.mkdir()
    a, b = (slot_for(reference, index_public_key=promoter.public_key_pem(), state_dir=str(state)) for _ in "ab")
    assert (a.current.version, b.current.version) == ("v1", "v1")

    register(registry, built["v2"][0], "v2", built["v2"][1])
    assert a.poll_once() is True and a.current.version == "v2"  # B does not poll in between
    if refused == "replayed":
        storage.write_bytes(registry.index_uri, v1_index)
    else:
        forge(registry, built["evil"][0], "evil", built["evil"][1])
    assert b.poll_once() is True and b.current.version == "v2"
    (refusal,) = _records(caplog, "index_refused")
    assert refusal.fields["reason"] == refused
    assert refusal.getMessage().endswith("; following the newest index this service accepted, which names v2")
    assert a.poll_once() is False and a.current.version == "v2"  # A refuses it too and keeps v2
    assert _records(caplog, "index_refused")[-1].getMessage().endswith("; still serving v2")


def test_without_a_state_directory_a_slot_follows_its_own_newest_index_on_a_replay(tmp_path, model_dir):
    import storage

    registry, promoter, built = signed_registry(tmp_path, model_dir)
    v1_index = storage.read_bytes(registry.index_uri)
    slot = slot_for(f"{registry.root}@champion", index_public_key=promoter.public_key_pem())
    register(registry, built["v2"][0], "v2", built["v2"][1])
    assert slot.poll_once() is True and slot.current.version == "v2"
    storage.write_bytes(registry.index_uri, v1_index)
    assert slot.poll_once() is False and slot.current.version == "v2"
