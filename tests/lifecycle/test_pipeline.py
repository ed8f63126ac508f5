"""The lifecycle compiled to a Vertex AI Pipeline: the real kfp compiler and loader (in .venv-kfp), the compiled
tasks against the local step list, and the compiled local pipeline executed end to end on generated data."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lifecycle.orchestration.pipeline import IMAGE_PYTHON, RUN_ID
from lifecycle.orchestration.plan import (
    PROMOTED,
    REFUSED,
    Artifact,
    Condition,
    PlanError,
    Step,
    build_steps,
    check_plan,
)
from lifecycle.orchestration.run_compiled import CompiledRunFailed, condition_holds, run_compiled, topological
from settings import load_config
from tests.conftest import make_idx_dir
from trainer.errors import CommandError

REPO = Path(__file__).resolve().parents[2]
KFP_PYTHON = Path(os.environ.get("KFP_PYTHON", REPO / ".venv-kfp" / "bin" / "python"))
needs_kfp = pytest.mark.skipif(
    not KFP_PYTHON.exists(), reason=f"{KFP_PYTHON} is missing: `make pipeline-venv` installs kfp in its own venv"
)


def compile_env(env: str, output: Path, *args: str, environ: dict | None = None) -> float:
    """`python -m lifecycle compile` with kfp's interpreter; returns its wall time."""
    start = time.perf_counter()
    result = subprocess.run(
        [str(KFP_PYTHON), "-m", "lifecycle", "compile", "--env", env, "--output", str(output), *args],
        cwd=REPO,
        env={**os.environ, **(environ or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return time.perf_counter() - start


def executor(spec: dict, task: str) -> dict:
    components = spec["components"]
    for dag in [spec["root"]["dag"], *(c["dag"] for c in components.values() if "dag" in c)]:
        if task in dag["tasks"]:
            label = components[dag["tasks"][task]["componentRef"]["name"]]["executorLabel"]
            return spec["deploymentSpec"]["executors"][label]["container"]
    raise AssertionError(f"no task {task}")


def all_tasks(spec: dict) -> dict:
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return {name: task for name, task in tasks.items() if not name.startswith("condition-")}


def _once_or_per_test(fixture_name: str, config: pytest.Config) -> str:
    """Once per module, except while mutmut maps which test reaches which function ("stats"): a module fixture
    compiles in the first test's set-up, so mutmut would judge every mutant of the pipeline by that test alone."""
    return "function" if os.environ.get("MUTANT_UNDER_TEST") == "stats" else "module"


@pytest.fixture(scope=_once_or_per_test)
def dev_pipeline(tmp_path_factory):
    output = tmp_path_factory.mktemp("compiled") / "dev.yaml"
    if not KFP_PYTHON.exists():
        pytest.skip(f"{KFP_PYTHON} is missing: `make pipeline-venv` installs kfp in its own venv")
    seconds = compile_env("dev", output)
    return output, yaml.safe_load(output.read_text()), seconds


def dev_steps():
    settings = load_config("dev")
    steps = build_steps(settings, run_id=RUN_ID, preset=settings.training.preset, source=settings.names.raw_data_uri)
    return settings, steps


# ---- the step list -------------------------------------------------------------------------------------------------


def test_the_local_step_list_is_what_make_demo_runs(settings):
    steps = build_steps(settings, run_id="demo-x", preset="demo", source="/data")
    assert [s.name for s in steps] == ["ingest", "analyze", "features", "train", "export", "promote", "registry"]
    assert steps[0].args == ("--env", "local", "ingest", "--source", "/data")
    assert steps[3].args[2:] == (
        "train",
        "--preset",
        "demo",
        "--run-id",
        "demo-x",
        "--model-dir",
        steps[3].writes[0].uri,
    )
    assert steps[5].outcomes == {0: PROMOTED, 3: REFUSED}
    assert not any(s.condition for s in steps)


def test_the_gcp_step_list_trains_as_a_custom_job_and_deploys_only_when_promoted():
    settings, steps = dev_steps()
    by_name = {s.name: s for s in steps}
    assert by_name["train"].args[2:5] == ("submit", "--wait", "--preset")
    assert by_name["train"].writes[0].uri == f"gs://{settings.bucket_prefix}-models/jobs/{RUN_ID}/model"
    assert by_name["deploy-model"].condition == Condition("promote", PROMOTED)
    assert by_name["import-evaluation"].condition == Condition("promote", PROMOTED)
    assert "feed-feature-store" in by_name and by_name["ingest"].args[-1] == settings.names.raw_data_uri


def test_a_read_nobody_wrote_or_a_condition_on_no_gate_is_refused_with_the_step_name():
    with pytest.raises(PlanError, match="'train' reads 'dataset'"):
        check_plan([Step("train", "train", ("train",), reads=("dataset",))])
    gate = Step("ingest", "ingest", ("ingest",), writes=(Artifact("dataset", "dataset", "/d"),))
    with pytest.raises(PlanError, match="'deploy' runs on 'ingest' = 'promoted'"):
        check_plan([gate, Step("deploy", "deploy", ("deploy-model",), condition=Condition("ingest", PROMOTED))])
    with pytest.raises(PlanError, match="must be a Python identifier"):
        Artifact("trained-model", "model", "/m")


# ---- the compiled pipeline ---------------------------------------------------------------------------------------


@needs_kfp
def test_compiled_tasks_run_the_step_lists_commands_in_the_trainer_image(dev_pipeline):
    _, spec, _ = dev_pipeline
    settings, steps = dev_steps()
    tasks = all_tasks(spec)
    assert sorted(tasks) == sorted(s.name for s in steps)
    for step in steps:
        container = executor(spec, step.name)
        args = container["args"]
        assert container["command"] == [IMAGE_PYTHON]
        assert container["image"] == settings.names.image_uri("trainer")
        assert args[:5] == ["-m", "trainer", "--env", "dev", "pipeline-step"]
        assert args[args.index("--") + 1 :] == list(step.args), step.name  # the local runner's exact arguments
        for artifact in step.writes:
            assert f"{artifact.name}={artifact.uri}" in args
        assert {"name": "FMNIST_ENV", "value": "dev"} in container["env"]
        assert container["resources"]["resourceCpuLimit"] == step.resources.cpu
        assert container["resources"]["resourceMemoryLimit"] == step.resources.memory
        # caching off: a cached ingest or promote would skip reading the buckets' current state
        assert tasks[step.name]["cachingOptions"] == {}, step.name  # kfp writes {"enableCache": true} when on


@needs_kfp
def test_every_read_is_an_artifact_input_from_its_producer_for_lineage(dev_pipeline):
    _, spec, _ = dev_pipeline
    _, steps = dev_steps()
    producer = {a.name: s.name for s in steps for a in s.writes}
    tasks = all_tasks(spec)
    condition_inputs = spec["root"]["dag"]["tasks"]["condition-1"]["inputs"]["artifacts"]
    for step in steps:
        for name in step.reads:
            wired = tasks[step.name]["inputs"]["artifacts"][name]
            if "componentInputArtifact" in wired:  # inside the gate's condition: passed in by the condition task
                wired = condition_inputs[wired["componentInputArtifact"]]
            assert wired["taskOutputArtifact"] == {"outputArtifactKey": name, "producerTask": producer[name]}
    outputs = spec["components"]["comp-export"]["outputDefinitions"]["artifacts"]
    assert outputs["evaluation"]["artifactType"]["schemaTitle"] == "system.Metrics"
    # on gcp the promoter's job registers the model: the promote task outputs it (its gate job, issue 25)
    registered = spec["components"]["comp-promote"]["outputDefinitions"]["artifacts"]
    assert registered["model"]["artifactType"]["schemaTitle"] == "system.Model" and "model" not in outputs


@needs_kfp
def test_the_gate_is_a_pipeline_condition_on_the_promote_outcome(dev_pipeline):
    _, spec, _ = dev_pipeline
    condition_task = spec["root"]["dag"]["tasks"]["condition-1"]
    condition = condition_task["triggerPolicy"]["condition"]
    assert condition == "inputs.parameter_values['pipelinechannel--promote-outcome'] == 'promoted'"
    assert condition_task["inputs"]["parameters"]["pipelinechannel--promote-outcome"]["taskOutputParameter"] == {
        "outputParameterKey": "outcome",
        "producerTask": "promote",
    }
    assert sorted(spec["components"]["comp-condition-1"]["dag"]["tasks"]) == ["deploy-model", "import-evaluation"]
    assert condition_holds(condition, {"pipelinechannel--promote-outcome": PROMOTED})
    assert not condition_holds(condition, {"pipelinechannel--promote-outcome": REFUSED})
    promote_args = executor(spec, "promote")["args"]
    assert promote_args[promote_args.index("--outcome") : promote_args.index("--")] == [
        "--outcome",
        f"0={PROMOTED}",
        "--outcome",
        f"3={REFUSED}",  # the gate's refusal is an outcome, so the task succeeds and the condition skips deploy
    ]
    assert spec["components"]["comp-promote"]["outputDefinitions"]["parameters"]["outcome"]["parameterType"] == "STRING"
    order = topological(spec["root"]["dag"]["tasks"])
    assert order.index("promote") < order.index("condition-1")


@needs_kfp
def test_the_compiled_yaml_loads_back_with_kfps_own_loader(dev_pipeline):
    path, spec, seconds = dev_pipeline
    script = (
        "import json, sys\n"
        "from google.protobuf import json_format\n"
        "from kfp import components\n"
        "component = components.load_component_from_file(sys.argv[1])\n"
        "spec = json_format.MessageToDict(component.pipeline_spec)\n"
        "print(json.dumps({'name': component.name, 'tasks': sorted(spec['root']['dag']['tasks']),"
        " 'executors': sorted(spec['deploymentSpec']['executors'])}))\n"
    )
    result = subprocess.run([str(KFP_PYTHON), "-c", script, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout)
    assert loaded["name"] == "fmnist-lifecycle"
    assert loaded["tasks"] == sorted(spec["root"]["dag"]["tasks"])
    assert loaded["executors"] == sorted(spec["deploymentSpec"]["executors"])
    print(f"compile (dev, 10 steps, kfp {spec['sdkVersion']}): {seconds:.2f} s")


@needs_kfp
def test_config_asking_for_gpus_and_workers_reaches_the_custom_job_through_trainer_submit(tmp_path):
    from trainer.cli import build_parser
    from trainer.cloud.submit import build_custom_job

    environ = {
        "FMNIST_VERTEX__ACCELERATOR_TYPE": "NVIDIA_TESLA_T4",
        "FMNIST_VERTEX__ACCELERATOR_COUNT": "1",
        "FMNIST_VERTEX__WORKER_COUNT": "3",
    }
    compile_env("dev", tmp_path / "gpu.yaml", environ=environ)
    args = executor(yaml.safe_load((tmp_path / "gpu.yaml").read_text()), "train")["args"]
    train_args = args[args.index("--") + 1 :]
    parsed = build_parser(train_args).parse_args(train_args)
    settings = load_config("dev", environ=environ)
    request = build_custom_job(
        settings,
        ["--preset", parsed.preset, "--run-id", parsed.display_name],
        display_name=parsed.display_name,
        workers=parsed.workers,
        machine_type=parsed.machine_type,
        accelerator_type=parsed.accelerator_type,
        accelerator_count=parsed.accelerator_count,
    )
    pools = request.job["worker_pool_specs"]
    assert [p["replica_count"] for p in pools] == [1, 2]
    assert pools[0]["machine_spec"] == {
        "machine_type": "n1-standard-8",
        "accelerator_type": "NVIDIA_TESLA_T4",
        "accelerator_count": 1,
    }
    assert request.job["base_output_dir"] + "/model" in " ".join(args)  # the artifact is where the job writes


def test_tasks_run_the_interpreter_the_trainer_image_has():
    """The image's ENTRYPOINT names its interpreter; a task command naming another one fails to start."""
    dockerfile = (REPO / "trainer" / "Dockerfile").read_text()
    [entrypoint] = [
        json.loads(line.split(None, 1)[1]) for line in dockerfile.splitlines() if line.startswith("ENTRYPOINT")
    ]
    assert entrypoint[0] == IMAGE_PYTHON


def test_the_pipeline_step_keeps_the_wrapped_commands_own_double_dash():
    from trainer.cli import build_parser
    from trainer.cloud.pipeline_step import trainer_command

    argv = ["--env", "dev", "pipeline-step", "--executor-input", "{}", "--", "submit", "--wait", "--", "--epochs", "3"]
    command = trainer_command(build_parser(argv).parse_args(argv).trainer_args)
    assert command == ["submit", "--wait", "--", "--epochs", "3"]
    submit = build_parser(command).parse_args(command)
    assert submit.wait and submit.train_args == ["--", "--epochs", "3"]
    assert trainer_command(["--", "train", "--", "--x"]) == ["train", "--", "--x"]  # argparse versions that keep it


@needs_kfp
def test_train_args_reach_the_custom_job_through_the_compiled_pipeline(tmp_path, capsys):
    """`--train-arg` at compile time: pipeline-step, then `submit`, then the job's `train` arguments."""
    from trainer.cli import build_parser
    from trainer.cloud import submit
    from trainer.cloud.pipeline_step import trainer_command

    compile_env("dev", tmp_path / "args.yaml", "--train-arg=--epochs", "--train-arg=3")
    args = executor(yaml.safe_load((tmp_path / "args.yaml").read_text()), "train")["args"]
    args = [arg.replace(RUN_ID, "fmnist-lifecycle-1") for arg in args[2:]]  # after `-m trainer`, as Vertex fills it
    command = trainer_command(build_parser(args).parse_args(args).trainer_args)
    parsed = build_parser(command).parse_args(command)
    parsed.dry_run = True
    assert submit.run(parsed, load_config("dev")) == 0
    out = capsys.readouterr().out
    [pool] = json.loads(out[out.index("\n{") + 1 :])["job"]["worker_pool_specs"]
    assert pool["container_spec"]["args"][-2:] == ["--epochs", "3"]


# ---- the compiled pipeline, executed ------------------------------------------------------------------------------


@needs_kfp
@pytest.mark.slow
def test_the_compiled_local_pipeline_runs_end_to_end_on_generated_data(tmp_path, monkeypatch):
    source = make_idx_dir(tmp_path / "idx", n_train=1000, n_test=300)
    environ = {"FMNIST_STORAGE_ROOT": str(tmp_path / "mlops"), "FMNIST_REGISTRY__ACCURACY_FLOOR": "0.3"}
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    compile_env("local", tmp_path / "local.yaml", "--preset", "smoke", "--source", str(source), environ=environ)
    start = time.perf_counter()
    run = run_compiled(tmp_path / "local.yaml", tmp_path / "work", "fmnist-lifecycle-test")
    seconds = time.perf_counter() - start
    assert list(run.tasks) == ["ingest", "analyze", "features", "train", "export", "promote", "registry"]
    assert run.tasks["promote"].parameters == {"outcome": PROMOTED}
    dataset = run.tasks["ingest"].artifacts["dataset"]
    version = (tmp_path / "mlops" / "datasets" / "fashion-mnist" / "LATEST").read_text().strip()
    assert dataset["metadata"] == {"dataset_version": version} and dataset["uri"].endswith(version)
    assert Path(run.tasks["features"].artifacts["features"]["uri"]).is_file()
    model = run.tasks["export"].artifacts["model"]
    index = json.loads((tmp_path / "mlops" / "models" / "registry" / "index.json").read_text())
    assert index["aliases"]["champion"] == model["metadata"]["model_version"]
    assert model["metadata"]["dataset_version"] == version
    assert (Path(model["uri"]) / "model.onnx").is_file()
    assert 0 < run.tasks["export"].artifacts["evaluation"]["metadata"]["accuracy"] <= 1
    trained = run.tasks["train"].artifacts["trained_model"]
    assert trained["metadata"]["run_id"] == "fmnist-lifecycle-test"  # the job-name placeholder was the run id
    print(f"compiled local pipeline on 1,000/300 generated images: {seconds:.1f} s")


@needs_kfp
def test_a_failing_compiled_task_stops_the_run_naming_the_task(tmp_path, monkeypatch):
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", str(tmp_path / "mlops"))
    compile_env(
        "local",
        tmp_path / "bad.yaml",
        "--source",
        str(tmp_path / "nowhere"),
        environ={"FMNIST_STORAGE_ROOT": str(tmp_path / "mlops")},
    )
    with pytest.raises(CompiledRunFailed, match="task 'ingest' exited with"):
        run_compiled(tmp_path / "bad.yaml", tmp_path / "work", "fmnist-lifecycle-bad", log=lambda *_: None)


@needs_kfp
def test_every_task_runs_with_the_settings_overrides_it_was_compiled_with(tmp_path):
    """A task gets only the pipeline's environment (never the operator's): the overrides the arguments were computed
    with must travel in each task's env, or a task reads the image's config (found by `run-compiled --in-image`:
    the buckets in the arguments were /gcs/..., the commands wrote under the image's own default root)."""
    environ = {"FMNIST_STORAGE_ROOT": "/gcs", "FMNIST_REGISTRY__ACCURACY_FLOOR": "0.3", "FMNIST_NOT_A_SETTING": "x"}
    compile_env("local", tmp_path / "env.yaml", environ=environ)
    executors = yaml.safe_load((tmp_path / "env.yaml").read_text())["deploymentSpec"]["executors"].values()
    containers = [executor["container"] for executor in executors]
    for container in containers:
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env == {"FMNIST_ENV": "local", "FMNIST_STORAGE_ROOT": "/gcs", "FMNIST_REGISTRY__ACCURACY_FLOOR": "0.3"}
    assert sum("=/gcs/" in arg for container in containers for arg in container["args"]) >= 6  # computed from it


def test_the_local_targets_default_root_reaches_the_tasks_resolved():
    """`.mlops` is relative to the checkout; in the image it would be relative to /app."""
    from lifecycle.orchestration.compile import task_environment

    settings = load_config("local", environ={})
    env = task_environment(settings, {"FMNIST_ENV": "local", "HOME": "/root"})
    assert env == {"FMNIST_STORAGE_ROOT": str(REPO / ".mlops")}
    assert task_environment(load_config("dev", environ={}), {"FMNIST_VERTEX__MACHINE_TYPE": "n2-standard-4"}) == {
        "FMNIST_VERTEX__MACHINE_TYPE": "n2-standard-4"
    }


def test_the_in_image_run_refuses_a_pipeline_compiled_with_a_host_storage_root(tmp_path):
    from lifecycle.orchestration.run_compiled import InImage

    spec = {"deploymentSpec": {"executors": {"exec-ingest": {"container": {"env": [
        {"name": "FMNIST_STORAGE_ROOT", "value": str(tmp_path / "mlops")}
    ]}}}}}  # fmt: skip
    with pytest.raises(CompiledRunFailed, match="compile with FMNIST_STORAGE_ROOT=/gcs"):
        InImage("localhost/fmnist-trainer:x", tmp_path).check(spec)
    spec["deploymentSpec"]["executors"]["exec-ingest"]["container"]["env"][0]["value"] = "/gcs"
    with pytest.raises(CompiledRunFailed, match="pass --storage-root DIR"):
        InImage("localhost/fmnist-trainer:x").check(spec)
    InImage("localhost/fmnist-trainer:x", tmp_path).check(spec)


def test_the_in_image_options_need_in_image(tmp_path, capsys):
    from lifecycle.orchestration.run_compiled import main

    for option in (["--storage-root", str(tmp_path)], ["--volume", "/a:/b:ro"], ["--platform-env", "A=1"]):
        with pytest.raises(SystemExit):
            main([str(tmp_path / "x.yaml"), *option])
        assert "apply to --in-image runs only" in capsys.readouterr().err


def test_the_in_image_volumes_reach_every_task(tmp_path):
    """The platform's files (the twin's CA), mounted in each task's container beside the buckets."""
    from lifecycle.orchestration.run_compiled import InImage

    command = InImage("i", volumes=("/host/ca.pem:/etc/fmnist/twin-ca.pem:ro",)).command("t", ["python3"], {}, tmp_path)
    mounts = [command[i + 1] for i, word in enumerate(command) if word == "--volume"]
    assert mounts == [f"{tmp_path}:/gcs/pipeline-root:U", "/host/ca.pem:/etc/fmnist/twin-ca.pem:ro"]


def test_compile_without_kfp_says_which_venv_to_use(tmp_path):
    pytest.importorskip("settings")
    if subprocess.run([sys.executable, "-c", "import kfp"], capture_output=True).returncode == 0:
        pytest.skip("kfp is importable in this interpreter")
    result = subprocess.run(
        [sys.executable, "-m", "lifecycle", "compile", "--output", str(tmp_path / "x.yaml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and ".venv-kfp" in result.stderr


@needs_kfp
def test_the_graph_is_drawn_from_the_compiled_spec(dev_pipeline, tmp_path):
    from lifecycle.orchestration.graph import flatten, levels, render

    _, spec, _ = dev_pipeline
    nodes = flatten(spec)
    assert len(nodes) == 10
    assert nodes["import-evaluation"].inputs == {"evaluation": ("export", "evaluation")}  # through the condition
    assert {n for n, node in nodes.items() if node.condition} == {"deploy-model", "import-evaluation"}
    assert nodes["deploy-model"].condition == "if promote.outcome == 'promoted'"
    assert nodes["train"].command == "submit --wait"
    depth = levels(nodes)
    assert depth["ingest"] == 0 and depth["promote"] < depth["deploy-model"] < depth["import-evaluation"]
    picture = render(spec, tmp_path / "graph.png")
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 20_000


GATE_PIPELINE = """
import sys
from kfp import compiler, dsl

GATE = (
    "import json, sys; outputs = json.loads(sys.argv[1])['outputs']; "
    "open(outputs['parameters']['outcome']['outputFile'], 'w').write(sys.argv[2])"
)
MARK = "import sys; open(sys.argv[1], 'w').write('ran')"

@dsl.container_component
def gate(outcome: dsl.OutputPath(str)):
    executor_input = dsl.PIPELINE_TASK_EXECUTOR_INPUT_PLACEHOLDER
    return dsl.ContainerSpec(image="x", command=["python3"], args=["-c", GATE, executor_input, sys.argv[2]])

@dsl.container_component
def deploy():
    return dsl.ContainerSpec(image="x", command=["python3"], args=["-c", MARK, sys.argv[3]])

@dsl.pipeline(name="gate-check")
def gate_check():
    decision = gate()
    with dsl.If(decision.outputs["outcome"] == "promoted"):
        deploy()

compiler.Compiler().compile(gate_check, sys.argv[1])
"""


@needs_kfp
@pytest.mark.parametrize("outcome, runs", [(PROMOTED, True), (REFUSED, False)])
def test_the_harness_runs_a_conditioned_task_only_when_the_gate_says_so(tmp_path, outcome, runs):
    """A kfp-compiled gate + dsl.If, executed by the harness: the trigger policy decides, as on Vertex AI."""
    marker = tmp_path / "deployed"
    subprocess.run(
        [str(KFP_PYTHON), "-c", GATE_PIPELINE, str(tmp_path / "gate.yaml"), outcome, str(marker)],
        check=True,
        timeout=60,
    )
    run = run_compiled(tmp_path / "gate.yaml", tmp_path / "work", "gate-check-1", log=lambda *_: None)
    assert run.tasks["gate"].parameters == {"outcome": outcome}
    assert marker.exists() is runs
    assert run.skipped == ([] if runs else ["condition-1"])


def test_the_wrapper_refuses_an_output_artifact_it_was_not_told_about(settings):
    from trainer.cloud.pipeline_step import executor_output
    from trainer.errors import CommandError

    executor_input = {"outputs": {"artifacts": {"dataset": {"artifacts": [{"name": "dataset"}]}}}}
    with pytest.raises(CommandError, match=r"declares output artifacts \['dataset'\]"):
        executor_output(settings, executor_input, {}, None)
    gate_input = {"outputs": {"parameters": {"outcome": {"outputFile": "/x"}}}}
    with pytest.raises(CommandError, match="no --outcome maps exit status 0"):
        executor_output(settings, gate_input, {}, None)


@needs_kfp
def test_the_prediction_pipeline_waits_for_one_batch_prediction_job_on_the_champion(tmp_path):
    from lifecycle.orchestration.plan import build_prediction_steps
    from trainer.cli import build_parser
    from trainer.cloud.batch_prediction import build_batch_prediction

    compile_env("dev", tmp_path / "prediction.yaml", "--pipeline", "prediction")
    spec = yaml.safe_load((tmp_path / "prediction.yaml").read_text())
    assert spec["pipelineInfo"]["name"] == "fmnist-batch-prediction"
    settings = load_config("dev")
    [step] = build_prediction_steps(settings, run_id=RUN_ID, source=settings.names.batch_input_uri)
    args = executor(spec, "batch-prediction")["args"]
    assert args[args.index("--") + 1 :] == list(step.args)
    parsed = build_parser(list(step.args)).parse_args(list(step.args))
    assert parsed.wait and parsed.model == "champion" and parsed.source == "gs://fmnist-mlops-dev-datasets/incoming"
    request = build_batch_prediction(
        settings, "v1", parsed.source, ["gs://x/a.png"], display_name="fmnist-batch-1", destination=parsed.destination
    )
    assert request.create["sync"] is False  # only --wait blocks
    assert request.create["gcs_destination_prefix"] == step.writes[0].uri


def test_the_prediction_pipeline_is_not_compiled_for_a_local_environment(tmp_path, capsys):
    """Its one task starts a Vertex AI batch prediction job, which a local target refuses at run time (found by
    running the compiled pipelines in the image): compile says so and names the local alternative."""
    from lifecycle.orchestration.compile import main

    output = tmp_path / "prediction.yaml"
    assert main(["--env", "local", "--pipeline", "prediction", "--output", str(output)]) == 1
    error = capsys.readouterr().err
    assert "not a gcp environment" in error and "--env dev" in error and "lifecycle batch-predict" in error
    assert not output.exists()


def test_the_wrapper_hands_the_gcp_resources_file_to_its_command_and_reports_what_it_wrote(
    settings, tmp_path, monkeypatch
):
    """The command (here a stand-in child process) writes its job where FMNIST_GCP_RESOURCES says; the wrapper
    reports it as the task's gcp_resources parameter in the executor output the launcher reads."""
    from trainer.cloud import gcp_resources, pipeline_step

    outputs = {
        "parameters": {"gcp_resources": {"outputFile": str(tmp_path / "out" / "gcp_resources")}},
        "outputFile": str(tmp_path / "out" / "executor_output.json"),
    }
    job = "projects/p/locations/europe-west4/customJobs/7"

    def child(argv, env):
        assert argv[1:4] == ["-m", "trainer", "submit"]
        gcp_resources.publish("CustomJob", "europe-west4", job, environ=env)
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(pipeline_step.subprocess, "run", child)
    args = type("Args", (), {"executor_input": json.dumps({"outputs": outputs}), "outcome": [], "artifact": []})
    args.trainer_args = ["submit", "--wait"]
    assert pipeline_step.run(args, settings) == 0
    written = json.loads((tmp_path / "out" / "executor_output.json").read_text())
    assert json.loads(written["parameterValues"]["gcp_resources"])["resources"][0]["resourceUri"].endswith(job)

    monkeypatch.setattr(pipeline_step.subprocess, "run", lambda argv, env: subprocess.CompletedProcess(argv, 0))
    (tmp_path / "out" / "gcp_resources").unlink()
    with pytest.raises(CommandError, match="published no job"):
        pipeline_step.run(args, settings)


@needs_kfp
def test_tasks_that_launch_a_job_publish_it_as_gcp_resources(dev_pipeline, tmp_path):
    from lifecycle.orchestration.pipeline import GCP_RESOURCES
    from trainer.cloud.gcp_resources import PARAMETER

    assert GCP_RESOURCES == PARAMETER
    _, spec, _ = dev_pipeline
    compile_env("dev", tmp_path / "prediction.yaml", "--pipeline", "prediction")
    prediction = yaml.safe_load((tmp_path / "prediction.yaml").read_text())
    for pipeline, launching in ((spec, "train"), (prediction, "batch-prediction")):
        for name, task in all_tasks(pipeline).items():
            component = pipeline["components"][task["componentRef"]["name"]]
            declared = component.get("outputDefinitions", {}).get("parameters", {})
            assert (PARAMETER in declared) is (name == launching), name
            if name == launching:
                assert declared[PARAMETER]["parameterType"] == "STRING"


def test_on_gcp_the_task_that_reports_the_registered_model_registers_it():
    """Found by `run-compiled --in-image` on the gcp compilation against the twin: export ran `--no-register` on gcp
    (the promoter's Cloud Run job registers, issue 25) yet declared the registry's `model` artifact, whose metadata
    pipeline-step reads from the registry's candidate: "'candidate' is neither a registered version nor an alias"."""
    steps = {step.name: step for step in build_steps(load_config("dev", environ={}), run_id=RUN_ID, preset="smoke")}
    export, promote = steps["export"], steps["promote"]
    assert "--no-register" in export.args and "model" not in {artifact.name for artifact in export.writes}
    assert [artifact.name for artifact in promote.writes] == ["model"] and promote.args[2:4] == ("promotion", "request")
    local = {step.name: step for step in build_steps(load_config("local", environ={}), run_id=RUN_ID, preset="smoke")}
    assert "model" in {a.name for a in local["export"].writes} and local["promote"].writes == ()
