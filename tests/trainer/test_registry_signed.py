"""The promoter builds only on its own index: a change signed on top of an index someone else wrote would make what
they wrote servable (the CI failure of wave 3's tenth submission: the promoter's registration signed a forger's
champion). Each refusal leaves the index as it was; `registry restore` puts the promoter's newest index back from
its kept copies, byte for byte; `--adopt-current` signs an index as it is, by an operator's decision."""

import json

import pytest

import storage
from contracts.index_signature import signature_name
from contracts.layout import history_name
from tests.trainer.test_registry import add, run_cli
from trainer.models.index_signing import LocalKeySigner, write_signature
from trainer.models.registry import ModelRegistry, RegistryError


@pytest.fixture
def registry(tmp_path):
    return ModelRegistry(str(tmp_path / "models"), accuracy_floor=0.0, signer=LocalKeySigner(tmp_path / "promoter"))


def forge(registry, champion: str = "evil", signer=None) -> bytes:
    """What a writer of the models bucket can do: name a champion in the index (with a record), unsigned or
    signed with a key of their own."""
    index = registry.read_index().to_json()
    index["versions"][champion] = {"path": f"registry/versions/{champion}", "metrics": {"accuracy": 0.99}}
    index["aliases"]["champion"] = champion
    data = json.dumps(index, indent=2, sort_keys=True).encode()
    if signer is not None:
        write_signature(registry.root, data, signer)
    storage.write_bytes(registry.index_uri, data)
    return data


def kept(registry) -> list[str]:
    return [uri.rsplit("/", 1)[-1] for uri in storage.list_uris(storage.join(registry.root, "registry/history"))]


def test_each_signed_write_keeps_a_copy_under_its_sequence(registry):
    first = add(registry, 0.9)
    registry.promote(first)
    assert kept(registry) == ["000000000001.json", "000000000002.json"]
    index = storage.read_bytes(registry.index_uri)
    assert storage.read_bytes(storage.join(registry.root, history_name(2))) == index
    assert storage.exists(storage.join(registry.root, signature_name(index)))


def test_an_unsigned_registry_keeps_no_copies_and_checks_nothing(tmp_path):
    registry = ModelRegistry(str(tmp_path / "models"), accuracy_floor=0.0)
    add(registry, 0.9)
    forge(registry)
    add(registry, 0.91)  # nothing to check against: the service without a key follows anything too
    assert kept(registry) == []
    with pytest.raises(RegistryError, match="registry.index_signer is 'none'"):
        registry.restore()


@pytest.mark.parametrize("reason", ["unsigned", "other_key"])
def test_a_forged_index_is_not_built_on_and_restore_puts_the_promoters_back(registry, tmp_path, reason):
    first = add(registry, 0.9)
    registry.promote(first)
    own = storage.read_bytes(registry.index_uri)
    forged = forge(registry, signer=LocalKeySigner(tmp_path / "forger") if reason == "other_key" else None)
    for change in (lambda: add(registry, 0.91, "v2"), lambda: registry.promote(first), lambda: registry.rollback()):
        with pytest.raises(RegistryError, match=rf"is not the index the promoter last wrote \({reason}: "):
            change()
        assert storage.read_bytes(registry.index_uri) == forged  # nothing written
    assert not storage.exists(registry.version_uri("v2"))  # refused before its files were copied
    assert kept(registry) == ["000000000001.json", "000000000002.json"]

    sequence, champion, why = registry.restore()
    assert (sequence, champion) == (2, first) and f"({reason}: " in why
    assert storage.read_bytes(registry.index_uri) == own
    second = add(registry, 0.91)  # built on the promoter's own index again
    index = registry.read_index()
    assert index.sequence == 3 and second in index.versions and "evil" not in index.versions


def test_an_index_written_back_is_a_replay_to_the_promoter_too(registry):
    first = add(registry, 0.9)
    old = storage.read_bytes(registry.index_uri)  # sequence 1, validly signed
    registry.promote(first)
    storage.write_bytes(registry.index_uri, old)
    with pytest.raises(RegistryError, match=r"\(replayed: it has sequence 1, but .* wrote sequence 2 "):
        registry.promote(first)
    assert registry.restore()[:2] == (2, first)
    assert registry.read_index().alias("champion") == first


def test_a_deleted_index_is_not_started_again_from_nothing(registry):
    first = add(registry, 0.9)
    registry.promote(first)
    storage.delete(registry.index_uri)
    with pytest.raises(RegistryError, match=r"is gone, but the promoter wrote 2 index\(es\) before\. A new one"):
        add(registry, 0.91)
    assert not storage.exists(registry.index_uri)
    assert registry.restore()[:2] == (2, first)


def test_restore_of_the_promoters_own_index_changes_nothing(registry):
    first = add(registry, 0.9)
    before = storage.read_bytes(registry.index_uri)
    assert registry.restore() == (1, None, None)
    assert storage.read_bytes(registry.index_uri) == before
    registry.promote(first)


def test_restore_takes_only_copies_the_promoter_signed_under_their_own_sequence(registry, tmp_path):
    first = add(registry, 0.9)
    registry.promote(first)
    own = storage.read_bytes(registry.index_uri)
    first_index = storage.read_bytes(storage.join(registry.root, history_name(1)))
    forged = forge(registry)
    storage.write_bytes(storage.join(registry.root, history_name(9)), forged)  # unsigned
    storage.write_bytes(storage.join(registry.root, history_name(8)), first_index)  # signed, but sequence 1
    storage.write_bytes(storage.join(registry.root, "registry/history/notes.json"), b"{}")
    assert registry.restore()[:2] == (2, first)
    assert storage.read_bytes(registry.index_uri) == own


def test_without_a_kept_copy_restore_says_how_to_adopt_and_adopt_signs_above_every_copy(registry, tmp_path):
    unsigned = ModelRegistry(registry.root, accuracy_floor=0.0)  # a registry from before signing
    first = add(unsigned, 0.9)
    unsigned.promote(first)
    with pytest.raises(RegistryError, match=r"\(unsigned: .*no index the promoter signed is kept .*--adopt-current"):
        registry.restore()
    sequence, champion = registry.adopt_current()
    assert (sequence, champion) == (3, first)  # above the unsigned index's own sequence (2)
    index = registry.read_index()
    assert index.sequence == 3 and index.events[-1]["action"] == "adopt"
    assert index.events[-1]["previous_sequence"] == 2
    add(registry, 0.91)  # the adopted index is the promoter's own now
    assert kept(registry) == ["000000000003.json", "000000000004.json"]


def test_adopt_refuses_an_index_without_versions(registry):
    with pytest.raises(RegistryError, match="has no versions: there is nothing to adopt"):
        registry.adopt_current()


def test_the_command_restores_and_refuses_to_adopt_on_google_cloud(settings, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", settings.storage_root)
    monkeypatch.setenv("FMNIST_ENV", "local")
    registry = ModelRegistry.from_settings(settings)
    assert isinstance(registry.signer, LocalKeySigner)  # the local target signs
    first = add(registry, 0.9)
    rc, out, _ = run_cli(capsys, "registry", "restore")
    assert rc == 0 and "is the promoter's newest (sequence 1); nothing to restore" in out
    forge(registry)
    rc, _, err = run_cli(capsys, "registry", "promote", first)
    assert rc != 0 and "registry restore" in err
    rc, out, _ = run_cli(capsys, "registry", "restore")
    assert rc == 0 and "refused the index in place: " in out and "(unsigned: " in out
    assert "restored the promoter's index of sequence 1 (champion none)" in out
    assert run_cli(capsys, "registry", "promote", first)[0] == 0

    monkeypatch.setenv("FMNIST_ENV", "dev")
    monkeypatch.setenv("FMNIST_BUCKET_PREFIX", "fmnist-test")
    rc, _, err = run_cli(capsys, "registry", "restore", "--adopt-current")
    assert rc != 0 and "only the promoter signs" in err
