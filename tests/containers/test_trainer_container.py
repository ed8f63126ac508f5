"""The trainer image doing what Vertex AI runs it for: ingest, train and export on smoke data, a tuning trial that
reports its metric, and `submit` naming the images of its own sources. As the image's non-root user throughout.
The exported model is then served by the service image, over HTTP, at the accuracy its evaluation recorded."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from contracts.images import IMAGE_SOURCES, source_tag
from settings import load_config
from tests.conftest import make_idx_dir
from tests.containers.conftest import FIGURES, PODMAN, podman, run_container, world_readable
from tests.containers.test_service_container import CLOUD_RUN_FS, predict, wait_healthy
from tests.service.conftest import free_port

pytestmark = [pytest.mark.container, pytest.mark.slow]
N_TRAIN, N_TEST = 600, 200
TRAIN_TIMEOUT_S = 600
METRIC_FILE = "/var/hypertune/output.metric"


def trainer(image: str, mlops: Path, *args: str, entrypoint: str | None = None, env: dict | None = None, **mounts):
    """One `podman run --rm` of the trainer image on the local target with /mlops as its storage root."""
    options = ["--rm", "--network", "host", "--volume", f"{mlops}:/mlops", "--env", "FMNIST_ENV=local"]
    options += ["--env", "FMNIST_STORAGE_ROOT=/mlops"]
    for target, source in mounts.items():
        options += ["--volume", f"{source}:/{target}:ro"]
    for key, value in (env or {}).items():
        options += ["--env", f"{key}={value}"]
    if entrypoint:
        options += ["--entrypoint", entrypoint]
    started = time.monotonic()
    result = subprocess.run(
        [PODMAN, "run", *options, image, *args], capture_output=True, text=True, timeout=TRAIN_TIMEOUT_S
    )
    assert result.returncode == 0, (
        f"{' '.join(args)} exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout + result.stderr, time.monotonic() - started


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory) -> Path:
    return world_readable(make_idx_dir(tmp_path_factory.mktemp("container-idx") / "idx", N_TRAIN, N_TEST))


@pytest.fixture(scope="module")
def exported(trainer_image, smoke_data, tmp_path_factory) -> Path:
    """ingest, train (smoke preset) and export, each in its own container as Vertex AI runs them."""
    mlops = tmp_path_factory.mktemp("container-trainer") / "mlops"
    mlops.mkdir()
    world_readable(mlops)
    trainer(trainer_image, mlops, "-m", "trainer", "ingest", "--source", "/data", entrypoint="python3", data=smoke_data)
    # The image's own entrypoint (`python3 -m trainer train`), as a custom job runs it: only the arguments are ours.
    out, seconds = trainer(trainer_image, mlops, "--preset", "smoke", "--run-id", "container-smoke")
    FIGURES["trainer container: smoke training (600 images, podman run included)"] = f"{seconds:.1f} s"
    trainer(
        trainer_image,
        mlops,
        "-m",
        "trainer",
        "export",
        "--model-dir",
        "/mlops/dev/runs/container-smoke/model",
        entrypoint="python3",
    )
    return mlops


def test_training_and_export_write_a_registered_candidate_as_the_non_root_user(exported):
    index = json.loads((exported / "models" / "registry" / "index.json").read_text())
    version = index["aliases"]["candidate"]
    version_dir = exported / "models" / index["versions"][version]["path"]
    metadata = json.loads((version_dir / "metadata.json").read_text())
    assert (version_dir / metadata["serving_artifact"]).is_file()
    assert metadata["metrics"]["accuracy"] > 0.3  # two epochs on 600 generated images: far above chance (0.1)
    assert {p.stat().st_uid for p in version_dir.rglob("*")} == {10001}


def test_the_exported_model_serves_its_evaluated_accuracy_over_http(exported, service_image, tmp_path, containers):
    from tests.conftest import make_images

    index = json.loads((exported / "models" / "registry" / "index.json").read_text())
    version_dir = exported / "models" / index["versions"][index["aliases"]["candidate"]]["path"]
    recorded = json.loads((version_dir / "metadata.json").read_text())["metrics"]["accuracy"]
    labels = (np.arange(N_TEST) % 10).astype(np.uint8)
    images = make_images(labels, seed=1)  # make_idx_dir's test split (seed + 1)
    port = free_port()
    container = run_container(
        service_image,
        tmp_path,
        *CLOUD_RUN_FS,
        "--volume",
        f"{exported}:/mlops:ro",
        env={"PORT": str(port), "MODEL_URI": "/mlops/models@candidate", "WORKERS": "1"},
    )
    containers.append(container)
    wait_healthy(container, port)
    predicted = [
        p["class_id"] for s in range(0, N_TEST, 100) for p in predict(port, "/predict", images[s : s + 100].tolist())
    ]
    accuracy = float(np.mean(np.asarray(predicted) == labels))
    FIGURES["trainer-exported model, accuracy over HTTP vs its evaluation"] = f"{accuracy:.4f} vs {recorded:.4f}"
    assert accuracy == pytest.approx(recorded, abs=1 / N_TEST)


def test_a_tuning_trial_reports_its_metric_as_the_non_root_user(trainer_image, exported, tmp_path):
    """Vertex AI runs a trial as the image's user with CLOUD_ML_TRIAL_ID set; cloudml-hypertune writes the metric
    where CLOUD_ML_HP_METRIC_FILE says, under /var/hypertune as its README documents (0.1.0.dev6 itself defaults
    to /tmp/hypertune/output.metrics, writable anyway): /var/hypertune is root-only unless the image hands it over."""
    name = f"fmnist-trial-{time.monotonic_ns()}"
    result = subprocess.run(
        [
            PODMAN, "run", "--name", name, "--network", "host", "--volume", f"{exported}:/mlops",
            "--env", "FMNIST_ENV=local", "--env", "FMNIST_STORAGE_ROOT=/mlops", "--env", "CLOUD_ML_TRIAL_ID=7",
            "--env", f"CLOUD_ML_HP_METRIC_FILE={METRIC_FILE}",
            trainer_image, "--preset", "smoke", "--epochs", "1", "--run-id", "container-trial-7",
        ],
        capture_output=True,
        text=True,
        timeout=TRAIN_TIMEOUT_S,
    )  # fmt: skip
    try:
        assert result.returncode == 0, result.stderr[-3000:]
        assert "reported val_accuracy" in result.stdout + result.stderr
        copied = tmp_path / "output.metrics"
        podman("cp", f"{name}:{METRIC_FILE}", str(copied))
    finally:
        podman("rm", "--force", "--ignore", name, check=False)
    line = json.loads(copied.read_text().strip().splitlines()[-1])
    assert str(line["trial"]) == "7" and str(line["global_step"]) == "1"
    assert 0.0 <= float(line["val_accuracy"]) <= 1.0


def test_submit_inside_the_image_names_the_images_of_its_own_sources(trainer_image):
    """The image holds no Dockerfile and no service/: the tags baked at build time name the images."""
    out = podman(
        "run", "--rm", "--network", "none", "--entrypoint", "python3", trainer_image,
        "-m", "trainer", "--env", "dev", "submit", "--dry-run", "--preset", "demo",
    ).stdout  # fmt: skip
    job = json.loads(out[re.search(r"^\{", out, re.M).start() :])["job"]  # after any `note:` lines
    names = load_config("dev").names
    assert job["worker_pool_specs"][0]["container_spec"]["image_uri"] == names.image_uri("trainer")
    assert names.image_uri("trainer").endswith(":" + source_tag("trainer"))
    baked = json.loads(podman("run", "--rm", "--entrypoint", "cat", trainer_image, "/app/image-tags.json").stdout)
    assert baked == {image: source_tag(image) for image in IMAGE_SOURCES}
    service = podman(
        "run", "--rm", "--network", "none", "--entrypoint", "python3", trainer_image, "-c",
        "from settings import load_config; print(load_config('dev').names.image_uri('service'))",
    ).stdout.strip()  # fmt: skip
    assert service == names.image_uri("service")
