"""One worker's serving state (service/state.py), exactly: the 503 a request without a model gets, and the model's
identity and drift gauges as a scrape reads them, with a model, without one and after a registry champion arrives.

In-process (create_app); the gauges are read from the worker's own scrape registry, sample by sample."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime

from service.limits import MAX_DETAIL_CHARS, shorten
from service.state import OPERATOR_HINT
from tests.service.conftest import ADMIN_ENV
from tests.service.model_factory import generated_images, local_registry, make_version, register

OCTET = "application/octet-stream"
HINT = (
    "train, export and register a model, then promote it (python -m trainer registry promote, or `make demo` "
    "locally); this service re-reads the registry every {} s and starts serving the champion then"
)


def scrape(state) -> dict[str, list[tuple[dict, float]]]:
    """{sample name: [(labels, value), ...]} of the state's own collector."""
    out: dict[str, list[tuple[dict, float]]] = {}
    for family in state.scrape_registry.collect():
        for sample in family.samples:
            if sample.name.startswith(("fmnist_model", "fmnist_drift")):
                out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def empty_registry_app(tmp_path):
    from service.app import create_app

    root = tmp_path / "models"
    return create_app({"MODEL_URI": f"{root}@champion", "MODEL_POLL_S": "2.5", **ADMIN_ENV}), root


def test_no_model_promoted_is_a_503_naming_the_reason_and_the_poll_interval(tmp_path):
    app, root = empty_registry_app(tmp_path)
    state = app.extensions["fmnist"]
    public = state.unavailable()
    assert (public.status, public.reason) == (503, "no_model")
    assert public.detail == f"no model is served yet (reason: not_promoted; {OPERATOR_HINT}); {HINT.format('2.5')}"
    reason = state.champion.waiting_reason
    assert str(root) in reason  # paths are the operator's
    whole = f"no model has been promoted yet ({reason}); {HINT.format('2.5')}"
    assert state.no_model_detail(full=True) == whole
    assert state.unavailable(full=True).detail == shorten(whole, MAX_DETAIL_CHARS)
    assert state.waiting_code == "not_promoted"


def test_without_a_model_the_scrape_and_openapi_say_none_and_not_ready(tmp_path):
    app = empty_registry_app(tmp_path)[0]
    got = scrape(app.extensions["fmnist"])
    labels = {
        "model_version": "none",
        "alias": "",
        "role": "champion",
        "artifact": "",
        "verified": "",
        "runtime": "onnxruntime (not loaded in this process)",
    }
    assert got["fmnist_model_info"] == [(labels, 1.0)]
    assert got["fmnist_model_ready"] == [({}, 0.0)]
    assert json.loads(app.test_client().get("/openapi.json").data)["info"]["version"] == "none"


def test_every_gauge_says_what_it_measures(tmp_path):
    """The descriptions Prometheus and Cloud Monitoring show beside each series (# HELP)."""
    state = empty_registry_app(tmp_path)[0].extensions["fmnist"]
    state.drift.report = lambda: {  # an ok report, so the two PSI families are collected too
        "images_sampled": 0,
        "threshold": 0.2,
        "drift_detected": False,
        "status": "ok",
        "features": {},
        "classes": {"psi": 0.0},
    }
    described = {family.name: family.documentation for family in state.scrape_registry.collect()}
    assert {name: described[name] for name in HELP} == HELP


HELP = {
    "fmnist_model": "The model this service serves",
    "fmnist_model_ready": "1 once this worker's model is loaded and warmed up",
    "fmnist_drift_images_sampled": "Images whose features entered the drift histograms",
    "fmnist_drift_threshold": "PSI above which drift is flagged (DRIFT_PSI_THRESHOLD)",
    "fmnist_drift_detected": "1 when any feature's or the class PSI exceeds the threshold",
    "fmnist_drift_client_images": "Sampled images per client bucket (drift)",
    "fmnist_drift_client_detected": "1 when a client bucket's own sampled images drifted (judged from "
    "DRIFT_MIN_IMAGES / DRIFT_MIN_CLIENTS)",
    "fmnist_drift_feature_psi": "Population stability index per input feature",
    "fmnist_drift_class_psi": "Population stability index of predicted classes",
}


def test_a_two_image_request_counts_both_predicted_classes(make_app):
    from service import metrics

    state = make_app().extensions["fmnist"]
    names = ["c0", "c1", "c2"]

    def counted() -> list[float]:
        return [metrics.PREDICTED.labels(name)._value.get() for name in names]

    before = counted()
    state.count_predictions("binary", np.array([2, 0]), names)
    state.count_predictions("binary", np.array([1]), names)
    state.count_predictions("binary", np.array([2, 2, 1]), names)
    assert [after - was for after, was in zip(counted(), before, strict=True)] == [1.0, 2.0, 3.0]


def test_a_model_directory_is_loading_not_missing_and_its_scrape_names_it(make_app):
    state = make_app(DRIFT_PSI_THRESHOLD="0.35").extensions["fmnist"]
    loading = state.unavailable()
    assert (loading.status, loading.reason) == (503, "not_ready")
    assert loading.detail == "the model is loading or warming up; retry shortly"
    got = scrape(state)
    labels = {
        "model_version": "test-v1",
        "alias": "",
        "role": "champion",
        "artifact": "model.onnx",
        "verified": "true",  # lower case, as every other label value
        "runtime": f"onnxruntime {onnxruntime.__version__}",
    }
    assert got["fmnist_model_info"] == [(labels, 1.0)]
    assert got["fmnist_model_ready"] == [({}, 1.0)]
    assert got["fmnist_drift_images_sampled"] == [({}, 0.0)]
    assert got["fmnist_drift_threshold"] == [({}, 0.35)]
    assert got["fmnist_drift_detected"] == [({}, 0.0)]


def test_a_registry_champion_is_named_by_alias_verified_and_its_drift_psi_published(tmp_path, model_dir):
    from service.app import create_app

    root = tmp_path / "models"
    directory, files = make_version(model_dir, tmp_path / "v1", "v1")
    register(local_registry(root), directory, "v1", files)
    app = create_app({"MODEL_URI": f"{root}@champion", "DRIFT_SAMPLE_EVERY": "1", "DRIFT_MIN_IMAGES": "10"})
    state = app.extensions["fmnist"]
    info = scrape(state)["fmnist_model_info"]
    assert [(labels["model_version"], labels["alias"], labels["verified"]) for labels, _ in info] == [
        ("v1", "champion", "true")
    ]
    images, _ = generated_images(12, seed=3)
    reply = app.test_client().post("/predict", data=images.tobytes(), content_type=OCTET)
    assert reply.status_code == 200
    report = state.drift.report()
    assert report["status"] == "ok"
    got = scrape(state)
    assert got["fmnist_drift_images_sampled"] == [({}, 12.0)]
    assert got["fmnist_drift_feature_psi"] == [
        ({"feature": name}, item["psi"]) for name, item in report["features"].items()
    ]
    assert len(got["fmnist_drift_feature_psi"]) == len(report["features"]) > 1
    assert got["fmnist_drift_class_psi"] == [({}, report["classes"]["psi"])]
    assert got["fmnist_drift_detected"] == [({}, 1.0 if report["drift_detected"] else 0.0)]


def log_lines(capfd) -> list[dict]:
    return [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]


def test_log_lines_name_the_served_version_and_the_projects_trace(tmp_path, model_dir, capfd):
    """Every request's log line (a /v1/model one too) names the version serving now, "none" before one, and links
    Cloud Trace in the configured project."""
    from service.app import create_app

    root = tmp_path / "models"
    trace = {"X-Cloud-Trace-Context": "abc123/1;o=1"}
    app = create_app({"MODEL_URI": f"{root}@champion", "GOOGLE_CLOUD_PROJECT": "proj-7"})
    capfd.readouterr()
    app.test_client().get("/v1/model", headers=trace)
    [before] = log_lines(capfd)
    assert before["model_version"] == "none"
    assert before["logging.googleapis.com/trace"] == "projects/proj-7/traces/abc123"
    directory, files = make_version(model_dir, tmp_path / "v1", "v1")
    register(local_registry(root), directory, "v1", files)
    assert app.extensions["fmnist"].champion.poll_once() is True
    capfd.readouterr()
    app.test_client().get("/v1/model", headers=trace)
    [after] = log_lines(capfd)
    assert after["model_version"] == "v1"


def test_drift_counts_live_in_the_state_directorys_drift_folder(tmp_path, model_dir):
    """The server's state directory (shared by its workers) holds drift under drift/; in-process, none is made."""
    from service.app import create_app

    state_dir = tmp_path / "state"
    app = create_app({"MODEL_URI": str(model_dir), "SERVICE_STATE_DIR": str(state_dir), "DRIFT_SAMPLE_EVERY": "1"})
    images, _ = generated_images(3, seed=4)
    assert app.test_client().post("/predict", data=images.tobytes(), content_type=OCTET).status_code == 200
    assert sorted(path.name for path in state_dir.iterdir()) == ["drift"]
    assert (state_dir / "drift" / "header.f64").is_file()
    assert app.extensions["fmnist"].drift.report()["images_sampled"] == 3
    assert not list(tmp_path.glob("*.f64"))


def test_polling_starts_for_the_champion_alone_when_no_challenger_is_configured(tmp_path):
    """What each gunicorn worker calls after the fork (gunicorn_conf.post_worker_init); the registry champion's poll
    thread runs, and a service without a challenger has nothing else to start."""
    state = empty_registry_app(tmp_path)[0].extensions["fmnist"]
    assert state.challenger is None
    state.start_polling()
    try:
        assert state.champion._thread is not None and state.champion._thread.is_alive()
    finally:
        state.champion.stop()


def test_a_challenger_slot_is_built_under_its_role_with_the_services_artifact_choice(
    tmp_path, model_dir, linear_model_dir
):
    """The role names the challenger's swaps, refusals and ready line; MODEL_ARTIFACT applies to both models (the
    slot's own default is "float": a challenger would never be served int8)."""
    from tests.service.test_rollout_report import _canary_app

    state = _canary_app(tmp_path, model_dir, linear_model_dir, "st", MODEL_ARTIFACT="auto").extensions["fmnist"]
    assert state.rollout is not None and state.challenger is not None
    assert (state.challenger.role, state.challenger.artifact_preference) == ("challenger", "auto")
    assert state.challenger.version == "st-challenger"
