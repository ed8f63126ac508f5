"""`python -m trainer submit`: training as a Vertex AI custom job.

Why a request object: everything sent to Vertex AI is built by pure functions here (tests assert it, `--dry-run`
prints it); only `send` talks to Google Cloud. The job runs the trainer image (entrypoint `python -m trainer
train`) with FMNIST_ENV set, so inside it the same config resolves; Vertex AI sets AIP_MODEL_DIR,
AIP_CHECKPOINT_DIR and AIP_TENSORBOARD_LOG_DIR under base_output_dir, and TF_CONFIG when there are several
replicas. The experiment and TensorBoard come from infra/ (config vertex.tensorboard); every resource name from
contracts.cloud (settings.names). With a TensorBoard the job gets it and the trainer tracks the experiment run;
without one the job is tied to the experiment and no TensorBoard is made (`experiment_tensorboard=False`).
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import storage
from trainer.cloud import gcp_resources
from trainer.cloud.vertex import require_gcp
from trainer.errors import CommandError

# ---- the custom job --------------------------------------------------------------------------------------------


@dataclass
class CustomJobRequest:
    """Keyword arguments of aiplatform.init, aiplatform.CustomJob and CustomJob.submit."""

    init: dict
    job: dict
    submit: dict
    notes: list = field(default_factory=list)


def job_display_name(preset: str, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"fmnist-train-{preset}-{now:%Y%m%d-%H%M%S}"


def build_custom_job(
    settings,
    train_args: list[str],
    *,
    display_name: str,
    workers: int | None = None,
    machine_type: str | None = None,
    accelerator_type: str | None = None,
    accelerator_count: int | None = None,
    image: str | None = None,
) -> CustomJobRequest:
    """One chief pool plus, for multi-worker training, a second pool of workers-1 identical replicas."""
    vertex = settings.vertex
    workers = vertex.worker_count if workers is None else workers  # --workers 0 is refused, not the default
    accelerator_type = accelerator_type if accelerator_type is not None else vertex.accelerator_type
    accelerator_count = accelerator_count if accelerator_count is not None else vertex.accelerator_count
    if workers < 1:
        raise CommandError(f"--workers must be >= 1, got {workers}")
    if bool(accelerator_type) != bool(accelerator_count):
        raise CommandError(
            "set both an accelerator type (e.g. NVIDIA_TESLA_T4) and a count >= 1, or neither "
            f"(got type={accelerator_type!r}, count={accelerator_count})"
        )
    machine_spec = {"machine_type": machine_type or vertex.machine_type}
    if accelerator_type:
        machine_spec.update(accelerator_type=accelerator_type, accelerator_count=accelerator_count)
    names = settings.names
    container = {
        "image_uri": image or names.image_uri("trainer"),
        "args": list(train_args),
        "env": [{"name": "FMNIST_ENV", "value": settings.env}, {"name": "KERAS_BACKEND", "value": "tensorflow"}],
    }
    pools = [{"machine_spec": machine_spec, "replica_count": 1, "container_spec": container}]
    if workers > 1:
        pools.append(
            {
                "machine_spec": dict(machine_spec),
                "replica_count": workers - 1,
                "container_spec": json.loads(json.dumps(container)),
            }
        )
    labels = {"app": "fmnist-mlops", "env": settings.env, "component": "trainer"}
    notes = []
    submit: dict = {"service_account": names.runtime_account("trainer"), "restart_job_on_worker_restart": True}
    if vertex.tensorboard:
        # The SDK refuses `experiment` with `tensorboard`: the job gets the TensorBoard, and the trainer inside it
        # tracks the experiment run itself (named --run-id, backed by the same TensorBoard).
        submit["tensorboard"] = vertex.tensorboard
    else:
        submit["experiment"] = vertex.experiment
        notes.append(
            "vertex.tensorboard is not set: no TensorBoard for this job (set it to `cdktf output` "
            "tensorboard, e.g. FMNIST_VERTEX__TENSORBOARD=projects/.../tensorboards/ID)"
        )
    return CustomJobRequest(
        init={
            "project": settings.project_id,
            "location": settings.region,
            "staging_bucket": names.staging_uri,
            "experiment": vertex.experiment,
            # False, not left out: left out, the SDK creates a default TensorBoard outside Terraform, without CMEK
            "experiment_tensorboard": vertex.tensorboard or False,
        },
        job={
            "display_name": display_name,
            "worker_pool_specs": pools,
            "base_output_dir": storage.join(settings.models_bucket, "jobs", display_name),
            "labels": labels,
            "encryption_spec_key_name": names.kms_key_name,
        },
        submit=submit,
        notes=notes,
    )


def send(request: CustomJobRequest, aiplatform=None, *, wait: bool = False):
    """Submit the job; with wait, block until it ends (CommandError if it failed or was cancelled)."""
    if aiplatform is None:
        from google.cloud import aiplatform
    aiplatform.init(**request.init)
    job = aiplatform.CustomJob(**request.job)
    job.submit(**request.submit)
    gcp_resources.publish("CustomJob", request.init["location"], job)  # cancelling a run cancels it
    if wait:
        try:
            with gcp_resources.cancel_on_sigterm(job, "Vertex AI custom job"):
                job.wait_for_completion()
        except RuntimeError as exc:
            raise CommandError(
                f"Vertex AI custom job {request.job['display_name']} did not succeed: {exc}. "
                "Its logs are in the Vertex AI console (Training > Custom jobs)"
            ) from None
    return job


# ---- command line -----------------------------------------------------------------------------------------------


def add_arguments(parser) -> None:
    parser.add_argument("--preset", help="training preset passed to the job (default: config training.preset)")
    parser.add_argument(
        "--workers", type=int, help="replicas (multi-worker via TF_CONFIG; default vertex.worker_count)"
    )
    parser.add_argument("--machine-type", help="default vertex.machine_type")
    parser.add_argument("--accelerator-type", help="e.g. NVIDIA_TESLA_T4 (default vertex.accelerator_type)")
    parser.add_argument("--accelerator-count", type=int)
    parser.add_argument("--image", help="trainer image (default: the one infra/ pushed)")
    parser.add_argument("--display-name", help="job name (default fmnist-train-<preset>-<UTC time>)")
    parser.add_argument("--wait", action="store_true", help="block until the job ends (fails if the job fails)")
    parser.add_argument("--dry-run", action="store_true", help="print the request, send nothing")
    parser.add_argument(
        "train_args", nargs=argparse.REMAINDER, help="more `train` flags after --, e.g. -- --epochs 20 --width 48"
    )


def run(args, settings) -> int:
    preset = args.preset or settings.training.preset
    extra = [a for a in args.train_args if a != "--"]
    display_name = args.display_name or job_display_name(preset)
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,127}", display_name):
        raise CommandError(
            f"--display-name '{display_name}': use lowercase letters, digits and '-' (it also names the experiment run)"
        )
    request = build_custom_job(
        settings,
        ["--preset", preset, "--run-id", display_name, *extra],
        display_name=display_name,
        workers=args.workers,
        machine_type=args.machine_type,
        accelerator_type=args.accelerator_type,
        accelerator_count=args.accelerator_count,
        image=args.image,
    )
    for note in request.notes:
        print(f"note: {note}")
    if args.dry_run:
        print(json.dumps({"init": request.init, "job": request.job, "submit": request.submit}, indent=2))
        return 0
    require_gcp(settings, "submit")
    job = send(request, wait=args.wait)
    model_dir = f"{request.job['base_output_dir']}/model"
    state = "finished" if args.wait else "submitted"
    print(
        f"{state} {job.resource_name}; the model {'is' if args.wait else 'will be'} in {model_dir}\n"
        f"then: python -m trainer --env {settings.env} export --model-dir {model_dir}"
    )
    return 0
