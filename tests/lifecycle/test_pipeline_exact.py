"""The compiled pipelines value by value against the step lists they were compiled from, as Vertex AI reads them:
every task's container (image, interpreter, the whole argument list, environment, CPU and memory), its inputs and
the tasks that produce them, its outputs and their artifact types, the order edges that keep the local runner's
order where no artifact orders it, caching off, and the gate's condition group; for dev's lifecycle and prediction
pipelines. One compilation each with kfp's interpreter (~6 s); the mutation group `pipeline` runs these."""

from __future__ import annotations

import pytest
import yaml

from lifecycle.orchestration.plan import Step, build_prediction_steps, build_steps
from settings import load_config
from tests.lifecycle.test_pipeline import RUN_ID, _once_or_per_test, all_tasks, compile_env, executor, needs_kfp

pytestmark = needs_kfp

SCHEMA = {
    "dataset": "system.Dataset",
    "model": "system.Model",
    "metrics": "system.Metrics",
    "report": "system.Markdown",
}
ARTIFACT = {"artifactType": {"schemaTitle": "system.Artifact", "schemaVersion": "0.0.1"}}
STRING = {"parameterType": "STRING"}


@pytest.fixture(scope=_once_or_per_test)
def compiled(tmp_path_factory):
    """dev's lifecycle and prediction pipelines, compiled as `python -m lifecycle compile` compiles them."""
    out = tmp_path_factory.mktemp("exact") / "build" / "pipelines"  # not there yet, as build/ in a fresh clone
    compile_env("dev", out / "lifecycle.yaml", environ={"FMNIST_VERTEX__MACHINE_TYPE": "n2-standard-4"})
    compile_env("dev", out / "prediction.yaml", "--pipeline", "prediction")
    return {name: yaml.safe_load((out / f"{name}.yaml").read_text()) for name in ("lifecycle", "prediction")}


def expected_args(step: Step) -> list[str]:
    artifacts = [word for a in step.writes for word in ("--artifact", f"{a.name}={a.uri}")]
    outcomes = [word for status in sorted(step.outcomes) for word in ("--outcome", f"{status}={step.outcomes[status]}")]
    return ["-m", "trainer", "--env", "dev", "pipeline-step", "--executor-input", "{{$}}", *artifacts, *outcomes,
            "--", *step.args]  # fmt: skip


def check_tasks(spec: dict, steps: list[Step], environ: dict[str, str]) -> None:
    settings = load_config("dev", environ=environ)
    tasks = all_tasks(spec)
    assert sorted(tasks) == sorted(step.name for step in steps)
    for step in steps:
        assert executor(spec, step.name) == {
            "args": expected_args(step),
            "command": ["python3"],
            "env": [{"name": name, "value": value} for name, value in environ.items()]
            + [{"name": "FMNIST_ENV", "value": "dev"}],
            "image": settings.names.image_uri("trainer"),
            "resources": {
                "cpuLimit": float(step.resources.cpu),
                "memoryLimit": float(step.resources.memory.rstrip("G")),
                "resourceCpuLimit": step.resources.cpu,
                "resourceMemoryLimit": step.resources.memory,
            },
        }, step.name
        task = tasks[step.name]
        assert task["cachingOptions"] == {} and task["taskInfo"] == {"name": step.name}, step.name
        component = spec["components"][task["componentRef"]["name"]]
        assert task["componentRef"]["name"] == f"comp-{step.name}"
        assert component["executorLabel"] == f"exec-{step.name}"
        inputs = component.get("inputDefinitions", {}).get("artifacts", {})
        assert inputs == dict.fromkeys(step.reads, ARTIFACT), step.name
        outputs = component.get("outputDefinitions", {})
        artifacts = {
            a.name: {"artifactType": {"schemaTitle": SCHEMA[a.kind], "schemaVersion": "0.0.1"}} for a in step.writes
        }
        assert outputs.get("artifacts", {}) == artifacts, step.name
        parameters = {"outcome": STRING} if step.outcomes else {}
        if step.launches:
            parameters["gcp_resources"] = STRING
        assert outputs.get("parameters", {}) == parameters, step.name


def test_every_lifecycle_task_is_its_steps_command_with_its_outputs_types_and_the_settings_it_was_compiled_with(
    compiled,
):
    environ = {"FMNIST_VERTEX__MACHINE_TYPE": "n2-standard-4"}
    settings = load_config("dev", environ=environ)
    steps = build_steps(settings, run_id=RUN_ID, preset=settings.training.preset, source=settings.names.raw_data_uri)
    assert "--machine-type" in {word for step in steps for word in step.args}  # the override reached the args too
    check_tasks(compiled["lifecycle"], steps, environ)
    assert compiled["lifecycle"]["pipelineInfo"] == {
        "name": "fmnist-lifecycle",
        "description": "Fashion-MNIST: raw data to a deployed, evaluated model",
    }


def test_the_lifecycle_tasks_run_in_the_local_runners_order_and_deploy_only_inside_the_gates_condition(compiled):
    spec = compiled["lifecycle"]
    root = spec["root"]["dag"]["tasks"]
    after = {name: task.get("dependentTasks", []) for name, task in root.items()}
    assert after == {
        "ingest": [],
        "analyze": ["ingest"],
        "features": ["analyze", "ingest"],  # analyze writes nothing features reads: the order edge keeps it first
        "feed-feature-store": ["features"],
        "train": ["feed-feature-store", "ingest"],
        "export": ["train"],
        "promote": ["export"],
        "condition-1": ["export", "promote"],
        "registry": ["promote"],  # after the last unconditional task, not after the skipped deploy
    }
    condition = root["condition-1"]
    assert condition["taskInfo"] == {"name": "promote-promoted"}
    assert condition["triggerPolicy"] == {
        "condition": "inputs.parameter_values['pipelinechannel--promote-outcome'] == 'promoted'"
    }
    inside = spec["components"]["comp-condition-1"]["dag"]["tasks"]
    assert {name: task.get("dependentTasks", []) for name, task in inside.items()} == {
        "deploy-model": [],
        "import-evaluation": ["deploy-model"],  # in the step list's order inside the condition too
    }


def test_the_prediction_pipeline_is_one_waiting_batch_job_task_publishing_its_job(compiled):
    settings = load_config("dev", environ={})
    steps = build_prediction_steps(settings, run_id=RUN_ID, source=settings.names.batch_input_uri)
    spec = compiled["prediction"]
    check_tasks(spec, steps, {})
    assert [step.launches for step in steps] == ["BatchPredictionJob"]
    assert spec["pipelineInfo"] == {
        "name": "fmnist-batch-prediction",
        "description": "Fashion-MNIST: score images with a Vertex AI batch job",
    }
    assert list(spec["root"]["dag"]["tasks"]) == ["batch-prediction"]
