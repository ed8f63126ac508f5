"""The lifecycle as one step list: what each step runs, reads, writes and needs, as data.

Why data: two runners execute it and must not drift. `python -m lifecycle` (the local runner, `make demo`) runs
each step's trainer command as a process; `python -m lifecycle compile` (lifecycle.orchestration.pipeline) turns the
same list into a Vertex AI Pipeline whose container tasks run the trainer image with the same arguments. A test compares
the compiled tasks with this list.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import storage

PROMOTED, REFUSED = "promoted", "refused"
GATE_REFUSED_EXIT = 3  # trainer.models.registry.GateRefused: the candidate stays a candidate; the run goes on

# Artifact kinds -> what Vertex ML Metadata records them as (kfp's system.* types; lifecycle.orchestration.pipeline
# maps them).
DATASET, MODEL, METRICS, REPORT = "dataset", "model", "metrics", "report"


@dataclass(frozen=True)
class Artifact:
    """What a step writes, by name (the pipeline's output key) and bucket URI (where it really is)."""

    name: str  # a Python identifier: kfp makes it a component parameter
    kind: str
    uri: str

    def __post_init__(self):
        if not self.name.isidentifier():
            raise PlanError(f"artifact name {self.name!r} must be a Python identifier (kfp parameter names)")


@dataclass(frozen=True)
class Resources:
    """The pipeline task's container limits (Vertex AI Pipelines picks a machine that fits them)."""

    cpu: str = "2"
    memory: str = "8G"


@dataclass(frozen=True)
class Condition:
    """Run only when an earlier step's outcome has this value (the quality gate's `promoted`)."""

    step: str
    outcome: str


@dataclass(frozen=True)
class Step:
    """One trainer command: `python -m trainer <args>` in the local runner and in the pipeline's container."""

    name: str  # the pipeline task name (lowercase, '-')
    title: str  # the local runner's banner and timing key
    args: tuple[str, ...]
    reads: tuple[str, ...] = ()  # names of artifacts earlier steps write
    writes: tuple[Artifact, ...] = ()
    outcomes: dict[int, str] = field(default_factory=dict)  # exit status -> outcome (non-zero ones are not failures)
    condition: Condition | None = None
    resources: Resources = Resources()
    launches: str = ""  # the Vertex AI job type the command starts and waits for: published as gcp_resources

    @property
    def argv(self) -> list[str]:
        """The local runner's `python` arguments."""
        return ["-m", "trainer", *self.args]


def model_dir_for(settings, run_id: str) -> str:
    """Where training writes the model: the run's folder (local) or the custom job's base output dir (gcp)."""
    if settings.target == "gcp":
        return storage.join(settings.models_bucket, "jobs", run_id, "model")
    return storage.join(settings.dev_bucket, "runs", run_id, "model")


def training_placement(settings) -> list[str]:
    """`trainer submit` flags from config: machine, replicas and, when config asks, accelerators."""
    vertex = settings.vertex
    flags = ["--machine-type", vertex.machine_type, "--workers", str(vertex.worker_count)]
    if vertex.accelerator_type:
        flags += ["--accelerator-type", vertex.accelerator_type, "--accelerator-count", str(vertex.accelerator_count)]
    return flags


def build_steps(
    settings,
    *,
    run_id: str,
    preset: str,
    source: str | None = None,
    train_args: tuple[str, ...] = (),
) -> list[Step]:
    """The lifecycle of one environment, in execution order; `run_id` names the training run (or custom job)."""
    env = ("--env", settings.env)
    gcp = settings.target == "gcp"
    # On Google Cloud the plan is the pipeline that schedules, new data and drift start: it exports without
    # registering and asks the promoter, the one account that writes the index, to register, gate and (when its own
    # config's registry.promote_pipeline_runs allows) promote; otherwise the version awaits `trainer promotion
    # approve` (issue 25, trainer/cloud/promotion.py). Locally (one user) export registers and the registry promotes.
    dataset = Artifact("dataset", DATASET, settings.datasets_bucket)
    model_dir = model_dir_for(settings, run_id)
    registry = Artifact("model", MODEL, settings.models_bucket)
    steps = [
        Step(
            "ingest",
            "ingest into the datasets bucket" if gcp else "ingest + validate",
            (*env, "ingest", *(("--source", source) if source else ())),
            writes=(dataset,),
        ),
        Step(
            "analyze",
            "analyze",
            (*env, "analyze"),
            reads=("dataset",),
            writes=(Artifact("analysis", REPORT, storage.join(settings.dev_bucket, "analysis")),),
        ),
        Step(
            "features",
            "features",
            (*env, "features"),
            reads=("dataset",),
            writes=(Artifact("features", DATASET, settings.datasets_bucket),),
        ),
    ]
    if gcp:
        steps.append(
            Step(
                "feed-feature-store",
                "load features into BigQuery + sync the feature view",
                (*env, "feed-feature-store"),
                reads=("features",),
                resources=Resources(cpu="1", memory="2G"),
            )
        )
        train = Step(
            "train",
            "train (Vertex AI custom job)",
            (*env, "submit", "--wait", "--preset", preset, "--display-name", run_id, *training_placement(settings)),
            reads=("dataset",),
            writes=(Artifact("trained_model", MODEL, model_dir),),
            resources=Resources(cpu="1", memory="2G"),  # the task only waits; the custom job trains
            launches="CustomJob",
        )
        if train_args:
            train = replace(train, args=(*train.args, "--", *train_args))
    else:
        train = Step(
            "train",
            "train",
            (*env, "train", "--preset", preset, "--run-id", run_id, "--model-dir", model_dir, *train_args),
            reads=("dataset",),
            writes=(Artifact("trained_model", MODEL, model_dir),),
        )
    steps += [
        train,
        # export evaluates on the test set itself (it must, to verify ONNX), so a separate `evaluate` would repeat it
        Step(
            "export",
            "evaluate + export + verify + register",
            (*env, "export", "--model-dir", model_dir, *(("--no-register",) if gcp else ())),
            reads=("trained_model",),
            # the registered model is an output of the step that registers it: export here, the promoter's job on gcp
            writes=(
                *(() if gcp else (registry,)),
                Artifact("evaluation", METRICS, storage.join(model_dir, "evaluation.json")),
            ),
        ),
        Step(
            "promote",
            "promote candidate -> champion (quality gate)",
            (
                (*env, "promotion", "request", "--model-dir", model_dir)
                if gcp
                else (*env, "registry", "promote", "candidate")
            ),
            reads=("evaluation",) if gcp else ("model",),
            writes=(registry,) if gcp else (),
            outcomes={0: PROMOTED, GATE_REFUSED_EXIT: REFUSED},
            resources=Resources(cpu="1", memory="2G"),
        ),
    ]
    if gcp:
        promoted = Condition("promote", PROMOTED)
        steps += [
            Step(
                "deploy-model",
                "deploy champion to the Vertex AI endpoint",
                (*env, "deploy-model", "champion"),
                reads=("model",),
                condition=promoted,
                resources=Resources(cpu="1", memory="2G"),
            ),
            Step(
                "import-evaluation",
                "import the evaluation into the Vertex AI Model Registry",
                (*env, "import-evaluation", "champion"),
                reads=("evaluation",),
                condition=promoted,
                resources=Resources(cpu="1", memory="2G"),
            ),
        ]
    steps.append(
        Step("registry", "registry", (*env, "registry", "list"), reads=("model",), resources=Resources("1", "2G"))
    )
    check_plan(steps)
    return steps


def build_prediction_steps(settings, *, run_id: str, source: str, model: str = "champion") -> list[Step]:
    """The prediction pipeline: one Vertex AI batch prediction job on the serving image, waited for."""
    destination = storage.join(settings.names.batch_predictions_uri, run_id)
    step = Step(
        "batch-prediction",
        "batch prediction (Vertex AI)",
        (
            *("--env", settings.env, "batch-prediction", source),
            *("--model", model, "--destination", destination, "--display-name", run_id, "--wait"),
        ),
        writes=(Artifact("predictions", DATASET, destination),),
        resources=Resources(cpu="1", memory="2G"),  # the task only waits; the job's replicas score
        launches="BatchPredictionJob",
    )
    check_plan([step])
    return [step]


class PlanError(ValueError):
    """The step list is inconsistent (a read nobody writes, a condition on a later step); names the step."""


def check_plan(steps: list[Step]) -> None:
    """Every read is written earlier, every condition names an earlier step with that outcome, names are unique."""
    written: set[str] = set()
    seen: dict[str, Step] = {}
    for step in steps:
        if step.name in seen:
            raise PlanError(f"two steps are named {step.name!r}")
        for name in step.reads:
            if name not in written:
                raise PlanError(f"step {step.name!r} reads {name!r}, which no earlier step writes")
        if step.condition:
            gate = seen.get(step.condition.step)
            if gate is None or step.condition.outcome not in gate.outcomes.values():
                raise PlanError(
                    f"step {step.name!r} runs on {step.condition.step!r} = {step.condition.outcome!r}, "
                    "but no earlier step of that name has that outcome"
                )
        written.update(a.name for a in step.writes)
        seen[step.name] = step


def producers(steps: list[Step]) -> dict[str, Step]:
    """Artifact name -> the step that writes it (the last one, as the pipeline wires it)."""
    return {artifact.name: step for step in steps for artifact in step.writes}
