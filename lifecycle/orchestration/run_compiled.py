"""`python -m lifecycle run-compiled PIPELINE.yaml`: execute a compiled pipeline's container tasks on this machine.

Why this and not kfp.local: kfp 2.17's SubprocessRunner refuses container components ("only supports running
Lightweight Python Components") and its DockerRunner needs a Docker daemon, which this machine does not have.
So this harness does what the Vertex AI Pipelines launcher does, for the subset the compiler emits here: it walks
the DAG in dependency order, evaluates `dsl.If` trigger conditions, builds each task's executor input, substitutes
the placeholders into the container's own command and arguments (the image's `python3` is this interpreter, the one
the trainer image would run) and reads back the executor output (artifact URIs, metadata, outcome parameters). It runs
against whatever storage the environment points at (the local root by default); it does not read the YAML's image.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lifecycle.orchestration.pipeline import IMAGE_PYTHON

EXECUTOR_INPUT = "{{$}}"
JOB_NAME = "{{$.pipeline_job_name}}"
_PLACEHOLDER = re.compile(r"\{\{\$[^}]*\}\}")
_CONDITION = re.compile(r"^inputs\.parameter_values\['([^']+)'\] (==|!=) '([^']*)'$")


class CompiledRunFailed(RuntimeError):
    """A task failed, or the spec uses something this harness does not run; the message names the task."""


@dataclass
class TaskRun:
    name: str
    seconds: float
    artifacts: dict[str, dict] = field(default_factory=dict)  # output key -> {uri, metadata, type}
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass
class CompiledRun:
    job_name: str
    tasks: dict[str, TaskRun] = field(default_factory=dict)  # in execution order
    skipped: list[str] = field(default_factory=list)  # condition groups whose trigger was false


def topological(tasks: dict) -> list[str]:
    """Task names in dependency order (dependentTasks plus producers of inputs), ties by name as kfp sorts them."""
    deps = {name: set(spec.get("dependentTasks", [])) for name, spec in tasks.items()}
    for name, spec in tasks.items():
        for kind in ("artifacts", "parameters"):
            for value in spec.get("inputs", {}).get(kind, {}).values():
                for key in ("taskOutputArtifact", "taskOutputParameter"):
                    if key in value:
                        deps[name].add(value[key]["producerTask"])
    order: list[str] = []
    while deps:
        ready = sorted(name for name, needs in deps.items() if not needs - set(order))
        if not ready:
            raise CompiledRunFailed(f"the DAG has a cycle among {sorted(deps)}")
        order.append(ready[0])
        del deps[ready[0]]
    return order


def condition_holds(condition: str, parameters: dict[str, str]) -> bool:
    match = _CONDITION.match(condition)
    if not match:
        raise CompiledRunFailed(f"condition {condition!r} is not a string comparison this harness evaluates")
    name, operator, value = match.groups()
    return (parameters[name] == value) == (operator == "==")


class Harness:
    def __init__(self, spec: dict, workdir: Path, job_name: str, python: str = sys.executable, log=print):
        self.spec, self.workdir, self.python, self.log = spec, workdir, python, log
        self.run = CompiledRun(job_name)

    def execute(self) -> CompiledRun:
        self._dag(self.spec["root"]["dag"], {}, {})
        return self.run

    def _dag(self, dag: dict, outer_artifacts: dict, outer_parameters: dict) -> None:
        tasks = dag["tasks"]
        for name in topological(tasks):
            task = tasks[name]
            artifacts, parameters = self._inputs(task, outer_artifacts, outer_parameters)
            component = self.spec["components"][task["componentRef"]["name"]]
            if "dag" in component:
                condition = task.get("triggerPolicy", {}).get("condition")
                if condition and not condition_holds(condition, parameters):
                    self.run.skipped.append(task["taskInfo"]["name"])
                    self.log(f"-- {task['taskInfo']['name']}: condition false, skipped")
                    continue
                self._dag(component["dag"], artifacts, parameters)
            else:
                self._container(name, task, component, artifacts, parameters)

    def _inputs(self, task: dict, outer_artifacts: dict, outer_parameters: dict) -> tuple[dict, dict]:
        artifacts, parameters = {}, {}
        for key, value in task.get("inputs", {}).get("artifacts", {}).items():
            if "taskOutputArtifact" in value:
                ref = value["taskOutputArtifact"]
                artifacts[key] = self.run.tasks[ref["producerTask"]].artifacts[ref["outputArtifactKey"]]
            else:
                artifacts[key] = outer_artifacts[value["componentInputArtifact"]]
        for key, value in task.get("inputs", {}).get("parameters", {}).items():
            if "taskOutputParameter" in value:
                ref = value["taskOutputParameter"]
                parameters[key] = self.run.tasks[ref["producerTask"]].parameters[ref["outputParameterKey"]]
            elif "componentInputParameter" in value:
                parameters[key] = outer_parameters[value["componentInputParameter"]]
            else:
                raise CompiledRunFailed(f"input parameter {key}: only task outputs are wired by this harness")
        return artifacts, parameters

    def _container(self, name: str, task: dict, component: dict, artifacts: dict, parameters: dict) -> None:
        container = self.spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
        folder = self.workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        outputs = component.get("outputDefinitions", {})
        executor_input = {
            "inputs": {
                "artifacts": {key: {"artifacts": [artifact]} for key, artifact in artifacts.items()},
                "parameterValues": parameters,
            },
            "outputs": {
                "artifacts": {
                    key: {
                        "artifacts": [
                            {"name": key, "type": spec["artifactType"], "uri": str(folder / key), "metadata": {}}
                        ]
                    }
                    for key, spec in outputs.get("artifacts", {}).items()
                },
                "parameters": {key: {"outputFile": str(folder / key)} for key in outputs.get("parameters", {})},
                "outputFile": str(folder / "executor_output.json"),
            },
        }
        argv = [self._substitute(arg, executor_input, name) for arg in [*container["command"], *container["args"]]]
        if argv[0] == IMAGE_PYTHON:
            argv[0] = self.python
        env = {**os.environ, **{e["name"]: e["value"] for e in container.get("env", [])}}
        self.log(f"\n== task {name}\n$ {' '.join(_shown(a) for a in argv)}")
        start = time.perf_counter()
        status = subprocess.run(argv, env=env).returncode
        seconds = time.perf_counter() - start
        if status != 0:
            raise CompiledRunFailed(f"task {name!r} exited with {status}; its output is above")
        output_file = Path(executor_input["outputs"]["outputFile"])
        output = json.loads(output_file.read_text()) if output_file.is_file() else {}
        run = TaskRun(name, seconds, parameters=dict(output.get("parameterValues", {})))
        for key in outputs.get("artifacts", {}):
            produced = output.get("artifacts", {}).get(key, {}).get("artifacts")
            if not produced:
                raise CompiledRunFailed(f"task {name!r} declared output artifact {key!r} but did not report it")
            run.artifacts[key] = produced[0]
        for key in outputs.get("parameters", {}):
            if key not in run.parameters:
                path = folder / key
                if not path.is_file():
                    raise CompiledRunFailed(f"task {name!r} declared output parameter {key!r} but did not write it")
                run.parameters[key] = path.read_text()
        self.run.tasks[name] = run
        self.log(f"-- {name}: {seconds:.1f} s")

    def _substitute(self, arg: str, executor_input: dict, task: str) -> str:
        arg = arg.replace(EXECUTOR_INPUT, json.dumps(executor_input)).replace(JOB_NAME, self.run.job_name)
        left = _PLACEHOLDER.search(arg)
        if left:
            raise CompiledRunFailed(f"task {task!r} uses placeholder {left.group()} that this harness does not fill")
        return arg


def _shown(arg: str) -> str:
    return "'<executor input>'" if arg.startswith('{"inputs"') else arg


def run_compiled(path: Path, workdir: Path, job_name: str, python: str = sys.executable, log=print) -> CompiledRun:
    spec = yaml.safe_load(path.read_text())
    return Harness(spec, workdir, job_name, python, log).execute()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m lifecycle run-compiled", description=__doc__.splitlines()[0])
    parser.add_argument("pipeline", type=Path, help="the YAML `python -m lifecycle compile` wrote")
    parser.add_argument("--job-name", default="fmnist-lifecycle-" + time.strftime("%Y%m%d%H%M%S", time.gmtime()))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="compiled-run-") as workdir:
        try:
            run = run_compiled(args.pipeline, Path(workdir), args.job_name)
        except CompiledRunFailed as exc:
            print(f"\ncompiled run stopped: {exc}", file=sys.stderr)
            return 1
    print(f"\nran {len(run.tasks)} tasks of {args.pipeline} in {time.perf_counter() - start:.1f} s")
    for task in run.tasks.values():
        shown = ", ".join(f"{k}={v}" for k, v in task.parameters.items())
        print(f"  {task.name:<20} {task.seconds:7.1f} s  {shown}")
    for name in run.skipped:
        print(f"  {name:<20} skipped (condition false)")
    return 0
