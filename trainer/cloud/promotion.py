"""`python -m trainer promotion request|approve|gate-job|approve-job`: promotion goes through the promoter (issue 25).

Why: on Google Cloud only the promoter account writes and signs `registry/index.json` (infra/components/promoter.py,
infra/index_writers.py), so the pipeline and people do not promote: they ask. `request` (the pipeline's promote step)
executes the gate job with one override, the model directory; `approve` (an approver) executes the approval job
with one version id. Inside the job, `gate-job` registers the model itself (export re-evaluates and re-verifies it),
runs the paired gate on the pinned official test set and promotes only when `registry.promote_pipeline_runs`;
`approve-job` runs the gate again and promotes. An execution may override the arguments and the environment, so the
job actions accept nothing else and, with a Google Cloud config, refuse an environment that differs from the image's
where it could change what they do (settings, credentials, endpoints, Python's own variables): the promoter's rules
come from the configuration baked into its image. On the local target (one user) `gate-job`/`approve-job` run
in-process with the user's environment.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

from contracts.cloud import PROMOTION_APPROVE_JOB, PROMOTION_GATE_JOB
from contracts.layout import CHAMPION
from trainer.cloud.endpoints import run_api
from trainer.errors import CommandError, GateRefused

# Where a job's platform lists the variables it set itself (the twin's Cloud Run mounts it; Google's sets none, and an
# execution's overrides cannot add a file): those, with exactly those values, are the platform's, not the requester's.
PLATFORM_ENV_FILE = "/etc/fmnist/platform-env.json"
# Never from an execution's overrides: the settings (FMNIST_), credentials and endpoints (a storage emulator would
# receive what the promoter signs), the dynamic loader; PYTHON* only with the trainer image's own values.
UNTRUSTED_ENV = ("FMNIST_", "GOOGLE_", "CLOUDSDK_", "STORAGE_EMULATOR_HOST", "LD_", "AIP_")
IMAGE_PYTHON_ENV = {"PYTHONPATH": "/app", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}  # trainer/Dockerfile
POLL_S = 10.0
WAIT_LIMIT_S = 4200.0  # a little beyond the job's own timeout (infra/components/promoter.py JOB_TIMEOUT)


def job_name(settings, job: str) -> str:
    return f"projects/{settings.project_id}/locations/{settings.region}/jobs/{job}"


def run_request(settings, job: str, args: list[str]) -> tuple[str, dict]:
    """The Run Admin API v2 `jobs.run` request: one execution whose container gets exactly `args`."""
    return f"{run_api()}/{job_name(settings, job)}:run", {"overrides": {"containerOverrides": [{"args": list(args)}]}}


@dataclass
class JobRunner:
    """Executes a promotion job and waits for its end (needs roles/run.jobsExecutorWithOverrides and run.viewer)."""

    settings: object
    _session: object = field(default=None, repr=False)
    poll_s: float = POLL_S

    def _authorized(self):
        if self._session is None:
            import google.auth
            from google.auth.transport.requests import AuthorizedSession

            credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
            self._session = AuthorizedSession(credentials)
        return self._session

    def _call(self, method: str, url: str, body: dict | None = None) -> dict:
        import requests

        try:
            reply = self._authorized().request(method, url, data=None if body is None else json.dumps(body), timeout=60)
        except requests.RequestException as exc:
            raise CommandError(f"Cloud Run {method} {url} could not be reached: {exc}") from None
        if reply.status_code != 200:
            raise CommandError(
                f"Cloud Run {method} {url} failed: HTTP {reply.status_code} {reply.text[:300]} (requesters need "
                "roles/run.jobsExecutorWithOverrides and roles/run.viewer on the job: infra/components/promoter.py)"
            )
        return reply.json()

    def run(self, job: str, args: list[str]) -> dict:
        """Start one execution and wait for the operation to end; returns the finished operation."""
        url, body = run_request(self.settings, job, args)
        operation = self._call("POST", url, body)
        deadline = time.monotonic() + WAIT_LIMIT_S
        while not operation.get("done"):
            if time.monotonic() > deadline:
                raise CommandError(f"{job} execution {operation.get('name')} still runs after {WAIT_LIMIT_S:.0f} s")
            time.sleep(self.poll_s)
            operation = self._call("GET", f"{run_api()}/{operation['name']}")
        return operation


def platform_environment(path: str = PLATFORM_ENV_FILE) -> dict[str, str]:
    """The variables the job's platform says it set (PLATFORM_ENV_FILE), {} where there is no such file."""
    try:
        with open(path, encoding="utf-8") as file:
            listed = json.load(file)
    except FileNotFoundError:
        return {}
    return {str(k): str(v) for k, v in listed.items()}


def refuse_overridden_settings(environ=os.environ, platform: dict[str, str] | None = None) -> None:
    """Inside a promotion job: the gate's rules come from the image's config, never from the execution."""
    platform = platform_environment() if platform is None else platform
    overridden = sorted(
        name
        for name, value in environ.items()
        if platform.get(name) != value
        and (name.startswith(UNTRUSTED_ENV) or (name.startswith("PYTHON") and IMAGE_PYTHON_ENV.get(name) != value))
    )
    if overridden:
        raise CommandError(
            f"the promoter refuses these variables in its environment ({', '.join(overridden)}): its rules come "
            "from config/<env>.yaml in its image; execute the job with --args only"
        )


def _champion_after(settings, job: str, operation: dict, version_of) -> int:
    """Exit 0 when the job made the version champion, GateRefused (exit 3) otherwise, with the job's error."""
    from trainer.models.registry import ModelRegistry

    index = ModelRegistry.from_settings(settings).read_index()
    version = version_of(index)
    if version is not None and index.alias(CHAMPION) == version:
        print(f"the promoter made {version} champion ({job})")
        return 0
    error = (operation.get("error") or {}).get("message", "")
    raise GateRefused(
        f"the promoter did not promote {version or 'the model'} ({job}: {error or 'finished without promoting'}); "
        "its gate report is under registry/gate-reports/ in the models bucket"
    )


def _champion_already(settings, version_of) -> str | None:
    """The version `version_of(index)` names when it is the champion already (a retried request), else None."""
    from trainer.models.registry import ModelRegistry

    index = ModelRegistry.from_settings(settings).read_index()
    version = version_of(index)
    return version if version is not None and index.alias(CHAMPION) == version else None


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    request = sub.add_parser("request", help="ask the promoter to register, gate and (when allowed) promote")
    request.add_argument("--model-dir", required=True, help="the exported model directory (the job outputs)")
    approve = sub.add_parser("approve", help="ask the promoter to gate and promote a registered version")
    approve.add_argument("version")
    gate = sub.add_parser("gate-job", help="(inside the promoter's gate job) register, gate, promote if allowed")
    gate.add_argument("--model-dir", required=True)
    approval = sub.add_parser("approve-job", help="(inside the promoter's approval job) gate and promote")
    approval.add_argument("--version", required=True)


def awaits_approval(settings) -> bool:
    """A pipeline run's model waits for an approver unless the promoter's own config lets pipeline runs promote."""
    return settings.target == "gcp" and not settings.registry.promote_pipeline_runs


def gate_job(settings, model_dir: str) -> int:
    """Register `model_dir` (export evaluates and verifies it again), gate it, promote it when allowed."""
    from trainer.models.export import export_model_dir
    from trainer.models.registry import ModelRegistry

    if settings.target == "gcp":
        refuse_overridden_settings()
    summary = export_model_dir(settings, model_dir, register=True)
    version = summary["model_version"]
    if _champion_already(settings, lambda _: version):  # Vertex AI Pipelines may retry the promote step
        print(f"{version} is already the champion (a retried request): nothing to do")
        return 0
    new, previous = ModelRegistry.from_settings(settings).promote(version, pending_approval=awaits_approval(settings))
    print(f"promoted {new} to champion (was {previous or 'none'})")
    return 0


def approve_job(settings, version: str) -> int:
    from trainer.models.registry import ModelRegistry

    if settings.target == "gcp":
        refuse_overridden_settings()
    new, previous = ModelRegistry.from_settings(settings).promote(version)
    print(f"promoted {new} to champion (was {previous or 'none'})")
    return 0


def run(args, settings) -> int:
    if args.action == "gate-job":
        return gate_job(settings, args.model_dir)
    if args.action == "approve-job":
        return approve_job(settings, args.version)
    if settings.target != "gcp":  # one user: the promoter's action runs here
        return gate_job(settings, args.model_dir) if args.action == "request" else approve_job(settings, args.version)
    runner = JobRunner(settings)
    if args.action == "request":
        from trainer.models.model_dir import read_training_info

        run_id = read_training_info(args.model_dir)["run_id"]

        def of_this_run(index):
            return next((v for v, r in index.versions.items() if r.extra.get("run_id") == run_id), None)

        champion = _champion_already(settings, of_this_run)
        if champion:  # a retried step: its first attempt's execution promoted this run's model
            print(f"{champion} (run {run_id}) is already the champion (a retried request): the promoter is not asked")
            return 0
        operation = runner.run(PROMOTION_GATE_JOB, ["--model-dir", args.model_dir])
        return _champion_after(settings, PROMOTION_GATE_JOB, operation, of_this_run)
    return approve(settings, args.version, runner)


def approve(settings, version: str, runner: JobRunner | None = None) -> int:
    """Ask the promoter's approval job to gate and promote `version` (what `promotion approve` and, on Google Cloud,
    `trainer rollout` do): 0 when it made it champion, GateRefused (exit 3) otherwise."""
    operation = (runner or JobRunner(settings)).run(PROMOTION_APPROVE_JOB, ["--version", version])
    return _champion_after(settings, PROMOTION_APPROVE_JOB, operation, lambda index: version)
