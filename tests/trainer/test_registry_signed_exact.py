"""The promoter's check of its own index, to the letter (test_registry_signed.py shows the behaviour): every message
whole, the sequence an adoption takes, and the kept copies' content type on the GCS emulator."""

import json

import pytest

import storage
from contracts.index_signature import index_digest, signature_name
from contracts.layout import history_name
from tests.trainer.test_registry import add, run_cli
from tests.trainer.test_registry_signed import forge
from trainer.models.index_signing import LocalKeySigner, write_signature
from trainer.models.registry import ModelRegistry, RegistryError

FIX = (
    ". Someone else wrote it, and signing a change on top of it would make what it names servable. Nothing was "
    "written; see what it names with `python -m trainer registry list`, then put back the promoter's newest index "
    "with `python -m trainer registry restore`"
)


@pytest.fixture
def registry(tmp_path):
    return ModelRegistry(str(tmp_path / "models"), accuracy_floor=0.0, signer=LocalKeySigner(tmp_path / "promoter"))


def refusal(registry) -> str:
    """The message of a change refused (an event: the change that reads nothing before the promoter's check)."""
    with pytest.raises(RegistryError) as refused:
        registry.record("note", "v-any")
    return str(refused.value)


def test_the_unsigned_refusal_whole(registry):
    add(registry, 0.9)
    forged = forge(registry)
    where = f"{registry.root}/{signature_name(forged)}"
    assert refusal(registry) == (
        f"{registry.index_uri} is not the index the promoter last wrote (unsigned: the registry index (sha256 "
        f"{index_digest(forged)}) is unsigned: {where} does not exist. Only the promoter (python -m trainer registry "
        f"promote, with the signing key) may write the index){FIX}"
    )


def test_the_replay_refusal_whole(registry):
    add(registry, 0.9)
    old = storage.read_bytes(registry.index_uri)
    add(registry, 0.91)
    storage.write_bytes(registry.index_uri, old)
    assert refusal(registry) == (
        f"{registry.index_uri} is not the index the promoter last wrote (replayed: it has sequence 1, but the "
        f"promoter already wrote sequence 2 ({registry.root}/{history_name(2)}): an older index written back){FIX}"
    )


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        ('{"versions": {}, "aliases": {}, "sequence": "x"}', "{uri}: sequence must be a non-negative integer, got str"),
        ("[1, 2]", "{uri}: not a JSON object ('list' object has no attribute 'get')"),
        ("{nope", "{uri}: not a JSON object (Expecting property name enclosed in double quotes: line 1 column 2 "
         "(char 1))"),
    ],
)  # fmt: skip
def test_an_index_the_promoter_signed_but_cannot_read_is_malformed(registry, content, detail):
    add(registry, 0.9)
    data = content.encode()
    write_signature(registry.root, data, registry.signer)  # signed with the promoter's own key, and still refused
    storage.write_bytes(registry.index_uri, data)
    assert refusal(registry) == (
        f"{registry.index_uri} is not the index the promoter last wrote (malformed: "
        f"{detail.format(uri=registry.index_uri)}){FIX}"
    )


def test_the_gone_refusal_whole(registry):
    first = add(registry, 0.9)
    registry.promote(first)
    storage.delete(registry.index_uri)
    assert refusal(registry) == (
        f"{registry.index_uri} is gone, but the promoter wrote 2 index(es) before. A new one would forget every "
        "registered version. Nothing was written; put the newest back with `python -m trainer registry restore`"
    )


def test_a_bad_signing_key_is_a_registry_error_naming_it(tmp_path):
    class BrokenKey:
        def public_key_pem(self) -> bytes:
            return b"not a key"

    registry = ModelRegistry(str(tmp_path / "models"), signer=BrokenKey())  # type: ignore[arg-type]
    storage.write_bytes(registry.index_uri, b"{}")
    with pytest.raises(RegistryError, match=r"^the promoter's signing key: not a PEM public key \("):
        add(registry, 0.9)


def test_without_a_signer_restore_and_adopt_say_why_whole(tmp_path):
    registry = ModelRegistry(str(tmp_path / "models"))
    with pytest.raises(RegistryError) as refused:
        registry.restore()
    assert str(refused.value) == (
        "restore puts back the newest index the promoter signed, and registry.index_signer is 'none' here: nothing "
        "is signed, so there is nothing to check the index against"
    )
    with pytest.raises(RegistryError) as refused:
        registry.adopt_current()
    assert str(refused.value) == "--adopt-current signs the index, and registry.index_signer is 'none' here"


def test_restore_without_a_kept_copy_whole(registry):
    unsigned = ModelRegistry(registry.root)
    add(unsigned, 0.9)
    data = storage.read_bytes(registry.index_uri)
    where = f"{registry.root}/{signature_name(data)}"
    with pytest.raises(RegistryError) as refused:
        registry.restore()
    assert str(refused.value) == (
        f"{registry.index_uri} is not the index the promoter last wrote (unsigned: the registry index (sha256 "
        f"{index_digest(data)}) is unsigned: {where} does not exist. Only the promoter (python -m trainer registry "
        f"promote, with the signing key) may write the index); and no index the promoter signed is kept under "
        f"{registry.root}/registry/history (a registry from before the copies, or another key). If the index in "
        "place is what you want (check it with `python -m trainer registry list`), sign it as it is with "
        "`python -m trainer registry restore --adopt-current`"
    )


def test_restore_of_nothing_and_of_the_promoters_own_index_say_so(registry):
    assert registry.restore() == (0, None, None)  # no index, no copies: nothing to put back
    assert not storage.exists(registry.index_uri)
    first = add(registry, 0.9)
    registry.promote(first)
    assert registry.restore() == (2, first, None)


def test_adopting_an_index_from_before_sequences_takes_sequence_1_and_names_no_champion(registry):
    storage.write_bytes(
        registry.index_uri,
        json.dumps({"versions": {"v0": {"path": "registry/versions/v0", "metrics": {}}}, "aliases": {}}).encode(),
    )
    assert registry.adopt_current() == (1, None)
    index = registry.read_index()
    assert index.sequence == 1
    assert {k: v for k, v in index.events[-1].items() if k != "at"} == {
        "action": "adopt",
        "version": "-",
        "previous_sequence": 0,
    }


def test_adopting_goes_above_every_kept_copy_even_when_the_index_claims_less(registry, tmp_path):
    for accuracy in (0.9, 0.91, 0.92):
        add(registry, accuracy)  # kept copies 1, 2, 3
    newer = ModelRegistry(registry.root, accuracy_floor=0.0, signer=LocalKeySigner(tmp_path / "new-key"))
    first_copy = storage.read_bytes(storage.join(registry.root, history_name(1)))
    storage.write_bytes(registry.index_uri, first_copy)  # sequence 1, signed by the old key
    assert newer.adopt_current()[0] == 4
    assert newer.read_index().sequence == 4 and len(newer.read_index().versions) == 1


def test_the_adopt_command_prints_what_it_signed(settings, monkeypatch, capsys):
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", settings.storage_root)
    monkeypatch.setenv("FMNIST_ENV", "local")
    registry = ModelRegistry.from_settings(settings)
    first = add(ModelRegistry(registry.root, accuracy_floor=0.0), 0.9)
    ModelRegistry(registry.root, accuracy_floor=0.0).promote(first)
    rc, out, _ = run_cli(capsys, "registry", "restore", "--adopt-current")
    assert (rc, out) == (0, f"signed {registry.index_uri} as it was (sequence 3, champion {first})\n")


def test_the_kept_copies_and_a_restored_index_are_json_on_the_gcs_emulator(gcs_settings, tmp_path):
    registry = ModelRegistry.from_settings(gcs_settings)
    assert registry.root.startswith("gs://") and isinstance(registry.signer, LocalKeySigner)
    first = add(registry, 0.9)
    registry.promote(first)
    forge(registry)
    assert registry.restore()[:2] == (2, first)
    bucket, name = registry.root[len("gs://") :].split("/", 1) if "/" in registry.root[5:] else (registry.root[5:], "")
    client = storage.gcs_client()
    for path in ("registry/index.json", history_name(1), history_name(2)):
        blob = client.bucket(bucket).get_blob(f"{name}/{path}".lstrip("/"))
        assert blob.content_type == "application/json", path


def test_a_restore_that_races_another_write_writes_nothing_and_says_so(registry, monkeypatch):
    first = add(registry, 0.9)
    registry.promote(first)
    forged = forge(registry)

    def someone_wrote_first(uri, data, token, *, content_type=None):
        raise storage.PreconditionFailed(uri)

    monkeypatch.setattr(storage, "write_if_unchanged", someone_wrote_first)
    with pytest.raises(RegistryError) as refused:
        registry.restore()
    assert (
        str(refused.value) == f"{registry.index_uri} changed while it was restored; nothing was written: run it again"
    )
    assert storage.read_bytes(registry.index_uri) == forged
