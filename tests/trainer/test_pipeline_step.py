"""`trainer pipeline-step` around the real quality gate: a refusal (exit 3) is an outcome that skips the deploy,
not a failed pipeline; an unmapped failure fails the task and reports nothing."""

import json

import pytest

from lifecycle.orchestration.plan import PROMOTED, REFUSED
from trainer.cli import main
from trainer.errors import CommandError
from trainer.models.registry import register_external_version

GATE = ["--outcome", f"0={PROMOTED}", "--outcome", f"3={REFUSED}"]


def _executor_input(tmp_path) -> dict:
    """What Vertex AI passes a gate task: where its outcome parameter and its executor output go."""
    return {
        "outputs": {
            "parameters": {"outcome": {"outputFile": str(tmp_path / "out" / "outcome")}},
            "outputFile": str(tmp_path / "out" / "executor_output.json"),
        }
    }


def _promote(tmp_path, *extra: str) -> int:
    executor_input = json.dumps(_executor_input(tmp_path))
    return main(["--env", "local", "pipeline-step", "--executor-input", executor_input, *extra, "--", "--env",
                 "local", "registry", "promote", "candidate"])  # fmt: skip


@pytest.mark.parametrize("accuracy, outcome", [(0.5, REFUSED), (0.95, PROMOTED)])
def test_the_gates_exit_status_is_the_outcome_and_the_task_succeeds(
    settings, monkeypatch, tmp_path, capsys, accuracy, outcome
):
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", settings.storage_root)
    register_external_version(settings, source="custom", metrics={"accuracy": accuracy}, dataset_version="v-1")
    assert _promote(tmp_path, *GATE) == 0  # a refusal must not fail the run: the condition skips deploy-model
    status = 0 if outcome == PROMOTED else 3
    assert capsys.readouterr().out.splitlines()[-2:] == [f"pipeline step done (exit {status})", f"outcome: {outcome}"]
    assert (tmp_path / "out" / "outcome").read_text() == outcome
    written = json.loads((tmp_path / "out" / "executor_output.json").read_text())
    assert written == {"artifacts": {}, "parameterValues": {"outcome": outcome}}


def test_a_refusal_without_a_mapped_outcome_fails_the_task_with_the_commands_status(
    settings, monkeypatch, tmp_path, capfd
):
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", settings.storage_root)
    register_external_version(settings, source="custom", metrics={"accuracy": 0.5}, dataset_version="v-1")
    assert _promote(tmp_path, "--outcome", f"0={PROMOTED}") == 3
    err = capfd.readouterr().err
    assert "exited with 3" in err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    # both alerts' lines: the promoter's refusal (the child `trainer registry promote`) and the failed task
    assert [(e["event"], e["severity"]) for e in events] == [
        ("gate_refused", "WARNING"),
        ("pipeline_step_failed", "ERROR"),
    ]
    assert "below the floor" in events[0]["message"] and events[0]["command"] == "registry"
    assert not (tmp_path / "out").exists()  # nothing reported: the launcher marks the task failed


def test_an_outcome_flag_without_an_equals_sign_is_refused_naming_it(settings, tmp_path, capsys):
    assert _promote(tmp_path, "--outcome", "3") == 1
    assert "--outcome '3': expected KEY=VALUE" in capsys.readouterr().err


def test_every_output_artifact_carries_what_the_buckets_hold_now(settings, monkeypatch, idx_dir, tmp_path):
    """The lineage Vertex ML Metadata records: each artifact kind's URI and metadata read back from the buckets."""
    import storage
    from trainer.cloud.pipeline_step import executor_output
    from trainer.data.dataset import latest_version, version_uri
    from trainer.models.registry import ModelRegistry

    monkeypatch.setenv("FMNIST_STORAGE_ROOT", settings.storage_root)
    assert main(["--env", "local", "ingest", "--source", str(idx_dir)]) == 0
    dataset = latest_version(settings)
    trained = str(tmp_path / "job" / "model")
    training = {"run_id": "r-1", "dataset_version": dataset, "preset": "demo", "epochs": 2, "history": [0.5]}
    storage.write_text(storage.join(trained, "training.json"), json.dumps(training))
    candidate = register_external_version(settings, source="custom", metrics={"accuracy": 0.91}, dataset_version="d")
    evaluation = str(tmp_path / "evaluation.json")
    storage.write_text(evaluation, json.dumps({"metrics": {"accuracy": 0.91, "n": 3, "ok": True, "name": "x"}}))
    given = {
        "dataset": "/ignored",
        "features": "/ignored",
        "analysis": str(tmp_path / "reports"),
        "trained_model": trained,
        "model": "/ignored",
        "evaluation": evaluation,
        "notes": str(tmp_path / "notes.md"),
    }
    spec = {name: {"artifacts": [{"name": f"a-{name}", "type": {"schemaTitle": "system.Artifact"}}]} for name in given}
    output = executor_output(settings, {"outputs": {"artifacts": spec}}, given, None)

    described = {name: entry["artifacts"][0] for name, entry in output["artifacts"].items()}
    assert all(a["name"] == f"a-{n}" and a["type"] == {"schemaTitle": "system.Artifact"} for n, a in described.items())
    found = {name: (a["uri"], a["metadata"]) for name, a in described.items()}
    assert found == {
        "dataset": (version_uri(settings, dataset), {"dataset_version": dataset}),
        "features": (
            storage.join(version_uri(settings, dataset), "features.parquet"),
            {"dataset_version": dataset, "feature_function": "fmnist-image-features/v1"},
        ),
        "analysis": (storage.join(given["analysis"], dataset), {"dataset_version": dataset}),
        "trained_model": (trained, {"run_id": "r-1", "dataset_version": dataset, "preset": "demo", "epochs": 2}),
        "model": (
            ModelRegistry.from_settings(settings).version_uri(candidate),
            {"model_version": candidate, "dataset_version": "d", "accuracy": 0.91},
        ),
        "evaluation": (evaluation, {"accuracy": 0.91, "n": 3}),  # numbers only: no flags, no names
        "notes": (given["notes"], {}),  # a kind with no reader: its URI as given
    }
    assert "parameterValues" not in output  # no outcome declared, none written
    flat = str(tmp_path / "flat.json")  # an evaluation file with its metrics at the top level
    storage.write_text(flat, json.dumps({"accuracy": 0.5, "label": "x"}))
    only = {"evaluation": spec["evaluation"]}
    assert executor_output(settings, {"outputs": {"artifacts": only}}, {"evaluation": flat}, None)["artifacts"] == {
        "evaluation": {
            "artifacts": [{**spec["evaluation"]["artifacts"][0], "uri": flat, "metadata": {"accuracy": 0.5}}]
        }
    }


def test_outputs_are_written_where_the_launcher_reads_them(tmp_path):
    from trainer.cloud.pipeline_step import write_outputs

    existing = tmp_path / "existing"
    existing.mkdir()  # the launcher may have made a parameter's directory already
    executor_input = {
        "outputs": {
            "parameters": {
                "outcome": {"outputFile": str(existing / "outcome")},
                "other": {"outputFile": str(tmp_path / "a" / "b" / "other")},  # or not, two levels deep
            },
            "outputFile": str(tmp_path / "c" / "d" / "executor_output.json"),
        }
    }
    output = {"artifacts": {}, "parameterValues": {"outcome": REFUSED, "other": "x"}}
    write_outputs(executor_input, output)
    assert (existing / "outcome").read_text() == REFUSED and (tmp_path / "a" / "b" / "other").read_text() == "x"
    assert json.loads((tmp_path / "c" / "d" / "executor_output.json").read_text()) == output

    artifacts_only = {"artifacts": {"m": {"artifacts": [{"uri": "/m"}]}}}  # a step without an outcome
    write_outputs({"outputs": {"outputFile": str(tmp_path / "e" / "out.json")}}, artifacts_only)
    assert json.loads((tmp_path / "e" / "out.json").read_text()) == artifacts_only
    write_outputs({}, {"artifacts": {}})  # a task with no outputs at all: nothing to write, nothing fails
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "c", "e", "existing"]


def test_a_step_logs_its_inputs_and_what_it_wrote(settings, monkeypatch, idx_dir, tmp_path, capsys):
    from trainer.data.dataset import latest_version, version_uri

    monkeypatch.setenv("FMNIST_STORAGE_ROOT", settings.storage_root)
    assert main(["--env", "local", "ingest", "--source", str(idx_dir)]) == 0
    capsys.readouterr()
    executor_input = {
        "inputs": {"artifacts": {"features": {"artifacts": [{"name": "f", "uri": "gs://b/features.parquet"}]}}},
        "outputs": {
            "artifacts": {"dataset": {"artifacts": [{"name": "dataset"}]}},
            "outputFile": str(tmp_path / "out" / "executor_output.json"),
        },
    }
    argv = ["--env", "local", "pipeline-step", "--executor-input", json.dumps(executor_input)]
    # no --outcome: exit 0 is success, any other status fails the task
    executor_input["outputs"]["artifacts"]["notes"] = {"artifacts": [{"name": "notes"}]}
    argv = ["--env", "local", "pipeline-step", "--executor-input", json.dumps(executor_input)]
    given = ["--artifact", "dataset=/d", "--artifact", "notes=/n.md"]
    assert main([*argv, *given, "--", "--env", "local", "registry", "list"]) == 0
    uri = version_uri(settings, latest_version(settings))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "input features: gs://b/features.parquet"
    assert out[-1] == f"pipeline step done (exit 0): dataset -> {uri}, notes -> /n.md"
    written = json.loads((tmp_path / "out" / "executor_output.json").read_text())
    assert written["artifacts"]["dataset"]["artifacts"][0]["uri"] == uri

    assert main([*argv, "--artifact", "dataset=/d", "--", "--env", "local", "registry", "show", "nope"]) == 1
    *_, error, event = capsys.readouterr().err.splitlines()
    assert error == "error: `trainer --env local registry show nope` exited with 1"
    assert json.loads(event) == {  # the failed-run alert's log line (infra/components/monitoring.py)
        "severity": "ERROR",
        "message": "pipeline step `trainer registry` failed",
        "event": "pipeline_step_failed",
        "component": "trainer",
        "exit_status": 1,
        "step": "registry",
    }


def test_flags_and_executor_input_are_checked_with_messages_that_say_what_to_pass(settings, capsys):
    from trainer.cloud.pipeline_step import executor_output, parse_pairs

    assert parse_pairs(["model=gs://b/m?x=1"], "--artifact") == {"model": "gs://b/m?x=1"}  # the first '=' splits
    assert main(["--env", "local", "pipeline-step", "--executor-input", "{}", "--artifact", "m", "--", "x"]) == 1
    assert "--artifact 'm': expected KEY=VALUE" in capsys.readouterr().err
    assert main(["--env", "local", "pipeline-step", "--executor-input", "{{$}}", "--", "x"]) == 1
    err = capsys.readouterr().err
    assert "--executor-input is not JSON (" in err and "pass the {{$}} placeholder" in err
    assert executor_output(settings, {}, {}, None) == {"artifacts": {}}  # a task that declares no outputs
    with pytest.raises(CommandError) as raised:
        executor_output(settings, {"outputs": {"parameters": {"outcome": {}}}}, {}, None)
    assert str(raised.value) == "the task declares an outcome parameter but no --outcome maps exit status 0"
