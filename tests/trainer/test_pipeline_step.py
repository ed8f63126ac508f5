"""`trainer pipeline-step` around the real quality gate: a refusal (exit 3) is an outcome that skips the deploy,
not a failed pipeline; an unmapped failure fails the task and reports nothing."""

import json

import pytest

from lifecycle.plan import PROMOTED, REFUSED
from trainer.cli import main
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
def test_the_gates_exit_status_is_the_outcome_and_the_task_succeeds(settings, monkeypatch, tmp_path, accuracy, outcome):
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", settings.storage_root)
    register_external_version(settings, source="custom", metrics={"accuracy": accuracy}, dataset_version="v-1")
    assert _promote(tmp_path, *GATE) == 0  # a refusal must not fail the run: the condition skips deploy-model
    assert (tmp_path / "out" / "outcome").read_text() == outcome
    written = json.loads((tmp_path / "out" / "executor_output.json").read_text())
    assert written == {"artifacts": {}, "parameterValues": {"outcome": outcome}}


def test_a_refusal_without_a_mapped_outcome_fails_the_task_with_the_commands_status(
    settings, monkeypatch, tmp_path, capsys
):
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", settings.storage_root)
    register_external_version(settings, source="custom", metrics={"accuracy": 0.5}, dataset_version="v-1")
    assert _promote(tmp_path, "--outcome", f"0={PROMOTED}") == 3
    assert "exited with 3" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing reported: the launcher marks the task failed


def test_an_outcome_flag_without_an_equals_sign_is_refused_naming_it(settings, tmp_path, capsys):
    assert _promote(tmp_path, "--outcome", "3") == 1
    assert "--outcome '3': expected KEY=VALUE" in capsys.readouterr().err
