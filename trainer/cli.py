"""`python -m trainer <command>`: one entry point; each command lives in its own module and is imported lazily.

Why lazy: `ingest` or `registry list` must not pay TensorFlow's import time. A command module exposes
`add_arguments(parser)` and `run(args, settings) -> int`.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from trainer.config import ConfigError, load_config

# name -> (module, one-line help)
COMMANDS = {
    "ingest": ("trainer.ingest", "validate the four IDX files and store them as a content-addressed dataset version"),
    "analyze": ("trainer.analysis", "class balance, pixel statistics, mean images, outliers and duplicates report"),
    "features": ("trainer.features", "per-image feature table (Parquet) for the feature store and drift baseline"),
    "train": ("trainer.train", "train the Keras model (local CPU/GPU, or inside a Vertex AI custom job)"),
    "evaluate": ("trainer.evaluate", "metrics, per-class table and confusion matrix on the held-out test set"),
    "export": ("trainer.export", "write the serving artifact and metadata, verify it, register it as candidate"),
    "registry": ("trainer.registry", "list, show, promote and roll back model versions"),
    "submit": ("trainer.vertex", "submit training as a Vertex AI custom job (gcp target)"),
    "deploy-model": ("trainer.vertex_deploy", "upload a registry version to Vertex AI and deploy it to the endpoint"),
    "undeploy-all": ("trainer.vertex_deploy", "undeploy every model from the endpoint (before cdktf destroy)"),
    "export-images": ("trainer.image_export", "export a dataset version as PNGs plus a Vertex AI import file"),
    "automl": ("trainer.automl", "train a Vertex AI AutoML image classifier and register it (gcp target)"),
}


class CommandError(Exception):
    """A command failed for a reason the user can fix; the message says what and how.

    Exit status `exit_code` (1; a refusal that callers treat as an outcome, such as the quality gate, uses its own).
    """
    exit_code = 1


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """All commands are listed; only the requested command's module is imported to add its flags."""
    requested = next((arg for arg in argv if arg in COMMANDS), None)
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__.splitlines()[0])
    parser.add_argument("--env", help="configuration environment (config/<env>.yaml); default $FMNIST_ENV or local")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if name != requested:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        adder = getattr(module, "add_undeploy_arguments" if name == "undeploy-all" else "add_arguments", None)
        if adder:
            adder(cmd)
    return parser


def _take_env(argv: list[str]) -> tuple[list[str], str | None]:
    """Accept `--env X` anywhere before a `--` (pipelines write it after the command as often as before)."""
    rest, env, i = [], None, 0
    end = argv.index("--") if "--" in argv else len(argv)
    while i < len(argv):
        arg = argv[i]
        if i < end and arg == "--env" and i + 1 < end:
            env, i = argv[i + 1], i + 2
            continue
        if i < end and arg.startswith("--env="):
            env, i = arg.split("=", 1)[1], i + 1
            continue
        rest.append(arg)
        i += 1
    return rest, env


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    argv, env = _take_env(argv)
    args = build_parser(argv).parse_args(argv)
    args.env = env
    try:
        settings = load_config(args.env)
        module = importlib.import_module(COMMANDS[args.command][0])
        runner = module.run if args.command != "undeploy-all" else module.run_undeploy
        return int(runner(args, settings) or 0)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        if exc.name == COMMANDS[args.command][0]:
            print(f"error: command '{args.command}' is not available in this build", file=sys.stderr)
            return 2
        raise
