"""The real thing: `python -m service` under gunicorn with 2 workers, on loopback."""

import json
import re
import shutil
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.service.conftest import ADMIN, ADMIN_ENV, start_service, stop_service
from tests.service.model_factory import build_registry, generated_images, upload_tree

OCTET = {"Content-Type": "application/octet-stream"}


def post_images(server, images: np.ndarray, per_request: int = 10, threads: int = 4) -> list[int]:
    chunks = [images[i : i + per_request].tobytes() for i in range(0, len(images), per_request)]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda chunk: server.request("POST", "/predict", chunk, OCTET)[0], chunks))


def metric(text: str, name: str) -> float:
    return sum(float(value) for value in re.findall(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M))


def test_two_workers_serve_the_champion(live_server):
    assert len(live_server.worker_pids()) == 2
    status, body = live_server.json("GET", "/v1/model", headers=ADMIN)
    assert status == 200 and body["source"]["alias"] == "champion" and body["serving"]["ready"] is True
    images, labels = generated_images(10, seed=31)
    status, reply = live_server.json("POST", "/predict", {"instances": images.tolist()})
    assert status == 200
    _, _, raw = live_server.request("POST", "/predict", images.tobytes(), OCTET)
    assert [p["class_id"] for p in reply["predictions"]] == [p["class_id"] for p in json.loads(raw)["predictions"]]


def test_metrics_and_drift_add_up_across_workers(live_server):
    assert live_server.json("POST", "/monitoring/drift/reset", headers=ADMIN)[0] == 200
    before = live_server.request("GET", "/metrics")[2].decode()
    images, _ = generated_images(400, seed=32)
    assert set(post_images(live_server, 255 - images)) == {200}  # inverted: a shift the flag must catch
    text = live_server.request("GET", "/metrics")[2].decode()
    binary = 'fmnist_instances_total{encoding="binary"}'
    sent = metric(text, binary) - metric(before, binary)
    assert sent == 400
    status, report = live_server.json("GET", "/monitoring/drift")
    assert status == 200 and report["images_seen"] == 400
    assert report["images_sampled"] == 400  # 10-image requests: every sampled image is counted at once
    assert report["drift_detected"] is True and "mean_intensity" in report["drifted"]
    assert (
        "fmnist_drift_detected 1.0" in text
        or "fmnist_drift_detected 1.0" in live_server.request("GET", "/metrics")[2].decode()
    )
    assert text.count("fmnist_model_info{") == 1
    state_dir = live_server.state_dir()
    assert len(list(Path(state_dir, "drift").glob("counts-*.f64"))) == 2, "both workers should have served"


def test_serves_a_gcs_registry_reference_from_the_emulator(tmp_path, gcs_bucket, models_root):
    upload_tree(models_root, gcs_bucket, "models")
    server = start_service(tmp_path, MODEL_URI=f"{gcs_bucket}/models@champion", WORKERS="1", **ADMIN_ENV)
    try:
        status, body = server.json("GET", "/v1/model", headers=ADMIN)
        assert status == 200 and body["source"]["version_dir"] == f"{gcs_bucket}/models/registry/versions/test-v1"
        assert server.json("POST", "/predict", {"instances": [[0] * 784]})[0] == 200
    finally:
        assert stop_service(server) == 0


def _send_whole_then_read(port: int, head: bytes, body: memoryview) -> bytes:
    """What an ordinary client does: send the request whole, then read the reply until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head)
        sock.sendall(body)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


@pytest.mark.parametrize("content_type", ["application/octet-stream", "application/json"])
def test_an_oversized_body_always_gets_its_413_not_a_reset(live_server, content_type):
    """Up to Cloud Run's largest request (32 MiB) the refused body is read and discarded before the connection
    closes, so the client, still sending when the server decided, reads the 413 instead of a reset (before: a
    30 MB body ended in BrokenPipeError/ConnectionResetError every time)."""
    zeros = memoryview(bytes(30 * 2**20))
    for size in (1_500_001, 2_000_000, 30 * 2**20, 1_500_001, 30 * 2**20):
        head = (
            f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {size}\r\n\r\n"
        ).encode()
        reply = _send_whole_then_read(live_server.port, head, zeros[:size])
        status_line, _, rest = reply.partition(b"\r\n")
        assert status_line == b"HTTP/1.1 413 REQUEST ENTITY TOO LARGE", (size, status_line)
        assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["error"] == "request_entity_too_large"


def test_every_log_line_is_json(live_server):
    live_server.request("GET", "/nowhere")
    # The server is still writing: only lines that already end in a newline are complete.
    out_lines = live_server.stdout.read_text().split("\n")[:-1]
    err_lines = live_server.stderr.read_text().split("\n")[:-1]
    assert out_lines and err_lines
    for line in out_lines + err_lines:
        entry = json.loads(line)
        assert entry["severity"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") and entry["message"]
    assert any(json.loads(line)["httpRequest"]["status"] == 404 for line in out_lines)


def test_empty_registry_starts_healthy_and_serves_once_a_champion_is_promoted(tmp_path, model_dir):
    root = tmp_path / "store"
    server = start_service(tmp_path, with_model=False, FMNIST_STORAGE_ROOT=str(root), MODEL_POLL_S="0.5")
    try:
        status, health = server.json("GET", "/health")
        assert status == 200 and health["status"] == "no_model"
        status, reply = server.json("POST", "/predict", {"instances": [[0] * 784]})
        assert status == 503 and reply["error"] == "no_model"
        assert "reason: not_promoted" in reply["detail"] and "registry promote" in reply["detail"]
        assert str(root) not in reply["detail"] and str(root) not in health["detail"]  # no path on a public route
        assert server.json("GET", "/v1/model")[0] == 503

        build_registry(root / "models", model_dir)  # what `python -m trainer registry promote` leaves behind
        deadline, in_a_row = time.monotonic() + 20, 0
        while time.monotonic() < deadline and in_a_row < 10:
            status, reply = server.json("POST", "/predict", {"instances": [[0] * 784]})
            in_a_row = in_a_row + 1 if status == 200 else 0
            assert status in (200, 503), reply
            time.sleep(0.05)
        assert in_a_row == 10, "the service did not begin serving the promoted champion"
        assert reply["metadata"]["model_version"] == "test-v1"
        assert server.json("GET", "/v1/model")[1]["model_version"] == "test-v1"
        assert server.process.poll() is None
    finally:
        assert stop_service(server) == 0
    assert "no model to serve yet" in server.stderr.read_text()


def test_a_missing_model_directory_still_stops_the_server(tmp_path):
    server = start_service(tmp_path, wait=False, MODEL_URI=str(tmp_path / "no-such-model"), WORKERS="1")
    try:
        assert server.process.wait(60) == 2
    finally:
        stop_service(server)
    assert "is not a model directory" in server.stderr.read_text()


def test_broken_model_stops_the_server_with_the_reason(tmp_path, model_dir):
    broken = tmp_path / "broken"
    broken.mkdir()
    metadata = json.loads((model_dir / "metadata.json").read_text())
    del metadata["files"]  # an export from before digests: only ONNX Runtime can tell the file is no model
    (broken / "metadata.json").write_text(json.dumps(metadata))
    (broken / "model.onnx").write_bytes(b"not an onnx graph")
    server = start_service(tmp_path, wait=False, MODEL_URI=str(broken), WORKERS="1")
    try:
        assert server.process.wait(60) == 3  # gunicorn: a worker failed to boot
    finally:
        stop_service(server)
    assert "ONNX Runtime cannot load the model" in server.stderr.read_text()


def test_a_damaged_model_directory_stops_the_server_naming_the_file_and_digests(tmp_path, model_dir):
    damaged = tmp_path / "damaged"
    shutil.copytree(model_dir, damaged)
    (damaged / "model.onnx").write_bytes((damaged / "model.onnx").read_bytes()[:-10])  # truncated
    server = start_service(tmp_path, wait=False, MODEL_URI=str(damaged), WORKERS="1")
    try:
        assert server.process.wait(60) == 2
    finally:
        stop_service(server)
    stderr = server.stderr.read_text()
    recorded = json.loads((model_dir / "metadata.json").read_text())["files"]["model.onnx"]
    assert "model.onnx was changed, truncated or damaged" in stderr and recorded in stderr


def test_vertex_contract_routes_port_and_storage_uri(tmp_path, model_dir):
    server = start_service(
        tmp_path,
        port_variable="AIP_HTTP_PORT",
        health_route="/ping",
        AIP_HEALTH_ROUTE="/ping",
        AIP_PREDICT_ROUTE="/v1/endpoints/e/deployedModels/m:predict",
        AIP_STORAGE_URI=str(model_dir),
        PORT="1",
        WORKERS="1",
    )
    try:
        status, body = server.json("POST", "/v1/endpoints/e/deployedModels/m:predict", {"instances": [[0] * 784]})
        assert status == 200 and len(body["predictions"]) == 1
        assert server.request("GET", "/")[0] == 404  # the page is off on Vertex AI unless PAGE_ENABLED=true
    finally:
        assert stop_service(server) == 0


def test_sigterm_stops_cleanly_and_removes_the_state_directory(tmp_path, model_dir):
    server = start_service(tmp_path, MODEL_URI=str(model_dir), WORKERS="2")
    try:
        state_dir = server.state_dir()
        assert state_dir.is_dir()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(15) == 0
    finally:
        stop_service(server)
    assert not state_dir.exists()
    assert "exited with code" not in server.stderr.read_text() and "SIGABRT" not in server.stderr.read_text()
