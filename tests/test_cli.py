"""The trainer CLI's contract with pipelines: exit statuses and one-line errors."""

import json

from trainer.cli import main
from trainer.models.registry import register_external_version


def test_gate_refusal_exits_3_and_other_errors_exit_1(settings, monkeypatch, capsys):
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", settings.storage_root)
    register_external_version(settings, source="custom", metrics={"accuracy": 0.5}, dataset_version="v-1")
    assert main(["registry", "promote", "candidate"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: promotion of") and "below the floor" in err
    assert main(["registry", "show", "no-such-version"]) == 1


def test_unknown_config_environment_exits_1(capsys):
    assert main(["--env", "nope", "registry", "list"]) == 1
    assert "no configuration for environment 'nope'" in capsys.readouterr().err


def test_registry_list_json_on_empty_registry(settings, monkeypatch, capsys):
    monkeypatch.setenv("FMNIST_STORAGE_ROOT", settings.storage_root)
    assert main(["registry", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["versions"] == {}


def test_env_is_accepted_after_the_command_too(capsys):
    assert main(["registry", "list", "--env", "nope"]) == 1
    assert "no configuration for environment 'nope'" in capsys.readouterr().err
