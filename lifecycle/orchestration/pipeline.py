"""The step list (lifecycle.orchestration.plan) as a Kubeflow Pipelines v2 pipeline for Vertex AI Pipelines.

Each step becomes one container task running the trainer image: `python3 -m trainer pipeline-step
--executor-input {{$}} --artifact NAME=URI ... -- <the step's trainer arguments>`, so the pipeline runs exactly
the commands the local runner runs, and the wrapper reports what each wrote as artifacts with metadata. Reads
become artifact inputs (the lineage edges), the gate's outcome an output parameter, a step's condition a
`dsl.If`. Training is the `submit --wait` step: the task launches the Vertex AI custom job through the same code
path as `trainer submit` and waits for it. kfp is imported here only (it lives in its own venv, see the Makefile).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from contextlib import ExitStack
from itertools import groupby
from pathlib import Path

from lifecycle.orchestration.plan import DATASET, METRICS, MODEL, REPORT, Step, producers

RUN_ID = "{{$.pipeline_job_name}}"  # kfp's PIPELINE_JOB_NAME_PLACEHOLDER: one training run per pipeline run
IMAGE_PYTHON = "python3"  # the trainer image's interpreter, as its ENTRYPOINT names it (trainer/Dockerfile)
OUTCOME = "outcome"
GCP_RESOURCES = "gcp_resources"  # the output parameter Vertex AI Pipelines reads a task's launched jobs from


def _artifact_types():
    from kfp import dsl

    return {DATASET: dsl.Dataset, MODEL: dsl.Model, METRICS: dsl.Metrics, REPORT: dsl.Markdown}


def task_args(step: Step, env: str) -> list[str]:
    """The container arguments of a step's task (after the image's `python3`)."""
    from kfp import dsl

    args = [
        "-m",
        "trainer",
        "--env",
        env,
        "pipeline-step",
        "--executor-input",
        dsl.PIPELINE_TASK_EXECUTOR_INPUT_PLACEHOLDER,
    ]
    for artifact in step.writes:
        args += ["--artifact", f"{artifact.name}={artifact.uri}"]
    for status, outcome in sorted(step.outcomes.items()):
        args += ["--outcome", f"{status}={outcome}"]
    return [*args, "--", *step.args]


def make_component(step: Step, image: str, env: str):
    """A kfp container component with the step's reads as inputs, its writes (and outcome) as outputs."""
    from kfp import dsl

    types = _artifact_types()
    parameters = [
        inspect.Parameter(_ident(name), inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=dsl.Input[dsl.Artifact])
        for name in step.reads
    ]
    parameters += [
        inspect.Parameter(_ident(a.name), inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=dsl.Output[types[a.kind]])
        for a in step.writes
    ]
    if step.outcomes:
        parameters.append(
            inspect.Parameter(OUTCOME, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=dsl.OutputPath(str))
        )
    if step.launches:  # the job it starts, so that cancelling the run cancels the job (trainer/cloud/gcp_resources)
        parameters.append(
            inspect.Parameter(GCP_RESOURCES, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=dsl.OutputPath(str))
        )
    args = task_args(step, env)

    def body(*_placeholders):  # kfp calls it with one placeholder per parameter
        return dsl.ContainerSpec(image=image, command=[IMAGE_PYTHON], args=args)

    body.__name__ = _ident(step.name)
    body.__doc__ = step.title
    body.__signature__ = inspect.Signature(parameters, return_annotation=dsl.ContainerSpec)  # type: ignore[attr-defined]
    return dsl.container_component(body)


def _ident(name: str) -> str:
    return name.replace("-", "_")


def build_pipeline(
    steps: list[Step], image: str, env: str, name: str, description: str, environment: Mapping[str, str] | None = None
):
    """The pipeline function: tasks in step order, artifacts wired from their producers, conditions as dsl.If.
    Every task's container gets FMNIST_ENV and `environment` (the settings the step list was computed with)."""
    from kfp import dsl

    variables = {**(environment or {}), "FMNIST_ENV": env}

    made = producers(steps)

    @dsl.pipeline(name=name, description=description)
    def lifecycle_pipeline():
        tasks: dict = {}
        previous = None  # the last unconditional task: the local runner's order, kept where no artifact orders it
        for condition, group in groupby(steps, key=lambda step: step.condition):
            with ExitStack() as scope:
                if condition:
                    gate = tasks[condition.step].outputs[OUTCOME]
                    scope.enter_context(dsl.If(gate == condition.outcome, name=f"{condition.step}-{condition.outcome}"))
                before = previous
                for step in group:
                    inputs = {_ident(name): tasks[made[name].name].outputs[_ident(name)] for name in step.reads}
                    task = make_component(step, image, env)(**inputs)
                    task.set_display_name(step.name)
                    task.set_cpu_limit(step.resources.cpu).set_memory_limit(step.resources.memory)
                    for variable, value in variables.items():
                        task.set_env_variable(variable, value)
                    task.set_caching_options(False)  # steps read the buckets' current state, which caching cannot see
                    if before is not None:
                        task.after(before)
                    before = tasks[step.name] = task
                if not condition:
                    previous = before

    return lifecycle_pipeline


def compile_pipeline(
    steps: list[Step],
    image: str,
    env: str,
    output: Path,
    name: str,
    description: str,
    environment: Mapping[str, str] | None = None,
) -> Path:
    from kfp import compiler

    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(steps, image, env, name, description, environment), str(output))
    return output
