"""`trainer tune`: the declared search space, a real local Optuna search on generated data, the saved preset it
leaves, the Vertex AI tuning job request (built by the installed SDK offline), and the metric a trial reports."""

import inspect
import json
import sys

import pytest

import storage
from settings import load_config
from trainer import cli
from trainer.training.search_space import METRIC, SEARCH_SPACE, apply
from trainer.training.train import PRESETS, TrainResult, report_tuning_metric, resolve_config


def test_trial_values_land_in_the_config():
    config = apply(PRESETS["demo"], {"learning_rate": 0.004, "width": 24.0, "dropout": 0.25, "epochs": 3.0,
                                     "label_smoothing": 0.05})  # fmt: skip
    assert (config.learning_rate, config.epochs, config.label_smoothing) == (0.004, 3, 0.05)
    assert (config.model.width, config.model.dropout) == (24, 0.25) and isinstance(config.model.width, int)
    assert config.batch_size == PRESETS["demo"].batch_size


def test_train_takes_the_flags_a_vertex_trial_passes(settings):
    """Vizier passes --<parameter id>=<value>, discrete values possibly as '32.0'."""
    argv = ["train", "--preset", "demo", *(f"--{p.name}=7.0" if p.kind != "float" else f"--{p.name}=0.05"
                                           for p in SEARCH_SPACE)]  # fmt: skip
    args = cli.build_parser(argv).parse_args(argv)
    config = resolve_config(settings, args)
    assert (config.epochs, config.model.width) == (7, 7)
    assert (config.learning_rate, config.model.dropout, config.label_smoothing) == (0.05, 0.05, 0.05)


@pytest.mark.slow
def test_local_search_records_every_trial_and_saves_the_best_as_a_preset(cli_env, capsys):
    code = cli.main(["tune", "--preset", "smoke", "--trials", "2", "--timeout", "300", "--study", "s1",
                     "--save-preset", "tuned-s1"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    settings = cli_env.settings
    study = json.loads(storage.read_text(storage.join(settings.dev_bucket, "tuning", "s1", "study.json")))
    assert [t["number"] for t in study["trials"]] == [0, 1] and study["metric"] == METRIC
    values = [t["value"] for t in study["trials"]]
    assert study["best"]["value"] == max(values) and all(0 <= v <= 1 for v in values)
    for trial in study["trials"]:  # each trial is an ordinary run with its run record
        record = json.loads(storage.read_text(storage.join(settings.dev_bucket, "tuning", "s1", "runs",
                                                           trial["run_id"], "run.json")))  # fmt: skip
        assert record["status"] == "completed" and record["params"]["epochs"] == trial["params"]["epochs"]
    args = cli.build_parser(["train"]).parse_args(["train", "--preset", "tuned-s1"])
    tuned = resolve_config(settings, args)
    assert tuned.to_dict() == study["best"]["config"]


def test_an_unknown_preset_names_the_known_ones_and_the_fix(settings):
    args = cli.build_parser(["train"]).parse_args(["train", "--preset", "nope"])
    with pytest.raises(Exception, match=r"no preset 'nope': built-in ones are demo, full, gpu, smoke.*--save-preset"):
        resolve_config(settings, args)


def test_vertex_tuning_job_request_is_accepted_by_the_sdk(monkeypatch, capsys):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    from trainer.cloud.tuning import build_tuning_job, sdk_parameter_spec

    dev = load_config("dev", environ={})
    request = build_tuning_job(dev, SEARCH_SPACE, METRIC, preset="demo", display_name="fmnist-tune-1", trials=8,
                               parallel=2)  # fmt: skip
    assert set(request.tuning["parameter_spec"]) == {p.name for p in SEARCH_SPACE}
    assert request.tuning["encryption_spec_key_name"] == dev.names.kms_key_name
    init = {k: v for k, v in request.custom_job.init.items() if k not in ("experiment", "experiment_tensorboard")}
    aiplatform.init(**init, credentials=AnonymousCredentials())
    tuning = {**request.tuning, "parameter_spec": sdk_parameter_spec(request.tuning["parameter_spec"])}
    job = aiplatform.HyperparameterTuningJob(custom_job=aiplatform.CustomJob(**request.custom_job.job), **tuning)
    spec = job._gca_resource.study_spec
    assert [m.metric_id for m in spec.metrics] == ["val_accuracy"]
    assert {p.parameter_id for p in spec.parameters} == {p.name for p in SEARCH_SPACE}
    lr = next(p for p in spec.parameters if p.parameter_id == "learning_rate")
    assert lr.double_value_spec.min_value == 1e-3 and lr.scale_type.name == "UNIT_LOG_SCALE"
    inspect.signature(aiplatform.HyperparameterTuningJob.run).bind(job, **request.run)

    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    assert cli.main(["--env", "dev", "tune", "--dry-run", "--study", "fmnist-tune-2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["tuning"]["display_name"] == "fmnist-tune-2" and printed["tuning"]["max_trial_count"] == 8


def test_a_trial_reports_validation_accuracy_in_the_hypertune_file(tmp_path, monkeypatch):
    metrics = tmp_path / "hypertune" / "output.metrics"
    monkeypatch.setenv("CLOUD_ML_HP_METRIC_FILE", str(metrics))
    monkeypatch.setenv("CLOUD_ML_TRIAL_ID", "3")
    history = [{"val_accuracy": 0.80}, {"val_accuracy": 0.87}]
    report_tuning_metric(TrainResult(run_id="r", model_dir="m", test_metrics={"test_accuracy": 0.5}, history=history))
    line = json.loads(metrics.read_text().strip().splitlines()[-1])
    assert line["val_accuracy"] == "0.87" or float(line["val_accuracy"]) == 0.87
    assert str(line["global_step"]) == "2" and str(line["trial"]) == "3"


def test_tuning_send_over_the_wire_creates_one_study_of_trainer_jobs_under_cmek(monkeypatch):
    """`tuning.send` with the real SDK against the local Vertex AI fake (twin/vertex.py): the create request
    is the SDK's own encoding of the adapter's unchanged arguments."""
    from google.cloud.aiplatform import jobs

    from trainer.cloud import tuning
    from twin.vertex import vertex_over_the_wire

    monkeypatch.setattr(jobs, "_JOB_WAIT_TIME", 0.05)  # the SDK polls the job's state this often

    dev = load_config("dev", environ={})
    request = tuning.build_tuning_job(dev, SEARCH_SPACE, METRIC, preset="demo", display_name="fmnist-tune-1", trials=8,
                                      parallel=2)  # fmt: skip
    parent = f"projects/{dev.project_id}/locations/{dev.region}"
    with vertex_over_the_wire(dev.project_id, dev.region) as fake:
        job = tuning.send(request)
        job.wait()  # run(sync=False) sends from a background thread
    body = fake.only("POST", f"{parent}/hyperparameterTuningJobs").body
    assert body["displayName"] == "fmnist-tune-1" and (body["maxTrialCount"], body["parallelTrialCount"]) == (8, 2)
    assert body["encryptionSpec"] == {"kmsKeyName": dev.names.kms_key_name}
    assert body["studySpec"]["metrics"] == [{"metricId": METRIC, "goal": 1}]  # MAXIMIZE, as a number
    assert {p["parameterId"] for p in body["studySpec"]["parameters"]} == {p.name for p in SEARCH_SPACE}
    trial = body["trialJobSpec"]
    assert trial["serviceAccount"] == dev.names.runtime_account("trainer")
    assert trial["workerPoolSpecs"][0]["containerSpec"]["args"] == ["--preset", "demo"]
    assert not fake.sent("POST", "/tensorboards")
