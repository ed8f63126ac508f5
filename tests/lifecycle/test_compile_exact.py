"""`python -m lifecycle compile` value by value in-process: the step list, image, names and settings overrides it
hands the kfp compiler (a recording stand-in here: the real compilation, in kfp's venv, is test_pipeline_exact.py's),
its defaults, its line on success and its errors word for word."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from lifecycle.orchestration import compile as compile_module
from lifecycle.orchestration.compile import DEFAULT_OUTPUT, main, parse_args, task_environment
from lifecycle.orchestration.pipeline import RUN_ID
from lifecycle.orchestration.plan import build_prediction_steps, build_steps
from settings import load_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def compiled(monkeypatch):
    """What main() hands the compiler, with no FMNIST_* setting of the test's own environment."""
    for name in [n for n in os.environ if n.startswith("FMNIST_")]:
        monkeypatch.delenv(name)
    calls = []
    monkeypatch.setattr(compile_module, "compile_pipeline", lambda *args: calls.append(args))
    return calls


def test_the_defaults_compile_devs_lifecycle_into_build():
    args = parse_args([])
    assert (args.env, args.pipeline, args.model, args.output) == ("dev", "lifecycle", "champion", DEFAULT_OUTPUT)
    assert (args.image, args.preset, args.source, args.train_arg) == (None, None, None, [])
    assert Path("build/fmnist-lifecycle.yaml") == DEFAULT_OUTPUT
    with pytest.raises(SystemExit):
        parse_args(["--pipeline", "other"])


def test_devs_lifecycle_reads_the_raw_bucket_with_the_configs_preset_in_the_configs_image(compiled, capsys, tmp_path):
    settings = load_config("dev", environ={})
    assert main(["--output", str(tmp_path / "l.yaml")]) == 0
    ((steps, image, env, output, name, description, environment),) = compiled
    assert steps == build_steps(
        settings, run_id=RUN_ID, preset="demo", source="gs://fmnist-mlops-dev-datasets/raw", train_args=()
    )
    assert (image, env, output, environment) == (settings.names.image_uri("trainer"), "dev", tmp_path / "l.yaml", {})
    assert (name, description) == ("fmnist-lifecycle", "Fashion-MNIST: raw data to a deployed, evaluated model")
    out = capsys.readouterr().out
    assert re.fullmatch(
        rf"compiled fmnist-lifecycle \(10 steps\) of env dev into {re.escape(str(tmp_path / 'l.yaml'))} "
        rf"\(image {re.escape(image)}\) in \d+\.\d\d s\n",
        out,
    ), out


def test_the_options_reach_the_step_list_and_the_compiler(compiled, monkeypatch, tmp_path):
    monkeypatch.setenv("FMNIST_VERTEX__MACHINE_TYPE", "n2-standard-4")
    settings = load_config("dev")
    argv = ["--image", "img:1", "--preset", "full", "--source", "gs://b/r", "--train-arg=--seed=1"]
    assert main([*argv, "--train-arg=--epochs=2", "--output", str(tmp_path / "o.yaml")]) == 0
    ((steps, image, _, _, _, _, environment),) = compiled
    assert steps == build_steps(
        settings, run_id=RUN_ID, preset="full", source="gs://b/r", train_args=("--seed=1", "--epochs=2")
    )
    assert (image, environment) == ("img:1", {"FMNIST_VERTEX__MACHINE_TYPE": "n2-standard-4"})


def test_a_local_lifecycle_has_no_default_source_and_its_storage_root_resolved(compiled, tmp_path):
    assert main(["--env", "local", "--output", str(tmp_path / "l.yaml")]) == 0
    ((steps, _, env, _, _, _, environment),) = compiled
    settings = load_config("local", environ={})
    assert steps == build_steps(settings, run_id=RUN_ID, preset="demo", source=None, train_args=())
    assert (env, environment) == ("local", {"FMNIST_STORAGE_ROOT": str(REPO / ".mlops")})


def test_the_prediction_pipeline_scores_the_incoming_prefix_with_the_champion(compiled, capsys, tmp_path):
    settings = load_config("dev", environ={})
    assert main(["--pipeline", "prediction", "--output", str(tmp_path / "p.yaml")]) == 0
    ((steps, _, _, _, name, description, _),) = compiled
    assert steps == build_prediction_steps(
        settings, run_id=RUN_ID, source="gs://fmnist-mlops-dev-datasets/incoming", model="champion"
    )
    assert (name, description) == (
        "fmnist-batch-prediction",
        "Fashion-MNIST: score images with a Vertex AI batch job",
    )
    assert capsys.readouterr().out.startswith("compiled fmnist-batch-prediction (1 steps) of env dev into ")
    assert main(["--pipeline", "prediction", "--source", "gs://b/in", "--model", "v3"]) == 0
    assert compiled[1][0] == build_prediction_steps(settings, run_id=RUN_ID, source="gs://b/in", model="v3")


def test_a_local_prediction_pipeline_is_refused_naming_the_alternative(compiled, capsys):
    assert main(["--env", "local", "--pipeline", "prediction"]) == 1
    assert capsys.readouterr().err == (
        "error: the prediction pipeline runs a Vertex AI batch prediction job, and env local is not a gcp "
        "environment: compile it for one (--env dev), or score locally with "
        "`python -m lifecycle batch-predict SOURCE --output FILE`\n"
    )
    assert compiled == []


def test_an_unknown_environment_is_one_error_line(compiled, capsys):
    assert main(["--env", "nowhere"]) == 1
    err = capsys.readouterr().err
    assert re.fullmatch(
        r"error: no configuration for environment 'nowhere': \S+/config/nowhere\.yaml does not exist "
        r"\(known: dev, local, prod\)\n",
        err,
    ), err
    assert compiled == []


def test_without_kfp_the_error_names_the_venv(monkeypatch, capsys, tmp_path):
    def no_kfp(*args):
        raise ModuleNotFoundError("No module named 'kfp'", name="kfp")

    monkeypatch.setattr(compile_module, "compile_pipeline", no_kfp)
    assert main(["--output", str(tmp_path / "x.yaml")]) == 1
    assert capsys.readouterr() == ("", "error: kfp is missing: run with .venv-kfp/bin/python (make pipeline-venv)\n")


def test_only_settings_overrides_travel_to_the_tasks_in_name_order():
    dev = load_config("dev", environ={})
    environ = {
        "FMNIST_VERTEX__MACHINE_TYPE": "n2",
        "FMNIST_ENV": "dev",  # the task's own FMNIST_ENV comes from the compiled env
        "FMNIST_NOT_A_SETTING": "x",
        "FMNIST_REGISTRY__ACCURACY_FLOOR": "0.3",
        "XFMNIST_REGISTRY__ACCURACY_FLOOR": "0.1",
        "HOME": "/root",
    }
    env = task_environment(dev, environ)
    assert list(env.items()) == [("FMNIST_REGISTRY__ACCURACY_FLOOR", "0.3"), ("FMNIST_VERTEX__MACHINE_TYPE", "n2")]
    assert task_environment(dev, {"FMNIST_STORAGE_ROOT": "/gcs"}) == {"FMNIST_STORAGE_ROOT": "/gcs"}


def test_a_usage_error_names_the_command_as_a_user_types_it(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one usage line, whatever the terminal
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--pipeline", "other"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m lifecycle compile [-h] [--env ENV]"), err
    assert "python -m lifecycle compile: error: argument --pipeline: invalid choice: 'other'" in err, err
    assert "(choose from lifecycle, prediction)" in err or "(choose from 'lifecycle', 'prediction')" in err, err


def test_both_pipelines_can_be_named_explicitly():
    assert parse_args(["--pipeline", "lifecycle"]).pipeline == "lifecycle"
    assert parse_args(["--pipeline", "prediction"]).pipeline == "prediction"


def test_the_printed_seconds_are_the_time_main_took(compiled, capsys, monkeypatch, tmp_path):
    clock = iter([1000.0, 1002.5])
    monkeypatch.setattr(compile_module.time, "perf_counter", lambda: next(clock))
    assert main(["--output", str(tmp_path / "l.yaml")]) == 0
    assert capsys.readouterr().out.endswith(" in 2.50 s\n")


def test_help_says_what_the_command_compiles(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps the description at the terminal's width
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--help"])
    assert exit_info.value.code == 0
    _, _, rest = capsys.readouterr().out.partition("\n\n")
    assert rest.startswith(
        "`python -m lifecycle compile`: the step list of one environment as a KFP v2 pipeline YAML for Vertex AI.\n\n"
    ), rest
