"""The lifecycle's step list exactly, for both runners (local and gcp), and check_plan's refusals word for word.
The compiled pipeline and `make demo` both execute this list, so every title, argument, artifact, outcome, condition
and container limit is behaviour (found unpinned by `make mutate`)."""

import pytest

from lifecycle.orchestration import plan
from lifecycle.orchestration.plan import Artifact, Condition, PlanError, Resources, Step
from settings import load_config

SMALL = Resources("1", "2G")


def _local_settings(root):
    return load_config("local", environ={"FMNIST_STORAGE_ROOT": root})


def test_the_local_lifecycle_step_by_step():
    root = "/srv/fmnist"
    steps = plan.build_steps(_local_settings(root), run_id="r1", preset="demo", train_args=("--epochs", "1"))
    env, model_dir = ("--env", "local"), f"{root}/dev/runs/r1/model"
    assert steps == [
        Step(
            "ingest",
            "ingest + validate",
            (*env, "ingest"),
            writes=(Artifact("dataset", "dataset", f"{root}/datasets"),),
        ),
        Step(
            "analyze",
            "analyze",
            (*env, "analyze"),
            reads=("dataset",),
            writes=(Artifact("analysis", "report", f"{root}/dev/analysis"),),
        ),
        Step(
            "features",
            "features",
            (*env, "features"),
            reads=("dataset",),
            writes=(Artifact("features", "dataset", f"{root}/datasets"),),
        ),
        Step(
            "train",
            "train",
            (*env, "train", "--preset", "demo", "--run-id", "r1", "--model-dir", model_dir, "--epochs", "1"),
            reads=("dataset",),
            writes=(Artifact("trained_model", "model", model_dir),),
        ),
        Step(
            "export",
            "evaluate + export + verify + register",
            (*env, "export", "--model-dir", model_dir),
            reads=("trained_model",),
            writes=(
                Artifact("model", "model", f"{root}/models"),
                Artifact("evaluation", "metrics", f"{model_dir}/evaluation.json"),
            ),
        ),
        Step(
            "promote",
            "promote candidate -> champion (quality gate)",
            (*env, "registry", "promote", "candidate"),  # a person started it: it promotes
            reads=("model",),
            outcomes={0: "promoted", 3: "refused"},
            resources=SMALL,
        ),
        Step("registry", "registry", (*env, "registry", "list"), reads=("model",), resources=SMALL),
    ]
    assert steps[0].resources == Resources("2", "8G") and steps[3].argv[:3] == ["-m", "trainer", "--env"]
    with_source = plan.build_steps(_local_settings(root), run_id="r1", preset="demo", source="/data/raw")
    assert with_source[0].args == (*env, "ingest", "--source", "/data/raw")


def test_the_gcp_lifecycle_step_by_step():
    dev = load_config("dev", environ={})
    steps = plan.build_steps(dev, run_id="r1", preset="demo", source="gs://src", train_args=("--epochs", "1"))
    env = ("--env", "dev")
    datasets, models, work = dev.datasets_bucket, dev.models_bucket, dev.dev_bucket
    model_dir = f"{models}/jobs/r1/model"
    promoted = Condition("promote", "promoted")
    placement = ("--machine-type", dev.vertex.machine_type, "--workers", str(dev.vertex.worker_count))
    assert steps == [
        Step(
            "ingest",
            "ingest into the datasets bucket",
            (*env, "ingest", "--source", "gs://src"),
            writes=(Artifact("dataset", "dataset", datasets),),
        ),
        Step(
            "analyze", "analyze", (*env, "analyze"), ("dataset",), (Artifact("analysis", "report", f"{work}/analysis"),)
        ),
        Step("features", "features", (*env, "features"), ("dataset",), (Artifact("features", "dataset", datasets),)),
        Step(
            "feed-feature-store",
            "load features into BigQuery + sync the feature view",
            (*env, "feed-feature-store"),
            reads=("features",),
            resources=SMALL,
        ),
        Step(
            "train",
            "train (Vertex AI custom job)",
            (*env, "submit", "--wait", "--preset", "demo", "--display-name", "r1", *placement, "--", "--epochs", "1"),
            reads=("dataset",),
            writes=(Artifact("trained_model", "model", model_dir),),
            resources=SMALL,
            launches="CustomJob",
        ),
        Step(
            "export",
            "evaluate + export + verify + register",
            (*env, "export", "--model-dir", model_dir, "--no-register"),  # the promoter's gate job registers
            reads=("trained_model",),
            writes=(Artifact("evaluation", "metrics", f"{model_dir}/evaluation.json"),),
        ),
        Step(
            "promote",
            "promote candidate -> champion (quality gate)",
            (*env, "promotion", "request", "--model-dir", model_dir),  # the promoter decides on gcp (issue 25)
            reads=("evaluation",),
            writes=(Artifact("model", "model", models),),
            outcomes={0: "promoted", 3: "refused"},
            resources=SMALL,
        ),
        Step(
            "deploy-model",
            "deploy champion to the Vertex AI endpoint",
            (*env, "deploy-model", "champion"),
            reads=("model",),
            condition=promoted,
            resources=SMALL,
        ),
        Step(
            "import-evaluation",
            "import the evaluation into the Vertex AI Model Registry",
            (*env, "import-evaluation", "champion"),
            reads=("evaluation",),
            condition=promoted,
            resources=SMALL,
        ),
        Step("registry", "registry", (*env, "registry", "list"), reads=("model",), resources=SMALL),
    ]
    without = plan.build_steps(dev, run_id="r1", preset="demo")
    assert without[0].args == (*env, "ingest") and without[4].args[-2:] == placement[-2:]


def test_gcp_asks_the_promoter_whatever_the_pipelines_config_says():
    """promote_pipeline_runs is the promoter's own setting (in its image), not the pipeline's: the step asks."""
    dev = load_config("dev", environ={})
    trusting = dev.model_copy(update={"registry": dev.registry.model_copy(update={"promote_pipeline_runs": True})})
    promote = next(s for s in plan.build_steps(trusting, run_id="r", preset="demo") if s.name == "promote")
    model_dir = plan.model_dir_for(trusting, "r")
    assert promote.args == ("--env", "dev", "promotion", "request", "--model-dir", model_dir)


def test_accelerators_are_asked_only_when_configured():
    dev = load_config("dev", environ={})
    vertex = dev.vertex.model_copy(update={"accelerator_type": "NVIDIA_L4", "accelerator_count": 2, "worker_count": 3})
    gpu = dev.model_copy(update={"vertex": vertex})
    assert plan.training_placement(gpu) == [
        "--machine-type",
        dev.vertex.machine_type,
        "--workers",
        "3",
        "--accelerator-type",
        "NVIDIA_L4",
        "--accelerator-count",
        "2",
    ]
    assert plan.training_placement(dev) == ["--machine-type", dev.vertex.machine_type, "--workers", "1"]


def test_the_batch_prediction_step_list():
    dev = load_config("dev", environ={})
    destination = f"{dev.names.batch_predictions_uri}/p1"
    assert plan.build_prediction_steps(dev, run_id="p1", source="gs://in", model="v7") == [
        Step(
            "batch-prediction",
            "batch prediction (Vertex AI)",
            ("--env", "dev", "batch-prediction", "gs://in", "--model", "v7", "--destination", destination)
            + ("--display-name", "p1", "--wait"),
            writes=(Artifact("predictions", "dataset", destination),),
            resources=SMALL,
            launches="BatchPredictionJob",
        )
    ]
    assert plan.build_prediction_steps(dev, run_id="p1", source="gs://in")[0].args[5] == "champion"


def test_every_refusal_names_the_step_and_the_problem():
    with pytest.raises(PlanError) as raised:
        Artifact("trained-model", "model", "u")
    assert str(raised.value) == "artifact name 'trained-model' must be a Python identifier (kfp parameter names)"
    a = Step("a", "A", (), writes=(Artifact("x", "dataset", "u"),), outcomes={0: "ok"})
    cases = [
        ([a, a], "two steps are named 'a'"),
        ([Step("b", "B", (), reads=("x",)), a], "step 'b' reads 'x', which no earlier step writes"),
        (
            [a, Step("b", "B", (), condition=Condition("a", "promoted"))],
            "step 'b' runs on 'a' = 'promoted', but no earlier step of that name has that outcome",
        ),
        (
            [a, Step("b", "B", (), condition=Condition("z", "ok"))],
            "step 'b' runs on 'z' = 'ok', but no earlier step of that name has that outcome",
        ),
    ]
    for steps, message in cases:
        with pytest.raises(PlanError) as raised:
            plan.check_plan(steps)
        assert str(raised.value) == message
    plan.check_plan([a, Step("b", "B", (), reads=("x",), condition=Condition("a", "ok"))])  # consistent: no error


def test_producers_name_the_last_writer():
    first, second = (
        Step("a", "A", (), writes=(Artifact("x", "dataset", "1"),)),
        Step("b", "B", (), writes=(Artifact("x", "dataset", "2"), Artifact("y", "model", "3"))),
    )
    assert plan.producers([first, second]) == {"x": second, "y": second}
