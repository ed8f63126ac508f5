"""The gcp lifecycle against the twin, each step run twice as Vertex AI Pipelines may retry a task: the state after
the second run of a step must be the state after the first (no second candidate, no duplicate load, no second
deployment). Needs the images (`make images`) and root: a container test, as the custom job trains in the
trainer image with podman. About 10 minutes on a quiet 2-core machine."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contracts.registry_index import parse_index
from lifecycle.orchestration.plan import build_steps
from settings import load_config
from trainer.data.synthetic import make_idx_dir
from twin.__main__ import SMOKE_GATE
from twin.cloud import Twin, running

pytestmark = [pytest.mark.container, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
STEP_TIMEOUT_S = 1200


def snapshot(twin: Twin, settings, env: dict) -> dict:
    """What the next step and the next run read: the registry index (read as the trainer reads it), the endpoint,
    the Vertex AI model versions and evaluations, the feature table's rows."""
    index = subprocess.run(
        [sys.executable, "-m", "trainer", "--env", settings.env, "registry", "list", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    endpoint = twin.vertex.resources[settings.names.endpoint_name]
    registry = parse_index(index.stdout, "registry list --json") if index.returncode == 0 else None
    return {
        # versions, aliases and champions: the event log may grow (a retried promote is logged again)
        "registry": (sorted(registry.versions), dict(registry.aliases), dict(registry.history)) if registry else None,
        "deployed": sorted(d.get("displayName", "") for d in endpoint.get("deployedModels", [])),
        "traffic": sorted(endpoint.get("trafficSplit", {}).values()),
        "model_versions": sorted(
            k for k in twin.vertex.resources if "/models/" in k and "@" in k and "/evaluations" not in k
        ),
        "evaluations": sum("/evaluations/" in k for k in twin.vertex.resources),
        "feature_rows": {k: v["numRows"] for k, v in twin.bigquery.tables.items()},
    }


def test_every_step_of_the_gcp_lifecycle_leaves_the_same_state_when_run_twice(trainer_image, tmp_path):
    settings = load_config("dev", environ=SMOKE_GATE)  # the steps as the twin runs them: no approval wait
    source = make_idx_dir(tmp_path / "idx", 600, 200)
    steps = build_steps(settings, run_id="fmnist-train-twin-retry", preset="smoke", source=str(source))
    started = time.monotonic()
    with running(settings, tmp_path / "twin") as twin:
        mlops = tmp_path / "mlops"  # the promoter's local signing key lives beside it
        mlops.mkdir()
        env = {**twin.environment(), **SMOKE_GATE, "FMNIST_STORAGE_ROOT": str(mlops)}
        env["TF_CPP_MIN_LOG_LEVEL"] = "3"
        # the promoter's jobs (twin/run.py) get the same gate and key directory, as `make twin-gcp` gives them
        twin.run.job_env.update({k: v for k, v in env.items() if k in (*SMOKE_GATE, "FMNIST_STORAGE_ROOT")})
        twin.run.mounts.append(str(mlops))
        outcomes: dict[str, int] = {}
        differences = {}
        for step in steps:
            if step.condition and outcomes.get(step.condition.step) != 0:
                continue
            states, codes = [], []
            for attempt in range(2):
                result = subprocess.run(
                    [sys.executable, *step.argv],
                    cwd=REPO,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=STEP_TIMEOUT_S,
                )
                assert attempt == 1 or result.returncode in (0, *step.outcomes), (
                    f"{step.name} exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
                )
                codes.append(result.returncode)
                states.append(snapshot(twin, settings, env))
                if result.returncode not in (0, *step.outcomes):  # the retry failed: the run would stop here
                    states[-1]["retry_error"] = result.stderr.strip()[-300:]
            outcomes[step.name] = codes[0]
            changed = {k: (states[0].get(k), states[1][k]) for k in states[1] if states[0].get(k) != states[1][k]}
            if changed or codes[0] != codes[1]:
                differences[step.name] = {"exit": codes, **changed}
        custom_jobs = [k for k in twin.vertex.resources if "/customJobs/" in k]
    print(f"every gcp step run twice against the twin: {time.monotonic() - started:.0f} s")
    assert outcomes.get("promote") == 0 and "deploy-model" in outcomes and len(custom_jobs) >= 1
    assert not differences, json.dumps(differences, indent=2)[:6000]
