"""`python -m trainer <command>`: one entry point; each command is one module, imported only when it runs.

Why lazy: `ingest` or `registry list` must not pay TensorFlow's import time. A command module is named after its
command (`deploy-model` -> `trainer/cloud/deploy_model.py`) and exposes `add_arguments(parser)` and
`run(args, settings) -> int`; this module turns the trainer's exceptions into exit statuses.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from types import ModuleType

from contracts.monitoring_queries import GATE_REFUSED
from settings import ConfigError, load_config
from trainer.cloud.endpoints import configure_vertex_sdk
from trainer.errors import CommandError, GateRefused, log_event


@dataclass(frozen=True)
class Command:
    name: str
    package: str  # the subpackage of trainer/ the module lives in (its concern)
    help: str

    @property
    def module(self) -> str:
        return f"trainer.{self.package}.{self.name.replace('-', '_')}"


COMMANDS = {
    command.name: command
    for command in (
        Command("ingest", "data", "validate the four IDX files and store them as a content-addressed dataset version"),
        Command("analyze", "data", "class balance, pixel statistics, mean images, outliers and duplicates report"),
        Command("features", "data", "per-image feature table (Parquet) for the feature store and drift baseline"),
        Command("export-images", "data", "export a dataset version as PNGs plus a Vertex AI import file"),
        Command("train", "training", "train the Keras model (local CPU/GPU, or inside a Vertex AI custom job)"),
        Command("tune", "training", "search hyperparameters: Optuna locally, a Vertex AI tuning job on gcp"),
        Command("evaluate", "models", "metrics, per-class table and confusion matrix on the held-out test set"),
        Command("export", "models", "write the serving artifact and metadata, verify it, register it as candidate"),
        Command("registry", "models", "list, show, promote and roll back model versions"),
        Command("submit", "cloud", "submit training as a Vertex AI custom job (gcp target)"),
        Command("deploy-model", "cloud", "upload a registry version to Vertex AI and deploy it to the endpoint"),
        Command("undeploy-all", "cloud", "undeploy every model from the endpoint (before cdktf destroy)"),
        Command("rollout", "cloud", "end a canary (endpoint or local service): promote the challenger or take it off"),
        Command("ramp", "cloud", "one tick of a progressive rollout (5 -> 100 %) that promotes or rolls back itself"),
        Command("automl", "cloud", "train a Vertex AI AutoML image classifier and register it (gcp target)"),
        Command("pipeline-step", "cloud", "run one command as a Vertex AI Pipeline task and report its artifacts"),
        Command("feed-feature-store", "cloud", "load the feature table into BigQuery and sync the feature view"),
        Command("promotion", "cloud", "ask the promoter to gate and promote (gcp), or run its gate and approval jobs"),
        Command("import-evaluation", "cloud", "import a version's evaluation into the Vertex AI Model Registry"),
        Command(
            "batch-prediction", "cloud", "score gs:// PNGs or JSONL instances with a Vertex AI batch prediction job"
        ),
    )
}


def _load(command: Command) -> ModuleType | None:
    """The command's module, or None when this build leaves it out (a slim image without the Vertex AI SDK)."""
    try:
        return importlib.import_module(command.module)
    except ModuleNotFoundError as exc:
        if exc.name != command.module:
            raise
        return None


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """All commands are listed; only the requested command's module is imported to add its flags."""
    requested = next((arg for arg in argv if arg in COMMANDS), None)
    parser = argparse.ArgumentParser(prog="python -m trainer", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--env", help="configuration environment (config/<env>.yaml); default $FMNIST_ENV or local")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        cmd = sub.add_parser(command.name, help=command.help, description=command.help)
        module = _load(command) if command.name == requested else None
        if module is not None:
            module.add_arguments(cmd)
    return parser


def _take_env(argv: list[str]) -> tuple[list[str], str | None]:
    """Accept `--env X` anywhere before a `--` (pipelines write it after the command as often as before); two
    different values are refused: the promoter's jobs fix `--env` in their command, and an execution's appended
    arguments must not switch it (trainer/cloud/promotion.py)."""
    rest, envs, i = [], [], 0
    end = argv.index("--") if "--" in argv else len(argv)
    while i < len(argv):
        arg = argv[i]
        if i < end and arg == "--env" and i + 1 < end:
            envs.append(argv[i + 1])
            i += 2
            continue
        if i < end and arg.startswith("--env="):
            envs.append(arg.split("=", 1)[1])
            i += 1
            continue
        rest.append(arg)
        i += 1
    if len(set(envs)) > 1:
        raise SystemExit(f"error: --env given as {' and '.join(envs)}: give one configuration environment")
    return rest, (envs[0] if envs else None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    argv, env = _take_env(argv)
    args = build_parser(argv).parse_args(argv)
    args.env = env
    command = COMMANDS[args.command]
    try:
        settings = load_config(args.env)
        configure_vertex_sdk()  # a local Vertex AI emulator, when VERTEX_AI_EMULATOR_HOST names one (the twin)
        module = _load(command)
        if module is None:
            print(f"error: command '{command.name}' is not available in this build", file=sys.stderr)
            return 2
        return int(module.run(args, settings) or 0)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if isinstance(exc, GateRefused):  # the gate-refusal alert's log line
            log_event(GATE_REFUSED, str(exc), "WARNING", command=command.name)
        return exc.exit_code
