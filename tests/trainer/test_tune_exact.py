"""`python -m trainer tune` (trainer/training/tune.py) as a user runs it, value by value: the local search's calls of
`train` (dataset, config, paths, run ids), the study file and saved preset to the character, the lines it prints,
its seeded sampler, default study name and preset, `--timeout` and `--trials 0`; on the gcp target the dry run's
printed request whole and the job sent over the wire to the Vertex AI fake.

`train` is replaced by a recorder here (a trial's accuracy is its dropout, so the best trial is known and the
test takes seconds); tests/trainer/test_tune.py runs the same search with real training."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import sys
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
from google.cloud.aiplatform import jobs  # at collection: mutmut's fork server imports the SDK once, not each mutant

import storage
from settings import load_config
from tests.conftest import make_idx_dir
from trainer import cli
from trainer.cloud.tuning import build_tuning_job
from trainer.data.dataset import load_dataset
from trainer.training import tune
from trainer.training.search_space import LEARNING_RATES, METRIC, apply, search_space
from trainer.training.train import PRESETS, TrainResult, saved_preset_uri
from twin.vertex import vertex_over_the_wire


class RecordedTrain:
    """Stands in for `train`: records each call and answers a run of the config's epochs whose last validation
    accuracy is the trial's dropout (the epochs before it lower), after `sleep` seconds."""

    def __init__(self, sleep: float = 0.0):
        self.calls: list[SimpleNamespace] = []
        self.sleep = sleep

    def __call__(self, x_train, y_train, x_test, y_test, config, paths, **kwargs):
        self.calls.append(SimpleNamespace(arrays=(x_train, y_train, x_test, y_test), config=config, paths=paths,
                                          kwargs=kwargs))  # fmt: skip
        time.sleep(self.sleep)
        value = config.model.dropout
        history = [{"val_accuracy": value / (config.epochs - e)} for e in range(config.epochs - 1)]
        history.append({"val_accuracy": value})  # an epoch each, as train's; the trial is judged on the last
        return TrainResult(run_id=kwargs["run_id"], model_dir="m", test_metrics={}, history=history, seconds=12.3456)


@pytest.fixture
def recorded(monkeypatch):
    recorder = RecordedTrain()
    monkeypatch.setattr(tune, "train", recorder)
    return recorder


def seeded_params(seed: int, n: int, learning_rates: tuple[float, float] = (1e-3, 1e-2)) -> list[dict]:
    """The first n trials' values from Optuna's TPE sampler with this seed, asked directly (each told its dropout)."""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        params = {
            "learning_rate": trial.suggest_float("learning_rate", *learning_rates, log=True),
            "width": trial.suggest_categorical("width", [16, 24, 32, 48]),
            "dropout": trial.suggest_float("dropout", 0.1, 0.4),
            "label_smoothing": trial.suggest_float("label_smoothing", 0.0, 0.15),
            "epochs": trial.suggest_int("epochs", 2, 6),
        }
        study.tell(trial, params["dropout"])
        out.append(params)
    return out


def expected_study(name: str, base: str, version: str, params: list[dict]) -> dict:
    trials = [
        {
            "number": i,
            "params": p,
            "value": p["dropout"],
            "state": "COMPLETE",
            "run_id": f"{name}-trial-{i}",
            "config": apply(PRESETS[base], p).to_dict(),
            "seconds": 12.3,
        }  # fmt: skip
        for i, p in enumerate(params)
    ]
    best = max(trials, key=lambda t: t["value"])
    best = {k: v for k, v in best.items() if k != "state"}
    return {"study": name, "metric": "val_accuracy", "base_preset": base, "dataset_version": version, "trials": trials,
            "best": best}  # fmt: skip


def test_a_local_search_trains_each_trial_and_writes_the_study_and_the_best_preset_exactly(cli_env, recorded, capfd):
    settings = cli_env.settings
    started = time.monotonic()
    code = cli.main(["tune", "--preset", "smoke", "--trials", "3", "--study", "s1", "--save-preset", "best-s1"])
    took = time.monotonic() - started
    out, err = capfd.readouterr()
    assert code == 0, err
    params = seeded_params(PRESETS["smoke"].seed, 3)
    data = load_dataset(settings)
    root = storage.join(settings.dev_bucket, "tuning", "s1")
    assert tune.study_uri(settings, "s1") == root == f"{cli_env.root}/dev/tuning/s1"
    assert len(recorded.calls) == 3
    for number, (call, values) in enumerate(zip(recorded.calls, params, strict=True)):
        for got, want in zip(call.arrays, (data.x_train, data.y_train, data.x_test, data.y_test), strict=True):
            np.testing.assert_array_equal(got, want)
        assert call.config == apply(PRESETS["smoke"], values)
        assert call.paths.root == root and (call.paths.model_dir, call.paths.checkpoint_dir) == (None, None)
        assert call.kwargs == {"dataset": {"version": data.version, "hash": data.hash},
                               "run_id": f"s1-trial-{number}", "fresh": True, "verbose": 0}  # fmt: skip

    study = expected_study("s1", "smoke", cli_env.dataset_version, params)
    assert storage.read_text(storage.join(root, "study.json")) == json.dumps(study, indent=2)
    best = study["best"]
    saved = {"config": best["config"], "from_study": "s1", "value": best["value"]}
    assert storage.read_text(saved_preset_uri(settings, "best-s1")) == json.dumps(saved, indent=2)

    lines = out.splitlines()
    assert lines[:3] == [f"trial {i}: val_accuracy {p['dropout']:.4f} in 12 s with {p}" for i, p in enumerate(params)]
    assert re.fullmatch(
        re.escape("study s1: 3 trials in ")
        + r"(\d+)"
        + re.escape(
            f" s; best trial {best['number']} val_accuracy {best['value']:.4f} with {best['params']}; written to "
            f"{root}/study.json; saved as preset best-s1"
        ),
        lines[3],
    ), lines[3]
    assert 0 <= int(re.findall(r"trials in (\d+) s", lines[3])[0]) <= took + 1  # the search's seconds
    assert len(lines) == 4 and "Trial 0 finished" not in err  # Optuna's own log kept to warnings


@pytest.fixture
def tokyo_clock():
    """The process's local time nine hours ahead of UTC, so a study named from local time would show."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "Etc/GMT-9"
    time.tzset()
    yield
    if saved is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = saved
    time.tzset()


def test_without_flags_the_config_s_preset_and_a_utc_study_name_are_used_and_no_preset_saved(
    cli_env, recorded, capsys, tokyo_clock
):
    settings = cli_env.settings
    before = datetime.now(UTC).replace(microsecond=0)
    assert cli.main(["tune", "--trials", "2"]) == 0
    after = datetime.now(UTC)
    (name,) = os.listdir(cli_env.root / "dev" / "tuning")
    assert re.fullmatch(r"tune-\d{8}-\d{6}", name), name
    assert before <= datetime.strptime(name, "tune-%Y%m%d-%H%M%S").replace(tzinfo=UTC) <= after
    params = seeded_params(PRESETS["demo"].seed, 2)
    study = json.loads(storage.read_text(storage.join(tune.study_uri(settings, name), "study.json")))
    assert study == expected_study(name, "demo", cli_env.dataset_version, params)
    assert [call.config for call in recorded.calls] == [apply(PRESETS["demo"], p) for p in params]
    assert not (cli_env.root / "dev" / "presets").exists() and not list(cli_env.root.rglob("best*"))
    assert capsys.readouterr().out.splitlines()[-1].endswith(f"written to {cli_env.root}/dev/tuning/{name}/study.json")


def test_the_config_s_dataset_version_is_the_one_trials_train_on(cli_env, recorded, tmp_path, monkeypatch):
    from trainer.data.ingest import Source, ingest

    newer = ingest(cli_env.settings, Source("directory", str(make_idx_dir(tmp_path / "idx", 300, 100, seed=1))))
    assert newer != cli_env.dataset_version  # LATEST now names the newer one
    monkeypatch.setenv("FMNIST_TRAINING__DATASET_VERSION", cli_env.dataset_version)
    assert cli.main(["tune", "--preset", "smoke", "--trials", "1", "--study", "s2"]) == 0
    assert recorded.calls[0].kwargs["dataset"]["version"] == cli_env.dataset_version
    assert len(recorded.calls[0].arrays[0]) == 1200  # the session world's training images, not the newer 300
    study = json.loads(storage.read_text(storage.join(tune.study_uri(cli_env.settings, "s2"), "study.json")))
    assert study["dataset_version"] == cli_env.dataset_version


def test_no_trial_starts_after_the_timeout(cli_env, monkeypatch):
    recorder = RecordedTrain(sleep=0.3)
    monkeypatch.setattr(tune, "train", recorder)
    assert cli.main(["tune", "--preset", "smoke", "--trials", "3", "--timeout", "0.1", "--study", "s3"]) == 0
    study = json.loads(storage.read_text(storage.join(tune.study_uri(cli_env.settings, "s3"), "study.json")))
    assert len(recorder.calls) == 1 and [t["number"] for t in study["trials"]] == [0]


def test_no_finished_trial_is_an_error_that_says_to_give_it_more_time(cli_env, recorded, capsys):
    assert cli.main(["tune", "--preset", "smoke", "--trials", "0", "--study", "s4"]) == 1
    assert capsys.readouterr().err == "error: no trial finished within --timeout 600 s; give it more time\n"
    assert not recorded.calls and not (cli_env.root / "dev" / "tuning").exists()


def test_the_gcp_dry_run_prints_the_whole_tuning_job_request(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    argv = ["--env", "dev", "tune", "--dry-run", "--preset", "full", "--trials", "5", "--parallel", "3", "--study",
            "fmnist-tune-7"]  # fmt: skip
    assert cli.main(argv) == 0
    dev = load_config("dev", environ={})
    space = search_space(PRESETS["full"].optimizer)  # the base preset's optimizer sets the learning-rate decade
    request = build_tuning_job(dev, space, METRIC, preset="full", display_name="fmnist-tune-7", trials=5, parallel=3)
    expected = {"custom_job": request.custom_job.job, "tuning": request.tuning, "run": request.run}
    assert capsys.readouterr().out == json.dumps(expected, indent=2) + "\n"
    assert expected["tuning"]["max_trial_count"] == 5 and expected["tuning"]["parallel_trial_count"] == 3
    low, high = LEARNING_RATES[PRESETS["full"].optimizer]
    assert expected["tuning"]["parameter_spec"]["learning_rate"] == {"type": "double", "min": low, "max": high,
                                                                     "scale": "log"}  # fmt: skip


def test_the_gcp_dry_run_searches_on_the_scale_of_a_saved_preset_s_optimizer(gcs_settings, capsys):
    """The base preset is read from the dev bucket (the GCS emulator here) before the request is built."""
    base = dataclasses.replace(PRESETS["demo"], optimizer="sgd", learning_rate=0.2)
    storage.write_text(saved_preset_uri(gcs_settings, "demo-sgd"), json.dumps({"config": base.to_dict()}))
    args = SimpleNamespace(study="s11", preset="demo-sgd", trials=2, parallel=1, dry_run=True)
    assert tune.run(args, gcs_settings) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["tuning"]["parameter_spec"]["learning_rate"] == {"type": "double", "min": 3e-2, "max": 3e-1,
                                                                    "scale": "log"}  # fmt: skip
    assert printed["custom_job"]["worker_pool_specs"][0]["container_spec"]["args"] == ["--preset", "demo-sgd"]


def test_without_a_dry_run_the_job_goes_over_the_wire_with_the_flags(monkeypatch, capsys):
    monkeypatch.setattr(jobs, "_JOB_WAIT_TIME", 0.05)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    dev = load_config("dev", environ={})
    parent = f"projects/{dev.project_id}/locations/{dev.region}"
    with vertex_over_the_wire(dev.project_id, dev.region) as fake:
        argv = ["--env", "dev", "tune", "--preset", "full", "--trials", "5", "--parallel", "3", "--study", "s5"]
        assert cli.main(argv) == 0
        deadline = time.monotonic() + 30  # run(sync=False) polls the job from a background thread until it ends
        while not fake.sent("GET", "hyperparameterTuningJobs/1") and time.monotonic() < deadline:
            time.sleep(0.05)
    body = fake.only("POST", f"{parent}/hyperparameterTuningJobs").body
    assert body["displayName"] == "s5" and (body["maxTrialCount"], body["parallelTrialCount"]) == (5, 3)
    assert body["trialJobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"] == ["--preset", "full"]
    name = f"{parent}/hyperparameterTuningJobs/1"
    assert capsys.readouterr().out == f"submitted {name}: 5 trials, 3 at a time\n"


def test_the_study_is_under_the_dev_bucket_s_tuning_folder():
    dev = load_config("dev", environ={})
    assert tune.study_uri(dev, "s6") == f"{dev.dev_bucket}/tuning/s6"
    assert dev.dev_bucket.startswith("gs://")


def test_a_search_can_start_from_a_preset_an_earlier_search_saved(cli_env, recorded):
    assert cli.main(["tune", "--preset", "smoke", "--trials", "2", "--study", "s7", "--save-preset", "tuned"]) == 0
    first = seeded_params(PRESETS["smoke"].seed, 2)
    base = apply(PRESETS["smoke"], max(first, key=lambda p: p["dropout"]))
    assert cli.main(["tune", "--preset", "tuned", "--trials", "2", "--study", "s8"]) == 0
    assert [call.config for call in recorded.calls[2:]] == [apply(base, p) for p in seeded_params(base.seed, 2)]
    study = json.loads(storage.read_text(storage.join(tune.study_uri(cli_env.settings, "s8"), "study.json")))
    assert study["base_preset"] == "tuned"


def test_a_search_from_an_sgd_preset_draws_learning_rates_on_sgd_s_scale(cli_env, recorded):
    base = dataclasses.replace(PRESETS["smoke"], optimizer="sgd", learning_rate=0.2)
    storage.write_text(saved_preset_uri(cli_env.settings, "smoke-sgd"), json.dumps({"config": base.to_dict()}))
    assert cli.main(["tune", "--preset", "smoke-sgd", "--trials", "3", "--study", "s10"]) == 0
    assert [call.config for call in recorded.calls] == [
        apply(base, p) for p in seeded_params(base.seed, 3, (3e-2, 3e-1))
    ]
    assert all(3e-2 <= call.config.learning_rate <= 3e-1 and call.config.optimizer == "sgd" for call in recorded.calls)


def test_each_trial_s_line_is_out_before_the_next_trial_trains(cli_env, monkeypatch):
    """Piped (a Vertex AI or CI log), stdout is block-buffered: the line must be flushed, not held to the end."""
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="utf-8", line_buffering=False))
    seen: list[str] = []

    class Watching(RecordedTrain):
        def __call__(self, *args, **kwargs):
            seen.append(raw.getvalue().decode())
            return super().__call__(*args, **kwargs)

    monkeypatch.setattr(tune, "train", Watching())
    assert cli.main(["tune", "--preset", "smoke", "--trials", "3", "--study", "s9"]) == 0
    assert seen[0] == "" and [text.count("\ntrial ") + text.startswith("trial ") for text in seen] == [0, 1, 2]


def test_on_a_bucket_the_study_is_json_by_content_type(gcs_settings, recorded, tmp_path):
    from trainer.data.ingest import Source, ingest

    version = ingest(gcs_settings, Source("directory", str(make_idx_dir(tmp_path / "idx", 100, 50))))
    args = SimpleNamespace(preset="smoke", trials=1, timeout=600.0, save_preset=None)
    assert tune.run_local(gcs_settings, args, "s10")["dataset_version"] == version
    bucket, _, name = (
        storage.join(tune.study_uri(gcs_settings, "s10"), "study.json").removeprefix("gs://").partition("/")
    )
    assert storage.gcs_client().bucket(bucket).get_blob(name).content_type == "application/json"
