"""`python -m trainer pipeline-step`: run one trainer command as a Vertex AI Pipeline task and report its outputs.

Why a wrapper: a pipeline task must say what it produced. The trainer commands write into the buckets and know
nothing of pipelines; this runs one of them unchanged (`-- <command> <args>`, the same arguments the local
runner uses), maps the exit statuses that are outcomes (the quality gate's 3 = refused), and writes the KFP
executor output: each output artifact with its real bucket URI and metadata (dataset version, model version,
metrics), so Vertex ML Metadata links raw data to the deployed model, and the outcome as an output parameter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import storage
from contracts.feature_schema import FEATURE_FUNCTION_ID
from contracts.layout import CANDIDATE, FEATURES_FILE, ModelFiles
from contracts.monitoring_queries import PIPELINE_STEP_FAILED
from trainer.cloud import gcp_resources
from trainer.errors import CommandError, log_event

OUTCOME = "outcome"  # the output parameter a gate step sets


def parse_pairs(pairs: list[str], what: str) -> dict[str, str]:
    """`KEY=VALUE` flags into a dict; CommandError naming the flag when one has no '='."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"{what} {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out


# ---- metadata of what a step wrote (read back from the buckets, so it is what is really there) -------------------


def _dataset(settings, uri: str) -> tuple[str, dict]:
    from trainer.data.dataset import latest_version, version_uri

    version = latest_version(settings)
    return version_uri(settings, version), {"dataset_version": version}


def _features(settings, uri: str) -> tuple[str, dict]:
    version_dir, meta = _dataset(settings, uri)
    return storage.join(version_dir, FEATURES_FILE), {**meta, "feature_function": FEATURE_FUNCTION_ID}


def _analysis(settings, uri: str) -> tuple[str, dict]:
    from trainer.data.dataset import latest_version

    version = latest_version(settings)
    return storage.join(uri, version), {"dataset_version": version}


def _trained_model(settings, uri: str) -> tuple[str, dict]:
    training = json.loads(storage.read_text(storage.join(uri, ModelFiles.TRAINING)))
    keep = ("run_id", "dataset_version", "preset", "epochs")
    return uri, {k: training[k] for k in keep if k in training}


def _registered_model(settings, uri: str) -> tuple[str, dict]:
    from trainer.models.registry import ModelRegistry

    registry = ModelRegistry.from_settings(settings)
    index = registry.read_index()
    version = registry.resolve(CANDIDATE, index)
    record = index.versions[version]
    return registry.version_uri(version), {
        "model_version": version,
        "dataset_version": record.dataset_version,
        "accuracy": record.metrics.get("accuracy"),
    }


def _evaluation(settings, uri: str) -> tuple[str, dict]:
    evaluation = json.loads(storage.read_text(uri))
    metrics = evaluation.get("metrics", evaluation)
    return uri, {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


DESCRIBE: dict[str, Callable[..., tuple[str, dict]]] = {
    "dataset": _dataset,
    "features": _features,
    "analysis": _analysis,
    "trained_model": _trained_model,
    "model": _registered_model,
    "evaluation": _evaluation,
}


def executor_output(settings, executor_input: dict, artifacts: dict[str, str], outcome: str | None) -> dict:
    """The KFP executor output: every declared output artifact with its bucket URI and metadata, the outcome."""
    declared = executor_input.get("outputs", {}).get("artifacts", {})
    missing = sorted(set(declared) - set(artifacts))
    if missing:
        raise CommandError(f"the task declares output artifacts {missing} but no --artifact NAME=URI names them")
    out: dict = {"artifacts": {}}
    for name, spec in declared.items():
        describe = DESCRIBE.get(name, lambda _settings, uri: (uri, {}))
        uri, metadata = describe(settings, artifacts[name])
        artifact = {**spec["artifacts"][0], "uri": uri, "metadata": metadata}
        out["artifacts"][name] = {"artifacts": [artifact]}
    parameters = executor_input.get("outputs", {}).get("parameters", {})
    if OUTCOME in parameters:
        if outcome is None:
            raise CommandError("the task declares an outcome parameter but no --outcome maps exit status 0")
        out["parameterValues"] = {OUTCOME: outcome}
    if gcp_resources.PARAMETER in parameters:  # written by the command as soon as its job existed
        path = Path(parameters[gcp_resources.PARAMETER]["outputFile"])
        if not path.exists():
            raise CommandError(
                f"the task declares {gcp_resources.PARAMETER} but its command published no job to {path}: "
                "run a command that launches a Vertex AI job (submit --wait, batch-prediction --wait)"
            )
        out.setdefault("parameterValues", {})[gcp_resources.PARAMETER] = path.read_text()
    return out


def write_outputs(executor_input: dict, output: dict) -> None:
    """The executor output file, and each output parameter's own file (the launcher reads either)."""
    outputs = executor_input.get("outputs", {})
    for name, value in output.get("parameterValues", {}).items():
        path = Path(outputs["parameters"][name]["outputFile"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value)
    if outputs.get("outputFile"):
        path = Path(outputs["outputFile"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(output))


# ---- command line -----------------------------------------------------------------------------------------------


def add_arguments(parser) -> None:
    parser.add_argument("--executor-input", required=True, help="the KFP executor input JSON ({{$}})")
    parser.add_argument("--artifact", action="append", default=[], help="NAME=URI of an output artifact")
    parser.add_argument(
        "--outcome", action="append", default=[], help="EXIT=VALUE: an exit status that is an outcome (0=promoted)"
    )
    parser.add_argument("trainer_args", nargs="+", help="-- then the trainer command and its arguments")


def trainer_command(trainer_args: list[str]) -> list[str]:
    """The wrapped trainer command: the arguments after the one `--` that separates it from the wrapper's own.
    Only that one goes: a later `--` belongs to the command (`submit ... -- --epochs 3` passes flags to `train`).
    Python 3.11's argparse already removes the first `--` of a positional, later versions keep it: both work."""
    return list(trainer_args[1:] if trainer_args[:1] == ["--"] else trainer_args)


def _command_name(command: list[str]) -> str:
    """The trainer command a task runs (`registry` in `--env dev registry promote candidate`)."""
    words = iter(command)
    for word in words:
        if word == "--env":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return ""


def run(args, settings) -> int:
    try:
        executor_input = json.loads(args.executor_input)
    except ValueError as exc:
        raise CommandError(f"--executor-input is not JSON ({exc}); pass the {{{{$}}}} placeholder") from None
    outcomes = {int(code): value for code, value in parse_pairs(args.outcome, "--outcome").items()}
    artifacts = parse_pairs(args.artifact, "--artifact")
    command = trainer_command(args.trainer_args)
    for name, spec in executor_input.get("inputs", {}).get("artifacts", {}).items():
        print(f"input {name}: {spec['artifacts'][0].get('uri')}", flush=True)
    environ = dict(os.environ)
    published = executor_input.get("outputs", {}).get("parameters", {}).get(gcp_resources.PARAMETER)
    if published:  # the command writes its job there before waiting for it (trainer/cloud/gcp_resources.py)
        environ[gcp_resources.ENV] = published["outputFile"]
    status = subprocess.run([sys.executable, "-m", "trainer", *command], env=environ).returncode
    if status != 0 and status not in outcomes:
        print(f"error: `trainer {' '.join(command)}` exited with {status}", file=sys.stderr)
        name = _command_name(command)
        log_event(PIPELINE_STEP_FAILED, f"pipeline step `trainer {name}` failed", exit_status=status, step=name)
        return status
    output = executor_output(settings, executor_input, artifacts, outcomes.get(status))
    write_outputs(executor_input, output)
    summary = ", ".join(f"{n} -> {a['artifacts'][0]['uri']}" for n, a in output["artifacts"].items())
    print(f"pipeline step done (exit {status}){': ' + summary if summary else ''}", flush=True)
    if OUTCOME in output.get("parameterValues", {}):
        print(f"outcome: {output['parameterValues'][OUTCOME]}", flush=True)
    return 0
