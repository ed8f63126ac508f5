"""Multi-worker training from TF_CONFIG: two real worker processes on localhost; only the chief writes."""

import json
import os
import socket
import subprocess
import sys

import pytest

from settings import REPO_ROOT
from trainer.errors import CommandError
from trainer.training.distribute import ClusterRole, from_environment, role_from_tf_config


def tf_config(workers: list[str], kind: str, index: int, chief: list[str] | None = None) -> str:
    cluster = {"worker": workers, **({"chief": chief} if chief else {})}
    return json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})


def test_roles_follow_the_tensorflow_conventions():
    assert role_from_tf_config(None) == ClusterRole("chief", 0, 1)
    assert role_from_tf_config(tf_config(["a:1", "b:2"], "worker", 0)).is_chief  # no chief: worker 0
    assert not role_from_tf_config(tf_config(["a:1", "b:2"], "worker", 1)).is_chief
    with_chief = role_from_tf_config(tf_config(["b:2"], "worker", 0, chief=["a:1"]))  # Vertex AI's layout
    assert not with_chief.is_chief and with_chief.num_workers == 2
    assert role_from_tf_config(tf_config(["b:2"], "chief", 0, chief=["a:1"])).is_chief
    master = json.dumps({"cluster": {"master": ["a:1"], "worker": ["b:2"]}, "task": {"type": "master", "index": 0}})
    assert role_from_tf_config(master).is_chief


def test_bad_tf_config_is_one_clear_error():
    with pytest.raises(CommandError, match="TF_CONFIG is not valid"):
        role_from_tf_config('{"cluster": {}}')


def test_one_worker_needs_no_strategy():
    assert from_environment({"TF_CONFIG": tf_config(["a:1"], "worker", 0)}).strategy is None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_workers_train_together_and_only_the_chief_writes(world):
    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    processes = []
    for index in range(2):
        env = {
            **os.environ,
            **world.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "TF_CONFIG": tf_config(workers, "worker", index),
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "trainer", "train", "--preset", "smoke"],
                env=env,
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    for process in processes:
        try:
            out, _ = process.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            raise
        outputs.append(out)
        assert process.returncode == 0, out[-3000:]
    chief_out, worker_out = outputs
    assert "worker chief:0 of 2" in chief_out and "model in " in chief_out
    assert "worker worker:1 of 2" in worker_out and "the chief saved the model" in worker_out

    runs = list((world.root / "dev" / "runs").iterdir())
    assert len(runs) == 1, "exactly one run: the non-chief worker must not write one"
    info = json.loads((runs[0] / "model" / "training.json").read_text())
    assert info["workers"] == 2 and len(info["history"]) == 2
    assert info["test_metrics"]["test_accuracy"] > 0.5
    record = json.loads((runs[0] / "run.json").read_text())
    assert record["params"]["workers"] == 2 and [e["epoch"] for e in record["epochs"]] == [1, 2]
