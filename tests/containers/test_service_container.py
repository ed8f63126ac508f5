"""The service image against the contracts its platforms hold it to, run as they run it.

Cloud Run: listens on $PORT, read-only root filesystem with an in-memory /tmp, runs as its non-root uid, stops
cleanly within 10 s of SIGTERM (Cloud Run sends SIGKILL 10 s later). Vertex AI: AIP_HTTP_PORT, AIP_HEALTH_ROUTE,
AIP_PREDICT_ROUTE, and the model in a gs:// directory (AIP_STORAGE_URI), here on fake-gcs-server.
"""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path

import numpy as np
import pytest

from lifecycle.served import free_port
from tests.containers.conftest import FIGURES, Container, podman, run_container, world_readable
from tests.service.conftest import ADMIN, ADMIN_ENV
from tests.service.model_factory import build_model_dir, build_registry, generated_images, upload_tree

pytestmark = [pytest.mark.container, pytest.mark.slow]
UID = 10001  # service/Dockerfile's user
STARTUP_LIMIT_S = 60
# What Cloud Run gives: the root filesystem read-only here (stricter than Cloud Run's in-memory writable one) and
# an in-memory /tmp. podman's --read-only would also add tmpfs on /run and /var/tmp: only /tmp here.
CLOUD_RUN_FS = ("--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,mode=1777,size=256m")


@pytest.fixture(scope="module")
def mlops(tmp_path_factory) -> Path:
    """A storage root whose models bucket has one champion (a tiny CNN trained on generated images), its index
    signed by a promoter key as the promoter signs it: on Cloud Run the service follows only a signed index."""
    from trainer.models.index_signing import LocalKeySigner, write_signature

    root = tmp_path_factory.mktemp("container-mlops")
    model = build_model_dir(tmp_path_factory.mktemp("container-model") / "test-v1")
    build_registry(root / "models", model)
    promoter = LocalKeySigner(tmp_path_factory.mktemp("container-promoter"))
    write_signature(str(root / "models"), (root / "models" / "registry" / "index.json").read_bytes(), promoter)
    (root / "promoter.pem").write_bytes(promoter.public_key_pem())
    return world_readable(root)


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body, headers or {})
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def wait_healthy(container: Container, port: int, route: str = "/health") -> float:
    """Seconds from `podman run` to the first 200 on `route`."""
    deadline = container.started + STARTUP_LIMIT_S
    while time.monotonic() < deadline:
        if container.process.poll() is not None:
            pytest.fail(f"the container exited with {container.process.returncode}:\n{container.output()[-3000:]}")
        try:
            if request(port, "GET", route)[0] == 200:
                return time.monotonic() - container.started
        except OSError:
            pass
        time.sleep(0.02)
    pytest.fail(f"no 200 on {route} within {STARTUP_LIMIT_S} s:\n{container.output()[-3000:]}")


def predict(port: int, route: str, instances: list) -> list[dict]:
    status, body = request(
        port, "POST", route, json.dumps({"instances": instances}).encode(), {"Content-Type": "application/json"}
    )
    assert status == 200, body[:500]
    return json.loads(body)["predictions"]


def test_cloud_run_contract(service_image, mlops, tmp_path, containers):
    port = free_port()
    container = run_container(
        service_image,
        tmp_path,
        *CLOUD_RUN_FS,
        "--volume",
        f"{mlops}:/mlops:ro",
        env={
            "PORT": str(port),
            "K_SERVICE": "fmnist-predict",
            "WORKERS": "2",
            "INDEX_PUBLIC_KEY": (mlops / "promoter.pem").read_text(),  # Cloud Run: from the KMS key (infra)
        },
    )
    containers.append(container)
    cold_start = wait_healthy(container, port)
    FIGURES["service container cold start to first 200 (podman run included)"] = f"{cold_start:.2f} s"
    assert cold_start < STARTUP_LIMIT_S

    images, labels = generated_images(20, seed=3)
    predictions = predict(port, "/predict", images.tolist())
    assert len(predictions) == 20 and {p["class_id"] for p in predictions} <= set(range(10))

    # Ground truth in the shipped image: a label for the reply's request_id is counted, and its row is a JSON
    # line on stdout (FEEDBACK_ROWS=log on Cloud Run) that the log sink routes to BigQuery.
    json_type = {"Content-Type": "application/json"}
    status, body = request(port, "POST", "/predict", json.dumps({"instances": images[:2].tolist()}).encode(), json_type)
    request_id = json.loads(body)["metadata"]["request_id"]
    feedback = json.dumps({"request_id": request_id, "labels": labels[:2].tolist()}).encode()
    status, body = request(port, "POST", "/feedback", feedback, json_type)
    assert status == 200 and json.loads(body)["labelled"] == 2, body
    deadline = time.monotonic() + 10
    while f'"feedback_event":"label","request_id":"{request_id}"' not in container.output():
        assert time.monotonic() < deadline, container.output()[-3000:]
        time.sleep(0.2)

    # The process runs as the image's non-root user; the root filesystem refuses writes, /tmp is in memory.
    status = container.exec("cat", "/proc/1/status").stdout
    assert f"Uid:\t{UID}\t{UID}" in status, status
    assert container.exec("touch", "/opt/venv/written").returncode != 0
    assert container.exec("touch", "/written").returncode != 0
    assert container.exec("touch", "/tmp/written").returncode == 0
    mounts = container.exec("cat", "/proc/mounts").stdout.splitlines()
    assert any(line.split()[1:3] == ["/tmp", "tmpfs"] for line in mounts), mounts
    root = next(line.split() for line in mounts if line.split()[1] == "/")
    assert "ro" in root[3].split(","), root

    # The image's own HEALTHCHECK (kept by the docker format the images are built in) passes.
    assert podman("healthcheck", "run", container.name, check=False).returncode == 0

    # SIGTERM (what Cloud Run sends on scale-in) ends it cleanly well before the SIGKILL 10 s later.
    sent = time.monotonic()
    podman("kill", "--signal", "TERM", container.name)
    container.process.wait(30)
    stopped = time.monotonic() - sent
    FIGURES["service container exit after SIGTERM"] = f"{stopped:.2f} s"
    assert container.process.returncode == 0, container.output()[-3000:]
    assert stopped < 10


def test_vertex_ai_contract_with_the_model_in_gcs(service_image, mlops, gcs_bucket, gcs_emulator, tmp_path, containers):
    upload_tree(mlops / "models", gcs_bucket, "models")
    version_dir = f"{gcs_bucket}/models/registry/versions/test-v1"
    port = free_port()
    health, predict_route = "/v1/endpoints/1/deployedModels/2", "/v1/endpoints/1/deployedModels/2:predict"
    container = run_container(
        service_image,
        tmp_path,
        *CLOUD_RUN_FS,
        env={
            "AIP_HTTP_PORT": str(port),
            "AIP_HEALTH_ROUTE": health,
            "AIP_PREDICT_ROUTE": predict_route,
            "AIP_STORAGE_URI": version_dir,
            "AIP_MODE": "PREDICTION",
            "STORAGE_EMULATOR_HOST": gcs_emulator.url,
            "WORKERS": "1",
            **ADMIN_ENV,
        },
    )
    containers.append(container)
    wait_healthy(container, port, health)
    images, _ = generated_images(10, seed=3)
    assert len(predict(port, predict_route, images.tolist())) == 10
    assert request(port, "POST", "/predict", b"{}", {"Content-Type": "application/json"})[0] == 404
    status, body = request(port, "GET", "/v1/model", headers=ADMIN)
    assert status == 200 and json.loads(body)["source"]["version_dir"] == version_dir, body[:500]


def test_accuracy_over_http_is_the_evaluations(service_image, mlops, tmp_path, containers):
    """Every test image through HTTP as a PNG, as a client sends it: the accuracy the model recorded at evaluation."""
    import base64
    import io

    from PIL import Image

    metadata = json.loads((mlops / "models" / "registry" / "versions" / "test-v1" / "metadata.json").read_text())
    images, labels = generated_images(200, seed=3)  # the model factory's test set
    pngs = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        pngs.append({"b64": base64.b64encode(buffer.getvalue()).decode()})
    port = free_port()
    container = run_container(
        service_image, tmp_path, *CLOUD_RUN_FS, "--volume", f"{mlops}:/mlops:ro", env={"PORT": str(port)}
    )
    containers.append(container)
    wait_healthy(container, port)
    predicted = [
        p["class_id"] for start in range(0, 200, 50) for p in predict(port, "/predict", pngs[start : start + 50])
    ]
    accuracy = float(np.mean(np.asarray(predicted) == labels))
    FIGURES["service container accuracy over HTTP (PNG) vs evaluation"] = (
        f"{accuracy:.4f} vs {metadata['metrics']['accuracy']:.4f} on 200 images"
    )
    assert accuracy == pytest.approx(metadata["metrics"]["accuracy"], abs=1 / 200)
    assert accuracy > 0.5


def test_a_missing_model_ends_the_container_with_a_clear_message(service_image, tmp_path, containers):
    empty = tmp_path / "empty"
    empty.mkdir()
    world_readable(empty)
    container = run_container(
        service_image,
        tmp_path,
        *CLOUD_RUN_FS,
        "--volume",
        f"{empty}:/mlops:ro",
        env={"PORT": str(free_port()), "MODEL_URI": "/mlops/models/registry/versions/none"},
    )
    containers.append(container)
    assert container.process.wait(60) == 2
    assert "error:" in container.output()
