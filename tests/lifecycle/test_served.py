"""The launcher's readiness: counted per worker and role from the service's JSON log, never by lines."""

import json

from lifecycle.served import BOOT_MARKER, READY_MARKER, ServedProcess, ready_workers


def _line(pid: int, message: str, **fields: str) -> str:
    return json.dumps({"severity": "INFO", "message": message, "pid": pid, **fields})


def _ready(pid: int, role: str) -> str:
    return _line(pid, f"model v1 ready in worker {pid} (model.onnx, unverified)", event="model_ready", role=role)


def _served(tmp_path, *lines: str) -> ServedProcess:
    (tmp_path / "stderr").write_text("\n".join(["[not json] ready in worker", *lines]) + "\n")
    return ServedProcess("http://127.0.0.1:1", 1, None, tmp_path / "stdout", tmp_path / "stderr")


def test_one_worker_with_a_swap_and_a_challenger_is_one_ready_worker_not_three(tmp_path):
    server = _served(tmp_path, _ready(11, "champion"), _ready(11, "challenger"), _ready(11, "champion"))
    assert ready_workers((tmp_path / "stderr").read_text(), READY_MARKER) == {"champion": {11}, "challenger": {11}}
    assert server.workers_ready(1, ("champion", "challenger"))
    assert not server.workers_ready(2, ("champion", "challenger"))
    assert not server.workers_ready(2, ("champion",))


def test_every_role_of_every_worker_must_be_ready(tmp_path):
    server = _served(tmp_path, _ready(11, "champion"), _ready(12, "champion"), _ready(11, "challenger"))
    assert server.workers_ready(2, ("champion",))
    assert not server.workers_ready(2, ("champion", "challenger"))


def test_without_a_model_booted_workers_count(tmp_path):
    booted = [_line(pid, f"{BOOT_MARKER}: {pid}") for pid in (21, 22)]
    server = _served(tmp_path, *booted)
    assert server.workers_ready(2, ())
    assert not server.workers_ready(3, ())
