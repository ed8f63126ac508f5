"""The pipeline tests/lifecycle/harness_pipeline.yaml was compiled from (kfp's interpreter: `.venv-kfp/bin/python
tests/lifecycle/harness_pipeline.py OUT.yaml`): an artifact and parameters passed between tasks, an output read from
its file and one from the executor output, the job-name placeholder, a task env, and a gate with `dsl.If` on both
sides. Committed compiled, so the harness's tests run without kfp (and under mutation testing); a test compiles it
again where kfp is installed and compares."""

import sys

from kfp import compiler, dsl

MAKE = (
    "import json, os, sys; outputs = json.loads(sys.argv[1])['outputs']; "
    "uri = outputs['artifacts']['data']['artifacts'][0]['uri']; "
    "open(uri, 'w').write(json.dumps(outputs)); open(outputs['parameters']['count']['outputFile'], 'w').write('3'); "
    "values = {'label': os.environ['HARNESS_TASK_ENV'], 'count': 'the file wins'}; "
    "data = {'artifacts': [{'name': 'data', 'uri': uri, 'metadata': {'rows': 3}}]}; "
    "json.dump({'artifacts': {'data': data}, 'parameterValues': values}, open(outputs['outputFile'], 'w'))"
)
GATE = (
    "import json, os, sys; outputs = json.loads(sys.argv[1])['outputs']; "
    "open(outputs['parameters']['outcome']['outputFile'], 'w').write(os.environ['HARNESS_OUTCOME'])"
)
SEEN = (
    "import json, sys; executor = json.loads(sys.argv[1]); "
    "seen = json.dumps({'inputs': executor['inputs'], 'outputs': executor['outputs'], 'job': sys.argv[2]}); "
    "open(executor['outputs']['parameters']['seen']['outputFile'], 'w').write(seen)"
)


@dsl.container_component
def make(data: dsl.Output[dsl.Dataset], count: dsl.OutputPath(str), label: dsl.OutputPath(str)):
    return dsl.ContainerSpec(
        image="x", command=["python3"], args=["-c", MAKE, dsl.PIPELINE_TASK_EXECUTOR_INPUT_PLACEHOLDER]
    )


@dsl.container_component
def gate(outcome: dsl.OutputPath(str)):
    return dsl.ContainerSpec(
        image="x", command=["python3"], args=["-c", GATE, dsl.PIPELINE_TASK_EXECUTOR_INPUT_PLACEHOLDER]
    )


@dsl.container_component
def use(data: dsl.Input[dsl.Dataset], count: str, seen: dsl.OutputPath(str)):
    executor_input = dsl.PIPELINE_TASK_EXECUTOR_INPUT_PLACEHOLDER
    return dsl.ContainerSpec(
        image="x", command=["python3"], args=["-c", SEEN, executor_input, dsl.PIPELINE_JOB_NAME_PLACEHOLDER]
    )


@dsl.container_component
def other(outcome: str, seen: dsl.OutputPath(str)):
    executor_input = dsl.PIPELINE_TASK_EXECUTOR_INPUT_PLACEHOLDER
    return dsl.ContainerSpec(image="x", command=["python3"], args=["-c", SEEN, executor_input, "refused"])


@dsl.pipeline(name="harness-check")
def harness_check():
    made = make().set_env_variable("HARNESS_TASK_ENV", "from-the-spec")
    decision = gate().after(made)
    with dsl.If(decision.outputs["outcome"] == "promoted"):
        use(data=made.outputs["data"], count=made.outputs["count"])
    with dsl.If(decision.outputs["outcome"] != "promoted"):
        other(outcome=decision.outputs["outcome"])


compiler.Compiler().compile(harness_check, sys.argv[1])
