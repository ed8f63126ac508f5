"""`python -m lifecycle run-compiled PIPELINE.yaml`: execute a compiled pipeline's container tasks on this machine.

Why this and not kfp.local: kfp 2.17's SubprocessRunner refuses container components ("only supports running
Lightweight Python Components") and its DockerRunner needs a Docker daemon, which this machine does not have.
So this harness does what the Vertex AI Pipelines launcher does, for the subset the compiler emits here: it walks
the DAG in dependency order, evaluates `dsl.If` trigger conditions, builds each task's executor input, substitutes
the placeholders into the container's own command and arguments (the image's `python3` is this interpreter, the one
the trainer image would run) and reads back the outputs as the launcher does: each output parameter's file, else the
executor output's value; artifacts (URIs, metadata) from the executor output.

Two ways to run a task:
- on this machine (default): this interpreter, the operator's environment plus the task's, against whatever storage
  that environment points at; quick, but it cannot show what the image lacks or what the environment leaks.
- `--in-image [IMAGE]`: what Vertex AI Pipelines runs. The task's own command and arguments in the trainer image
  (default `localhost/fmnist-trainer:<content tag of this checkout>`, built by `make images`) with podman, as the
  image's own non-root user, with ONLY the environment a Vertex AI task has: the image's ENV, the compiled task's
  `env`, and the platform variables named with `--platform-env` (none for the local compilation; the twin's
  emulator hosts for the gcp one) and files with `--volume` (the twin's CA). No variable of the operator's
  environment reaches it. Buckets are where Vertex AI puts them for the container, `/gcs/<bucket>` (Cloud Storage
  FUSE): the local target's buckets are the directories `dev`, `datasets` and `models` under its storage root, so
  `--storage-root DIR` bind-mounts each
  `DIR/<bucket>` at `/gcs/<bucket>` (and the promoter's local key directory at /gcs/promoter), and the pipeline must
  be compiled with FMNIST_STORAGE_ROOT=/gcs. The pipeline root (executor output, output parameter files) is a host
  folder mounted at /gcs/pipeline-root.
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

from contracts.layout import BUCKET_KINDS
from lifecycle.orchestration.pipeline import IMAGE_PYTHON

EXECUTOR_INPUT = "{{$}}"
JOB_NAME = "{{$.pipeline_job_name}}"
_PLACEHOLDER = re.compile(r"\{\{\$[^}]*\}\}")
_CONDITION = re.compile(r"^inputs\.parameter_values\['([^']+)'\] (==|!=) '([^']*)'$")
REPO = Path(__file__).resolve().parents[2]
PODMAN = str(REPO / "scripts" / "podman.sh")
GCS_MOUNT = "/gcs"  # where Vertex AI mounts buckets in a task's container (Cloud Storage FUSE)
PIPELINE_ROOT_MOUNT = f"{GCS_MOUNT}/pipeline-root"  # this harness's pipeline root inside the container
TASK_TIMEOUT_S = 3600
# The local target's promoter key pair lives under its storage root beside the buckets (trainer/models/index_signing.py
# LOCAL_KEY_DIR): the local stand-in of the Cloud KMS key a Vertex AI task reaches over the network, mounted likewise.
LOCAL_KEY_DIR = "promoter"


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


@dataclass(frozen=True)
class InImage:
    """Run each task in `image` with podman, as a Vertex AI Pipelines task runs (module docstring)."""

    image: str
    storage_root: Path | None = None  # the local target's buckets, mounted at /gcs/<bucket>; None: no bucket mount
    platform_env: dict[str, str] = field(default_factory=dict)  # the platform's variables, passed by name
    network: str = "none"  # the local compilation needs none; the twin's fakes listen on the host's
    volumes: tuple[str, ...] = ()  # `HOST:CONTAINER[:ro]` files the platform provides (the twin's CA certificate)

    def check(self, spec: dict) -> None:
        """Refuse a spec whose tasks would look for the buckets anywhere but at their mounts."""
        for label, executor in spec["deploymentSpec"]["executors"].items():
            env = {e["name"]: e.get("value", "") for e in executor.get("container", {}).get("env", [])}
            root = env.get("FMNIST_STORAGE_ROOT")
            if root is not None and root != GCS_MOUNT:
                raise CompiledRunFailed(
                    f"{label} was compiled with FMNIST_STORAGE_ROOT={root}, a path of the compiling machine: in the "
                    f"image the buckets are at {GCS_MOUNT}/<bucket>; compile with FMNIST_STORAGE_ROOT={GCS_MOUNT}"
                )
            if root is not None and self.storage_root is None:
                raise CompiledRunFailed(f"{label} uses the local target's buckets: pass --storage-root DIR")

    def mounts(self, workdir: Path) -> list[str]:
        """`--volume` options: each bucket at /gcs/<bucket>, the pipeline root; `U` hands them to the image's user
        (on Vertex AI the FUSE mount is writable by the task's service account)."""
        volumes = [f"{workdir}:{PIPELINE_ROOT_MOUNT}:U"]
        if self.storage_root is not None:
            for folder in (*BUCKET_KINDS, LOCAL_KEY_DIR):
                (self.storage_root / folder).mkdir(parents=True, exist_ok=True)
                volumes.append(f"{self.storage_root.resolve() / folder}:{GCS_MOUNT}/{folder}:U")
        volumes += self.volumes
        return [option for volume in volumes for option in ("--volume", volume)]

    def command(self, name: str, argv: list[str], task_env: dict[str, str], workdir: Path) -> list[str]:
        """The `podman run` of one task: its command as the entrypoint, its arguments, its env; nothing else."""
        env = {**self.platform_env, **task_env}
        options = ["run", "--rm", "--name", f"compiled-{name}-{time.monotonic_ns()}", "--network", self.network]
        options += ["--no-healthcheck"]  # a pipeline task has none (and podman's needs systemd here)
        options += self.mounts(workdir)
        for key, value in sorted(env.items()):
            options += ["--env", f"{key}={value}"]
        return [PODMAN, *options, "--entrypoint", json.dumps(argv[:1]), self.image, *argv[1:]]


def default_image() -> str:
    """The trainer image `make images` built from this checkout's sources."""
    from contracts.images import source_tag

    return f"localhost/fmnist-trainer:{source_tag('trainer')}"


class Harness:
    def __init__(
        self,
        spec: dict,
        workdir: Path,
        job_name: str,
        python: str = sys.executable,
        log=print,
        in_image: InImage | None = None,
    ):
        self.spec, self.workdir, self.python, self.log, self.in_image = spec, workdir, python, log, in_image
        self.run = CompiledRun(job_name)
        if in_image is not None:
            in_image.check(spec)

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
        seen = Path(PIPELINE_ROOT_MOUNT) / name if self.in_image else folder  # the folder as the task sees it
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
                            {"name": key, "type": spec["artifactType"], "uri": str(seen / key), "metadata": {}}
                        ]
                    }
                    for key, spec in outputs.get("artifacts", {}).items()
                },
                "parameters": {key: {"outputFile": str(seen / key)} for key in outputs.get("parameters", {})},
                "outputFile": str(seen / "executor_output.json"),
            },
        }
        argv = [self._substitute(arg, executor_input, name) for arg in [*container["command"], *container["args"]]]
        task_env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
        if self.in_image is not None:
            command = self.in_image.command(name, argv, task_env, self.workdir)
            env = None  # podman itself runs with the operator's environment; the container gets only `command`'s
        else:
            command = [self.python, *argv[1:]] if argv[0] == IMAGE_PYTHON else argv
            env = {**os.environ, **task_env}
        self.log(f"\n== task {name}\n$ {' '.join(_shown(a) for a in command)}")
        start = time.perf_counter()
        try:
            status = subprocess.run(command, env=env, timeout=TASK_TIMEOUT_S).returncode
        except subprocess.TimeoutExpired:
            raise CompiledRunFailed(f"task {name!r} ran past {TASK_TIMEOUT_S} s") from None
        seconds = time.perf_counter() - start
        if status != 0:
            raise CompiledRunFailed(f"task {name!r} exited with {status}; its output is above")
        output_file = folder / "executor_output.json"
        output = json.loads(output_file.read_text()) if output_file.is_file() else {}
        run = TaskRun(name, seconds, parameters=dict(output.get("parameterValues", {})))
        for key in outputs.get("artifacts", {}):
            produced = output.get("artifacts", {}).get(key, {}).get("artifacts")
            if not produced:
                raise CompiledRunFailed(f"task {name!r} declared output artifact {key!r} but did not report it")
            run.artifacts[key] = produced[0]
        for key in outputs.get("parameters", {}):  # the file wins over the executor output, as the launcher reads it
            path = folder / key
            if path.is_file():
                run.parameters[key] = path.read_text()
            elif key not in run.parameters:
                raise CompiledRunFailed(f"task {name!r} declared output parameter {key!r} but did not write it")
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


def run_compiled(
    path: Path,
    workdir: Path,
    job_name: str,
    python: str = sys.executable,
    log=print,
    in_image: InImage | None = None,
) -> CompiledRun:
    spec = yaml.safe_load(path.read_text())
    return Harness(spec, workdir, job_name, python, log, in_image).execute()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m lifecycle run-compiled", description=__doc__.splitlines()[0])
    parser.add_argument("pipeline", type=Path, help="the YAML `python -m lifecycle compile` wrote")
    parser.add_argument("--job-name", default="fmnist-lifecycle-" + time.strftime("%Y%m%d%H%M%S", time.gmtime()))
    parser.add_argument(
        "--in-image",
        nargs="?",
        const="",
        metavar="IMAGE",
        help="run each task in the trainer image with podman as Vertex AI Pipelines does "
        "(default image: localhost/fmnist-trainer:<content tag of this checkout>, built by `make images`)",
    )
    parser.add_argument(
        "--storage-root",
        type=Path,
        help="with --in-image: the local target's storage root, whose buckets are mounted at /gcs/<bucket> "
        "(compile with FMNIST_STORAGE_ROOT=/gcs)",
    )
    parser.add_argument(
        "--platform-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="with --in-image: a platform variable for every task (repeatable); nothing else of this environment",
    )
    parser.add_argument("--network", default="none", help="with --in-image: podman's --network (default none)")
    parser.add_argument(
        "--volume",
        action="append",
        default=[],
        metavar="HOST:CONTAINER[:ro]",
        help="with --in-image: a file or folder the platform provides, for every task (repeatable; the twin's CA)",
    )
    args = parser.parse_args(argv)
    in_image = None
    if args.in_image is not None:
        platform = dict(pair.partition("=")[::2] for pair in args.platform_env)
        volumes = tuple(args.volume)
        in_image = InImage(args.in_image or default_image(), args.storage_root, platform, args.network, volumes)
    elif args.storage_root or args.platform_env or args.volume:
        parser.error("--storage-root, --platform-env and --volume apply to --in-image runs only")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="compiled-run-") as workdir:
        try:
            run = run_compiled(args.pipeline, Path(workdir), args.job_name, in_image=in_image)
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
