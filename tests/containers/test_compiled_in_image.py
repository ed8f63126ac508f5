"""The compiled pipeline executed as Vertex AI Pipelines executes it: each task's own command and arguments in the
trainer image, as its non-root user, with only a Vertex AI task's environment, the buckets at /gcs/<bucket>, and
the outputs read back from the files the task wrote (lifecycle/orchestration/run_compiled.py, `--in-image`)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from lifecycle.orchestration.plan import PROMOTED
from lifecycle.orchestration.run_compiled import GCS_MOUNT, InImage, run_compiled
from tests.conftest import make_idx_dir
from tests.containers.conftest import FIGURES
from tests.lifecycle.test_pipeline import KFP_PYTHON, compile_env, needs_kfp

pytestmark = [pytest.mark.container, needs_kfp]
JOB = "fmnist-lifecycle-in-image"


@pytest.mark.slow
def test_the_compiled_local_pipeline_runs_end_to_end_in_the_trainer_image(trainer_image, tmp_path):
    root = tmp_path / "mlops"  # the local target's buckets: root/dev, root/datasets, root/models
    make_idx_dir(root / "datasets" / "raw", n_train=1000, n_test=300)  # where the gcp target's raw data lives
    environ = {"FMNIST_STORAGE_ROOT": GCS_MOUNT, "FMNIST_REGISTRY__ACCURACY_FLOOR": "0.3"}
    pipeline = tmp_path / "local.yaml"
    compile_env("local", pipeline, "--preset", "smoke", "--source", f"{GCS_MOUNT}/datasets/raw", environ=environ)
    start = time.perf_counter()
    run = run_compiled(pipeline, tmp_path / "work", JOB, in_image=InImage(trainer_image, root), log=lambda *_: None)
    seconds = time.perf_counter() - start
    FIGURES["compiled local pipeline in the trainer image (1,000/300 generated images, 7 tasks)"] = (
        f"{seconds:.1f} s: " + ", ".join(f"{t.name} {t.seconds:.1f} s" for t in run.tasks.values())
    )
    assert list(run.tasks) == ["ingest", "analyze", "features", "train", "export", "promote", "registry"]
    assert run.tasks["promote"].parameters == {"outcome": PROMOTED}  # read from the task's output parameter file
    model = run.tasks["export"].artifacts["model"]
    assert model["uri"].startswith(f"{GCS_MOUNT}/models/")  # the bucket as the task saw it
    index = json.loads((root / "models" / "registry" / "index.json").read_text())
    assert index["aliases"]["champion"] == model["metadata"]["model_version"]
    version = (root / "datasets" / "fashion-mnist" / "LATEST").read_text().strip()
    assert run.tasks["ingest"].artifacts["dataset"]["metadata"] == {"dataset_version": version}
    assert run.tasks["train"].artifacts["trained_model"]["metadata"]["run_id"] == JOB
    local_dir = root / "models" / model["uri"][len(f"{GCS_MOUNT}/models/") :]
    assert (local_dir / "model.onnx").is_file()
    owners = {p.stat().st_uid for p in [*(root / "models").rglob("*"), *(root / "dev" / "runs").rglob("*")]}
    assert owners == {10001}  # written by the image's own user, not root


ENV_PIPELINE = """
import sys
from kfp import compiler, dsl

SHOW = (
    "import json, os, sys; outputs = json.loads(sys.argv[1])['outputs']; "
    "seen = {'uid': os.getuid(), 'env': dict(os.environ)}; "
    "open(outputs['parameters']['seen']['outputFile'], 'w').write(json.dumps(seen))"
)

@dsl.container_component
def show(seen: dsl.OutputPath(str)):
    executor_input = dsl.PIPELINE_TASK_EXECUTOR_INPUT_PLACEHOLDER
    return dsl.ContainerSpec(image="x", command=["python3"], args=["-c", SHOW, executor_input])

@dsl.pipeline(name="env-check")
def env_check():
    show().set_env_variable("FMNIST_ENV", "dev")

compiler.Compiler().compile(env_check, sys.argv[1])
"""


def test_a_task_in_the_image_sees_only_what_a_vertex_ai_task_sees(trainer_image, tmp_path, monkeypatch):
    """No variable of the operator's environment reaches the task: the image's, the task's and the platform's only."""
    monkeypatch.setenv("FMNIST_OPERATOR_ONLY", "leaked")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "operator-key.json"))
    subprocess.run([str(KFP_PYTHON), "-c", ENV_PIPELINE, str(tmp_path / "env.yaml")], check=True, timeout=60)
    in_image = InImage(trainer_image, platform_env={"CLOUD_ML_PROJECT_ID": "fmnist-dev"})
    run = run_compiled(tmp_path / "env.yaml", tmp_path / "work", "env-check-1", in_image=in_image, log=lambda *_: None)
    seen = json.loads(run.tasks["show"].parameters["seen"])
    assert seen["uid"] == 10001
    env = seen["env"]
    assert env["FMNIST_ENV"] == "dev" and env["CLOUD_ML_PROJECT_ID"] == "fmnist-dev"
    assert "FMNIST_OPERATOR_ONLY" not in env and "GOOGLE_APPLICATION_CREDENTIALS" not in env
    image_env = subprocess.run(
        [str(Path(__file__).resolve().parents[2] / "scripts" / "podman.sh"), "image", "inspect", trainer_image,
         "--format", "{{json .Config.Env}}"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    allowed = {entry.partition("=")[0] for entry in json.loads(image_env.stdout)}
    allowed |= {"FMNIST_ENV", "CLOUD_ML_PROJECT_ID", "HOSTNAME", "HOME", "container", "TERM"}
    assert set(env) <= allowed, sorted(set(env) - allowed)
