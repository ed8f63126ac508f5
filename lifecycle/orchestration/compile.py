"""`python -m lifecycle compile`: the step list of one environment as a KFP v2 pipeline YAML for Vertex AI.

Why its own venv: kfp 2.17 pins protobuf < 7 and requests == 2.33.0, older than what the trainer's TensorFlow and
Google Cloud libraries run with here; `make pipeline` runs this module with `.venv-kfp/bin/python`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from lifecycle.orchestration.pipeline import RUN_ID, compile_pipeline
from lifecycle.orchestration.plan import build_prediction_steps, build_steps
from settings import ENV_PREFIX, ConfigError, Settings, load_config

DEFAULT_OUTPUT = Path("build") / "fmnist-lifecycle.yaml"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lifecycle compile", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--env", default="dev", help="config environment whose step list is compiled (default dev)")
    parser.add_argument(
        "--pipeline",
        choices=["lifecycle", "prediction"],
        default="lifecycle",
        help="lifecycle (raw data to deployed model, default) or prediction (a Vertex AI batch prediction job)",
    )
    parser.add_argument("--model", default="champion", help="prediction: registry version or alias to score with")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"default {DEFAULT_OUTPUT}")
    parser.add_argument("--image", help="trainer image (default: config vertex.trainer_image, else infra/'s tag)")
    parser.add_argument("--preset", help="training preset (default: config training.preset)")
    parser.add_argument(
        "--source",
        help="lifecycle: ingest source (default: <datasets bucket>/raw on gcp; config/Debian package locally); "
        "prediction: the images to score (default: <datasets bucket>/incoming)",
    )
    parser.add_argument("--train-arg", action="append", default=[], help="extra `trainer train` flag (repeatable)")
    return parser.parse_args(argv)


def task_environment(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """The settings overrides (FMNIST_<SECTION>...) the step list was computed with, for every task's container.

    Why: the compiled arguments already hold values computed from them (the local target's bucket paths), and a task
    runs with only the environment the pipeline gives it, never the operator's; without them a task reads the image's
    config and writes where no later task looks (found by `run-compiled --in-image`). The local target also gets its
    storage root resolved, because its default is relative to the checkout, not to the image's /app.
    """
    keep = {
        name: value
        for name, value in sorted(environ.items())
        if name.startswith(ENV_PREFIX)
        and name != ENV_PREFIX + "ENV"
        and name[len(ENV_PREFIX) :].split("__")[0].lower() in Settings.model_fields
    }
    if settings.target == "local":
        keep[ENV_PREFIX + "STORAGE_ROOT"] = str(Path(settings.dev_bucket).parent)
    return keep


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        settings = load_config(args.env)
        names = settings.names
        image = args.image or names.image_uri("trainer")
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.pipeline == "prediction" and settings.target != "gcp":
        print(
            f"error: the prediction pipeline runs a Vertex AI batch prediction job, and env {settings.env} is not a "
            "gcp environment: compile it for one (--env dev), or score locally with "
            "`python -m lifecycle batch-predict SOURCE --output FILE`",
            file=sys.stderr,
        )
        return 1
    if args.pipeline == "prediction":
        name, description = names.prediction_pipeline_name, "Fashion-MNIST: score images with a Vertex AI batch job"
        steps = build_prediction_steps(
            settings, run_id=RUN_ID, source=args.source or names.batch_input_uri, model=args.model
        )
    else:
        name, description = names.pipeline_name, "Fashion-MNIST: raw data to a deployed, evaluated model"
        source = args.source or (names.raw_data_uri if settings.target == "gcp" else None)
        steps = build_steps(
            settings,
            run_id=RUN_ID,
            preset=args.preset or settings.training.preset,
            source=source,
            train_args=tuple(args.train_arg),
        )
    try:
        environment = task_environment(settings, os.environ)
        compile_pipeline(steps, image, settings.env, args.output, name, description, environment)
    except ModuleNotFoundError as exc:
        print(f"error: {exc.name} is missing: run with .venv-kfp/bin/python (make pipeline-venv)", file=sys.stderr)
        return 1
    print(
        f"compiled {name} ({len(steps)} steps) of env {settings.env} into {args.output} "
        f"(image {image}) in {time.perf_counter() - start:.2f} s"
    )
    return 0
