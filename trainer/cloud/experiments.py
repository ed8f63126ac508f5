"""Vertex AI Experiments: the run record's numbers, logged to the experiment infra/ declares (gcp target).

Why guarded: tracking must never lose a training run, so the cloud's own errors stop tracking with a warning and
the run record in the dev bucket still holds every number. A programming error (a TypeError from a keyword the
SDK does not take) is not the cloud's: it propagates.
"""

from __future__ import annotations

import os
import sys


class VertexExperiment:
    """Logs the same numbers to Vertex AI Experiments. Inside a custom job submitted with an experiment, the SDK
    already names the run (AIP_EXPERIMENT_RUN_NAME); elsewhere this starts or resumes the run `run_id`.
    Tracking failures are reported and do not stop training: the run record still holds every number."""

    def __init__(self, settings, run_id: str, aiplatform=None, environ=None):
        self.settings, self.run_id = settings, run_id
        self.environ = os.environ if environ is None else environ
        self._aiplatform = aiplatform
        self.active = False

    def _sdk(self):
        if self._aiplatform is None:
            from google.cloud import aiplatform

            self._aiplatform = aiplatform
        return self._aiplatform

    def start(self, params: dict, *, resume: bool) -> None:
        self._guard(self._start, params, resume)

    def _start(self, params: dict, resume: bool) -> None:
        sdk = self._sdk()
        vertex = self.settings.vertex
        if self.environ.get("AIP_EXPERIMENT_RUN_NAME"):
            sdk.init(project=self.settings.project_id, location=self.settings.region)
        else:
            sdk.init(
                project=self.settings.project_id,
                location=self.settings.region,
                experiment=vertex.experiment,
                experiment_tensorboard=vertex.tensorboard or False,
            )
            sdk.start_run(self.run_id, resume=resume)
        sdk.log_params({k: v for k, v in params.items() if isinstance(v, (str, int, float))})
        self.active = True

    def log_epoch(self, epoch: int, metrics: dict) -> None:
        # Time series need the experiment's backing TensorBoard: without one the SDK raises RuntimeError ("Please set
        # this experiment run with backing tensorboard resource"), which would end the training run. Without a
        # TensorBoard the epochs stay in the run record and the final metrics still reach the experiment.
        if self.active and self.settings.vertex.tensorboard:
            self._guard(self._sdk().log_time_series_metrics, metrics, step=epoch)

    def finish(self, final_metrics: dict) -> None:
        if self.active:
            self._guard(self._sdk().log_metrics, final_metrics)
            if not self.environ.get("AIP_EXPERIMENT_RUN_NAME"):
                self._guard(self._sdk().end_run)

    def _guard(self, fn, *args, **kwargs):
        from google.api_core.exceptions import GoogleAPIError
        from google.auth.exceptions import GoogleAuthError

        try:
            return fn(*args, **kwargs)
        except (GoogleAPIError, GoogleAuthError, ConnectionError) as exc:
            self.active = False
            print(
                f"warning: Vertex AI Experiments tracking stopped ({type(exc).__name__}: {exc}); "
                f"the run record in the dev bucket still has every metric",
                file=sys.stderr,
            )
