"""The serving contract's exact values, as each platform's deploy writes them and the service reads them (found by
`make mutate`'s serving-contract group): the whole environment on Cloud Run and on Vertex AI, the rollout's
variables only with a challenger on Cloud Run, the deployed models' names, and the export's speed record."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from contracts import artifact_speed, serving
from contracts.artifact_speed import ASKED, FLOAT, INT8, NO_INT8, SpeedRecord, auto_choice, choice_reason
from contracts.rollout import Thresholds
from contracts.serving import Env, deployed_model_name, deployed_model_version, service_environment

THRESHOLDS = Thresholds(400, 0.97, 1.25, 0.02, 8, 40, 150, 3, 60, 0.015)


@dataclass(frozen=True)
class Service:
    drift_psi_threshold: float = 0.3
    max_instances_per_request: int = 64
    page_enabled: bool = False
    workers: int = 3
    model_poll_s: float = 12.5
    model_artifact: str = "int8"
    require_digests: bool = True
    challenger: str = ""
    rollout_mode: str = "shadow"
    canary_percent: float = 12.5
    shadow_sample_every: int = 7


SERVICE_VARIABLES = {
    "DRIFT_PSI_THRESHOLD": "0.3",
    "MAX_INSTANCES": "64",
    "PAGE_ENABLED": "false",
    "WORKERS": "3",
    "MODEL_POLL_S": "12.5",
    "MODEL_ARTIFACT": "int8",
    "REQUIRE_DIGESTS": "true",
}
THRESHOLD_VARIABLES = {
    "ROLLOUT_MIN_REQUESTS": "400",
    "ROLLOUT_MIN_AGREEMENT": "0.97",
    "ROLLOUT_MAX_LATENCY_RATIO": "1.25",
    "ROLLOUT_MAX_ERROR_RATE": "0.02",
    "ROLLOUT_MIN_CLIENTS": "8",
    "ROLLOUT_MAX_CLIENT_REQUESTS": "40",
    "ROLLOUT_MIN_LABELS": "150",
    "ROLLOUT_MIN_LABEL_POSTERS": "3",
    "ROLLOUT_MAX_POSTER_LABELS": "60",
    "ROLLOUT_MAX_ACCURACY_DROP": "0.015",
}
URI = "gs://fmnist-mlops-dev-models/registry@champion"


def test_every_variable_name_is_spelt_as_the_service_reads_it():
    names = {key: value for key, value in vars(Env).items() if key.isupper()}
    assert len(names) > 50 and all(key == value for key, value in names.items())
    assert (serving.PORT, serving.HEALTH_ROUTE, serving.PREDICT_ROUTE, serving.ROLLOUT_ROUTE) == (
        8080,
        "/health",
        "/predict",
        "/monitoring/rollout",
    )
    assert (serving.FEEDBACK_ROUTE, serving.ACCURACY_ROUTE) == ("/feedback", "/monitoring/accuracy")


def test_cloud_run_without_a_challenger_gets_the_service_settings_its_model_and_its_env():
    env = service_environment(Service(), THRESHOLDS, env_name="dev", platform="cloud-run", model_uri=URI)
    assert env == {"MODEL_URI": URI, **SERVICE_VARIABLES, "FMNIST_ENV": "dev"}
    assert list(env)[0] == "MODEL_URI"


def test_cloud_run_with_a_shadow_challenger_gets_the_rollout_and_every_threshold_but_no_canary_share():
    service = Service(challenger="candidate", page_enabled=True, require_digests=False)
    env = service_environment(service, THRESHOLDS, env_name="prod", platform="cloud-run", model_uri=URI)
    assert env == {
        "MODEL_URI": URI,
        **SERVICE_VARIABLES,
        "PAGE_ENABLED": "true",
        "REQUIRE_DIGESTS": "false",
        "FMNIST_ENV": "prod",
        "CHALLENGER": "candidate",
        "ROLLOUT_MODE": "shadow",
        "SHADOW_SAMPLE_EVERY": "7",
        **THRESHOLD_VARIABLES,
    }


def test_a_canary_challenger_also_gets_its_share():
    service = Service(challenger="candidate", rollout_mode="canary")
    env = service_environment(service, THRESHOLDS, env_name="dev", platform="cloud-run", model_uri=URI)
    assert (env["ROLLOUT_MODE"], env["CANARY_PERCENT"], env["SHADOW_SAMPLE_EVERY"]) == ("canary", "12.5", "7")
    assert serving.thresholds_environment(THRESHOLDS) == THRESHOLD_VARIABLES


def test_vertex_ai_gets_the_same_service_settings_and_no_model_uri_nor_in_service_rollout():
    service = Service(challenger="candidate", rollout_mode="canary")
    env = service_environment(service, THRESHOLDS, env_name="dev", platform="vertex")
    assert env == {**SERVICE_VARIABLES, "FMNIST_ENV": "dev"}


def test_a_model_uri_where_the_platform_sets_it_or_none_where_it_is_needed_is_refused():
    with pytest.raises(ValueError) as vertex:
        service_environment(Service(), THRESHOLDS, env_name="dev", platform="vertex", model_uri=URI)
    assert str(vertex.value) == "vertex: model_uri is set by Vertex AI"
    with pytest.raises(ValueError) as cloud_run:
        service_environment(Service(), THRESHOLDS, env_name="dev", platform="cloud-run")
    assert str(cloud_run.value) == "cloud-run: model_uri is required"


def test_a_deployed_model_is_named_after_its_version_and_read_back():
    assert deployed_model_name("v20261206-1") == "fmnist-v20261206-1"
    assert deployed_model_version("fmnist-v20261206-1") == "v20261206-1"
    assert deployed_model_version("someone-elses") == "someone-elses"  # not deploy-model's: as it is
    assert deployed_model_version("fmnist-") == ""


def test_the_speed_record_as_the_export_writes_it():
    record = SpeedRecord("AMD EPYC 9B14", 1000.44, 1234.56)
    assert record.to_dict() == {
        "cpu": "AMD EPYC 9B14",
        "batch": 64,
        "threads": 1,
        "float_images_per_s": 1000.4,  # one decimal, not a whole number
        "int8_images_per_s": 1234.6,
        "speedup": 1.234,
        "min_speedup": 1.05,
        "chosen": "int8",
    }
    assert (artifact_speed.SPEED_BATCH, artifact_speed.MIN_SPEEDUP) == (64, 1.05)
    unmeasured = SpeedRecord("c", 0.0, 500.0)  # a float run that timed nothing: no speed-up, float serves
    assert (unmeasured.speedup, unmeasured.chosen) == (0.0, FLOAT)


@pytest.mark.parametrize(
    "block, expected",
    [
        ({"cpu": "c", "float_images_per_s": "100", "int8_images_per_s": 120}, SpeedRecord("c", 100.0, 120.0, 64)),
        (
            {"cpu": "c", "float_images_per_s": 100, "int8_images_per_s": 120, "batch": "32"},
            SpeedRecord("c", 100, 120, 32),
        ),
        ({"cpu": "c", "float_images_per_s": 100}, None),  # no int8 figure
        ({"cpu": "c", "float_images_per_s": "fast", "int8_images_per_s": 120}, None),
        ({"cpu": "c", "float_images_per_s": None, "int8_images_per_s": 120}, None),
        (["c", 100, 120], None),
        (None, None),
    ],
)
def test_a_speed_record_is_read_back_or_none_when_malformed(block, expected):
    assert SpeedRecord.from_dict(block) == expected
    assert artifact_speed.speed_record({"quantization": {"speed": block}}) == expected


def test_a_metadata_without_a_quantization_block_has_no_speed_record():
    assert artifact_speed.speed_record({}) is None
    assert artifact_speed.speed_record({"quantization": "fast"}) is None
    fast = SpeedRecord("c", 100.0, 200.0).to_dict()
    assert auto_choice({"int8_artifact": "model.int8.onnx", "quantization": {"speed": fast}}, "c") == (
        INT8,
        "int8_faster_on_this_cpu",
    )


def test_an_asked_artifact_is_served_as_asked_unless_int8_was_never_exported():
    with_int8 = {"int8_artifact": "model.int8.onnx"}
    assert choice_reason("int8", with_int8, "c") == ASKED
    assert choice_reason("float", {}, "c") == ASKED
    assert choice_reason("int8", {"int8_artifact": None}, "c") == NO_INT8
    assert choice_reason("auto", {}, "c") == NO_INT8


def test_the_cpu_model_is_the_first_model_name_line_of_proc_cpuinfo():
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    if not names:
        pytest.skip("this machine's /proc/cpuinfo names no CPU model")
    artifact_speed.cpu_model.cache_clear()
    assert artifact_speed.cpu_model() == names[0]


def test_the_session_options_of_one_service_worker():
    import onnxruntime as ort

    options = artifact_speed.single_thread_options(ort)
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.log_severity_level == 3
