"""The forgery of issue 25 against a real 2-worker service: someone who can write the models bucket uploads a
model with its digests and points `aliases.champion` at it in registry/index.json. With the promoter's public key
configured the service refuses that index (unsigned, then signed with another key), counts and logs the refusal,
and the promoted version keeps answering. The promoter refuses to build its next change on the forged index (signing
it would make the forger's champion servable: the CI failure of wave 3's tenth submission, where the promoter's
registration signed `evil2` as champion for one write) until `registry restore` puts its own newest index back;
its next signed index is then followed. Then the replay: the earlier index, validly signed by the promoter, written
back, is refused as older than the one accepted (its sequence), by the service and by the promoter. Once on a local
registry, once on the GCS emulator. Without a key (the service as it was) the forgery serves: the first test shows
the hole."""

import json
import re
import time
from pathlib import Path

import pytest

from tests.service.conftest import ADMIN, ADMIN_ENV, start_service, stop_service
from tests.service.model_factory import register, signed_registry

POLL_S = 0.2
REFUSAL_TIMEOUT_S = 30.0  # several polls, plus a session build on a shared 2-core machine
OCTET = {"Content-Type": "application/octet-stream"}
BLACK = bytes(784)


def served_version(server) -> str:
    status, _, body = server.request("POST", "/predict", BLACK, OCTET)
    assert status == 200, body[:300]
    return json.loads(body)["metadata"]["model_version"]


def refused(metrics_text: str, reason: str) -> float:
    pattern = rf'^fmnist_index_refused_total\{{reason="{reason}",role="champion"\}} ([0-9.e+]+)$'
    return sum(float(v) for v in re.findall(pattern, metrics_text, re.M))


def wait_refused(server, reason: str, workers: int = 2) -> None:
    """Until every worker has counted its refusal of the index (once per worker, per index version): a condition, not
    a fixed sleep; a worker that accepted the index instead never counts and the wait fails."""
    deadline = time.monotonic() + REFUSAL_TIMEOUT_S
    while (count := refused(server.request("GET", "/metrics")[2].decode(), reason)) < workers:
        if time.monotonic() > deadline:
            raise AssertionError(f"{count:.0f} of {workers} workers refused the {reason} index within the timeout")
        time.sleep(POLL_S / 2)


def forge(registry, directory: Path, version: str, files: dict, signer=None) -> None:
    """What an uploader with write access to the bucket can do without the promoter: copy a version in and write
    an index naming it champion (optionally signed by a key of the forger's own)."""
    import storage
    from trainer.models.index_signing import write_signature

    storage.copy_tree(str(directory), registry.version_uri(version))
    index = registry.read_index().to_json()  # the raw JSON a forger writes
    index["versions"][version] = {"path": f"registry/versions/{version}", "metrics": {"accuracy": 0.99}, "files": files}
    index["aliases"]["champion"] = version
    data = json.dumps(index, indent=2, sort_keys=True).encode()
    if signer is not None:
        write_signature(registry.root, data, signer)
    storage.write_bytes(registry.index_uri, data)


def swaps(server) -> float:
    text = server.request("GET", "/metrics")[2].decode()
    return sum(float(v) for v in re.findall(r'^fmnist_model_swaps_total\{role="champion"\} ([0-9.e+]+)$', text, re.M))


def wait_swapped(server, before: float, workers: int = 2, timeout: float = 20.0) -> None:
    """Until every worker has swapped once more than `before` counted: 20 answers in a row can all come from one
    worker, and a worker still on the old version when the replay lands never learns of the newer index."""
    deadline = time.monotonic() + timeout
    while swaps(server) < before + workers:
        if time.monotonic() > deadline:
            raise AssertionError(f"{swaps(server) - before:.0f} of {workers} workers swapped within {timeout} s")
        time.sleep(0.05)


def wait_for(server, version: str, timeout: float = 20.0) -> None:
    """Until 20 answers in a row come from `version` (not proof that every worker serves it: wait_swapped is)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if {served_version(server) for _ in range(20)} == {version}:
            return
        time.sleep(0.05)
    raise AssertionError(f"{version} did not start serving within {timeout} s (serving {served_version(server)})")


def setup(tmp_path: Path, model_dir: Path, root: str):
    return signed_registry(tmp_path, model_dir, ("v1", "evil", "evil2", "v2"), root=root)


def forgery_is_refused(tmp_path: Path, model_dir: Path, root: str) -> None:
    import storage
    from trainer.errors import RegistryError
    from trainer.models.index_signing import LocalKeySigner

    registry, promoter, built = setup(tmp_path, model_dir, root)
    v1_index = storage.read_bytes(registry.index_uri)  # signed by the promoter, naming v1 champion
    server = start_service(
        tmp_path,
        MODEL_URI=f"{root}@champion",
        WORKERS="2",
        MODEL_POLL_S=str(POLL_S),
        INDEX_PUBLIC_KEY_FILE=str(promoter.public_path),
    )
    try:
        assert served_version(server) == "v1"

        forge(registry, built["evil"][0], "evil", built["evil"][1])  # unsigned
        wait_refused(server, "unsigned")
        assert {served_version(server) for _ in range(20)} == {"v1"}

        forge(registry, built["evil2"][0], "evil2", built["evil2"][1], LocalKeySigner(tmp_path / "forger"))
        wait_refused(server, "other_key")
        assert {served_version(server) for _ in range(20)} == {"v1"}

        metrics_text = server.request("GET", "/metrics")[2].decode()
        assert refused(metrics_text, "unsigned") == 2  # once per worker, per index version
        assert refused(metrics_text, "other_key") == 2

        forged = storage.read_bytes(registry.index_uri)
        with pytest.raises(
            RegistryError, match=r"not the index the promoter last wrote \(other_key: .*registry restore"
        ):
            register(registry, built["v2"][0], "v2", built["v2"][1])  # the promoter would sign evil2 as champion
        assert storage.read_bytes(registry.index_uri) == forged  # nothing written
        assert registry.restore()[:2] == (2, "v1")  # the promoter's newest index, byte for byte
        assert storage.read_bytes(registry.index_uri) == v1_index

        before = swaps(server)
        register(registry, built["v2"][0], "v2", built["v2"][1])  # signed, on the promoter's own index: followed
        wait_swapped(server, before)
        assert {served_version(server) for _ in range(20)} == {"v2"}

        storage.write_bytes(registry.index_uri, v1_index)  # the replay: its signature object is still there
        wait_refused(server, "replayed")
        assert {served_version(server) for _ in range(20)} == {"v2"}
        assert refused(server.request("GET", "/metrics")[2].decode(), "replayed") == 2
        with pytest.raises(RegistryError, match=r"\(replayed: it has sequence 2, but .* wrote sequence 3 "):
            registry.promote("v1")
        assert registry.restore()[:2] == (4, "v2")
    finally:
        assert stop_service(server) == 0
    lines = [json.loads(line) for line in server.stderr.read_text().splitlines() if line.startswith("{")]
    refusals = [line for line in lines if line.get("event") == "index_refused"]
    assert sorted(line["reason"] for line in refusals) == [
        "other_key",
        "other_key",
        "replayed",
        "replayed",
        "unsigned",
        "unsigned",
    ]
    assert all("still serving v1" in line["message"] for line in refusals if line["reason"] != "replayed")
    assert all("still serving v2" in line["message"] for line in refusals if line["reason"] == "replayed")


def test_without_a_public_key_a_forged_index_serves(tmp_path, model_dir):
    """The hole of issue 25, kept visible: a service given no INDEX_PUBLIC_KEY follows whatever the index says."""
    root = str(tmp_path / "models")
    registry, _, built = setup(tmp_path, model_dir, root)
    server = start_service(tmp_path, MODEL_URI=f"{root}@champion", WORKERS="1", MODEL_POLL_S=str(POLL_S))
    try:
        forge(registry, built["evil"][0], "evil", built["evil"][1])
        wait_for(server, "evil")
    finally:
        assert stop_service(server) == 0


def test_a_forged_index_is_refused_on_a_local_registry(tmp_path, model_dir):
    forgery_is_refused(tmp_path, model_dir, str(tmp_path / "models"))


@pytest.mark.slow
def test_a_forged_index_is_refused_on_gcs(tmp_path, model_dir, gcs_bucket):
    forgery_is_refused(tmp_path, model_dir, f"{gcs_bucket}/models")


def test_a_service_that_starts_on_a_forged_index_serves_nothing(tmp_path, model_dir):
    """Refused from the first read too (the gunicorn master's): no version serves, /predict says why."""
    root = str(tmp_path / "models")
    registry, promoter, built = setup(tmp_path, model_dir, root)
    forge(registry, built["evil"][0], "evil", built["evil"][1])
    server = start_service(
        tmp_path,
        with_model=False,
        MODEL_URI=f"{root}@champion",
        WORKERS="1",
        MODEL_POLL_S=str(POLL_S),
        INDEX_PUBLIC_KEY_FILE=str(promoter.public_path),
        **ADMIN_ENV,
    )
    try:
        status, _, body = server.request("POST", "/predict", BLACK, OCTET)
        assert status == 503 and b"not_promoted" in body and b"unsigned" not in body, body[:500]  # public: a code
        status, _, body = server.request("POST", "/predict", BLACK, {**OCTET, **ADMIN})
        assert status == 503 and b"unsigned" in body, body[:500]  # the operator sees why
    finally:
        assert stop_service(server) == 0
