"""Hyperparameter tuning as a Vertex AI job (Vizier): the same search space as the local search, the trainer image.

Why the custom job of `submit`: each trial is exactly the job `trainer submit` would run, with Vizier adding
`--<parameter>=<value>` flags; the trainer reports the trial's validation accuracy through the cloudml-hypertune
file Vertex AI reads (trainer/training/train.py). Everything sent is built here by pure functions; `send` talks to
Google Cloud.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainer.cloud.submit import CustomJobRequest, build_custom_job


@dataclass
class TuningJobRequest:
    """The custom job each trial runs, and the keyword arguments of aiplatform.HyperparameterTuningJob and run."""

    custom_job: CustomJobRequest
    tuning: dict[str, Any]
    run: dict[str, Any]


def parameter_spec(space: Any) -> dict[str, dict[str, Any]]:
    """The search space as plain data (printable, testable); `sdk_parameter_spec` makes the SDK's objects."""
    out: dict[str, dict[str, Any]] = {}
    for p in space:
        if p.kind == "float":
            out[p.name] = {"type": "double", "min": p.low, "max": p.high, "scale": "log" if p.log else "linear"}
        elif p.kind == "int":
            out[p.name] = {"type": "integer", "min": int(p.low), "max": int(p.high), "scale": "linear"}
        else:
            out[p.name] = {"type": "discrete", "values": [float(v) for v in p.choices], "scale": "linear"}
    return out


def sdk_parameter_spec(spec: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from google.cloud.aiplatform import hyperparameter_tuning as hpt

    kinds = {
        "double": hpt.DoubleParameterSpec,
        "integer": hpt.IntegerParameterSpec,
        "discrete": hpt.DiscreteParameterSpec,
    }
    return {name: kinds[p["type"]](**{k: v for k, v in p.items() if k != "type"}) for name, p in spec.items()}


def build_tuning_job(
    settings: Any,
    space: Any,
    metric: str,
    *,
    preset: str,
    display_name: str,
    trials: int,
    parallel: int,
) -> TuningJobRequest:
    job = build_custom_job(settings, ["--preset", preset], display_name=display_name)
    tuning = {
        "display_name": display_name,
        "metric_spec": {metric: "maximize"},
        "parameter_spec": parameter_spec(space),
        "max_trial_count": trials,
        "parallel_trial_count": parallel,
        "max_failed_trial_count": max(1, trials // 4),
        "labels": {"app": "fmnist-mlops", "env": settings.env, "component": "tuning"},
        "encryption_spec_key_name": settings.names.kms_key_name,
    }
    run = {"service_account": job.submit["service_account"], "restart_job_on_worker_restart": True, "sync": False}
    return TuningJobRequest(job, tuning, run)


def send(request: TuningJobRequest, aiplatform: Any = None) -> Any:
    if aiplatform is None:
        from google.cloud import aiplatform
    init = {k: v for k, v in request.custom_job.init.items() if k not in ("experiment", "experiment_tensorboard")}
    aiplatform.init(**init)
    custom_job = aiplatform.CustomJob(**request.custom_job.job)
    tuning = {**request.tuning, "parameter_spec": sdk_parameter_spec(request.tuning["parameter_spec"])}
    job = aiplatform.HyperparameterTuningJob(custom_job=custom_job, **tuning)
    job.run(**request.run)  # sync=False: it creates the job from a background thread and returns at once
    job.wait_for_resource_creation()  # so the caller's job.resource_name exists (it raised RuntimeError before)
    return job
