"""A read error while a promoted version loads (an outage, a timeout) is retried on the next poll, although the
registry index has not changed since: a promotion is never lost to one failed read, nor refused for it."""

from pathlib import Path

from tests.service.model_factory import local_registry, make_version, register
from tests.service.test_versions import slot_for


def test_a_promotion_that_could_not_be_read_is_loaded_on_a_later_poll(tmp_path, model_dir, caplog):
    registry = local_registry(tmp_path / "models")
    v1, v2 = (make_version(model_dir, tmp_path / "build" / name, name) for name in ("v1", "v2"))
    register(registry, v1[0], "v1", v1[1])
    slot = slot_for(f"{registry.root}@champion")
    register(registry, v2[0], "v2", v2[1], promote=False)
    metadata = Path(registry.version_uri("v2")) / "metadata.json"
    aside = metadata.rename(tmp_path / "metadata.json")
    metadata.mkdir()  # reading it fails with an OS error, as a file server's outage would
    registry.promote("v2")

    assert slot.poll_once() is False and slot.current.version == "v1"
    assert "v2" not in slot.refused  # a read error is not a verdict on the version
    assert "retrying every" in caplog.text and "cannot read" in caplog.text
    assert slot.poll_once() is False and slot.current.version == "v1"  # still failing: still retried

    metadata.rmdir()
    aside.rename(metadata)  # the outage ends; the registry index is unchanged since the promotion
    assert slot.poll_once() is True and slot.current.version == "v2"
    assert slot.poll_once() is False  # loaded: nothing more to read
