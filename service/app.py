"""The Flask application factory: routes, error handling and metrics (logging: service/accounting.py).

`create_app(config)` reads the model directory at once (so a missing model fails before gunicorn forks) and, unless
told to defer, builds the inference session and warms it up. Under gunicorn the master creates the app with
`activate=False` and each worker activates it after the fork (gunicorn_conf.post_worker_init) and starts its
registry poll thread: ONNX Runtime sessions and threads do not survive a fork, and /health answers 503 until a
worker's warm-up has succeeded. A registry reference whose alias is not set yet starts the service without a
model (service/state.py). Each request reads the champion slot's `current` once: the version that answers is
the one its reply, log line and metrics name, even if another version starts serving meanwhile.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import orjson
from flask import Flask, Response, request

from contracts.artifact_speed import choice_reason, cpu_model
from service import metrics
from service.accounting import AccountingMiddleware
from service.admin import is_admin, require_admin
from service.config import ServiceConfig
from service.errors import RequestError
from service.feedback import Feedback
from service.feedback import register_routes as register_feedback_routes
from service.logs import configure_logging
from service.predict_route import PredictRoute
from service.replies import DUMP_OPTIONS, JSON_MIMETYPE, error_reply
from service.rollout import OFF
from service.state import ServiceState
from service.versions import ModelSlot

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("service")
_PUBLIC_METADATA = ("model_version", "class_names", "input", "metrics", "created_at")


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body, option=DUMP_OPTIONS), status=status, mimetype=JSON_MIMETYPE)


class ServiceApp(Flask):
    """Flask with the accounting middleware in front of its WSGI entry (set by create_app), so the test
    client and gunicorn both go through it."""

    accounting: AccountingMiddleware | None = None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self.accounting is None:
            return super().__call__(environ, start_response)
        return self.accounting(environ, start_response)


def _coerce_config(config: ServiceConfig | Mapping[str, str] | None) -> ServiceConfig:
    if isinstance(config, ServiceConfig):
        return config
    if config is None:
        return ServiceConfig.from_env()
    return ServiceConfig.from_env({**os.environ, **config})


def create_app(config: ServiceConfig | Mapping[str, str] | None = None, *, activate: bool = True) -> Flask:
    """The prediction service as a Flask app.

    `config`: a ServiceConfig, a mapping of environment variables laid over os.environ, or None for the
    environment. `activate=False` defers the inference session to `app.extensions["fmnist"].activate()` (gunicorn
    does that in each worker, then `start_polling()`); in-process apps do not poll (call champion.poll_once()).
    """
    config = _coerce_config(config)
    configure_logging(config.log_level)
    champion = ModelSlot(config.model_uri, "champion", config, artifact_preference=config.model_artifact)
    champion.prepare()
    state = ServiceState(config, champion)
    app = ServiceApp(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.extensions["fmnist"] = state
    feedback = Feedback(config.feedback)  # before the fork: its record is shared by the workers
    predict = _register_routes(app, state, feedback)
    register_feedback_routes(app, state, feedback)
    _register_error_handlers(app, state)
    routes = {rule.rule for rule in app.url_map.iter_rules() if "<" not in rule.rule}
    app.accounting = AccountingMiddleware(
        app.wsgi_app,
        state,
        routes,
        {config.health_route, "/metrics"},
        state.request_log,
        config.trusted_proxy_hops,
        posts={config.predict_route: predict},
    )
    if activate:
        state.activate()
    bundle = champion.pending or (champion.current.bundle if champion.current else None)
    if bundle is None:
        log.warning("no model to serve yet: %s; /predict answers 503 until one is promoted", champion.waiting_reason)
    else:
        log.info("serving model %s (%s) from %s", bundle.version, bundle.artifact, bundle.version_dir)
    return app


def _register_routes(app: Flask, state: ServiceState, feedback: Feedback) -> PredictRoute:
    config = state.config
    champion = state.champion

    route = PredictRoute(state, feedback)

    def predict() -> Response:  # reached only past the accounting middleware's dispatch (app.wsgi_app)
        return Response(route.answer(request.environ), mimetype=JSON_MIMETYPE)

    def health() -> Response:
        loaded = champion.current
        if loaded is not None:
            return _json({"status": "ok", "model_version": loaded.version})
        full = is_admin(config, request.headers.get("Authorization"))
        error = state.unavailable(full)
        if error.reason == "no_model":  # up and answering: /predict says why there is nothing to predict with
            document = {"status": "no_model", "model_version": champion.version, "reason": state.waiting_code}
            return _json({**document, "detail": error.detail})
        raise error

    app.add_url_rule(config.predict_route, "predict", predict, methods=["POST"])
    app.add_url_rule(config.health_route, "health", health, methods=["GET"])

    @app.get("/v1/model")
    def model_info() -> Response:
        loaded = champion.current
        if loaded is None:
            raise state.unavailable()
        bundle = loaded.bundle
        serving = {
            "ready": True,
            "role": champion.role,
            "artifact": loaded.artifact,
            "artifact_preference": champion.artifact_preference,
            "artifact_choice": choice_reason(champion.artifact_preference, bundle.metadata, cpu_model()),
            "verified": bundle.verified,
            "max_instances": config.max_instances,
            "max_body_bytes": config.max_body_bytes,
            "drift_psi_threshold": config.drift_psi_threshold,
        }
        if not is_admin(config, request.headers.get("Authorization")):
            public = {key: bundle.metadata[key] for key in _PUBLIC_METADATA if key in bundle.metadata}
            return _json({**public, "serving": serving})
        return _json(
            {
                **bundle.metadata,
                "source": {
                    "requested_uri": bundle.requested_uri,
                    "version_dir": bundle.version_dir,
                    "alias": bundle.alias,
                    "version_id": bundle.version_id,
                    "digests_from": bundle.digests_from,
                    "artifact_sha256": bundle.artifact_sha256,
                },
                "serving": {
                    **serving,
                    "runtime": loaded.classifier.runtime_version,
                    "samples": 0 if bundle.samples is None else len(bundle.samples.images),
                    "poll_s": config.model_poll_s if champion.follows_registry else None,
                    "refused": dict(champion.refused),
                    "cpu": cpu_model(),  # what the export's speed record (quantization.speed) is compared with
                },
            }
        )

    @app.get("/openapi.json")
    def openapi() -> Response:
        return Response(state.openapi_bytes, mimetype=JSON_MIMETYPE)

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition(state.scrape_registry)
        return Response(body, content_type=content_type)

    @app.get("/monitoring/rollout")
    def rollout_report() -> Response:
        if state.rollout is None:
            return _json(OFF)
        full = is_admin(config, request.headers.get("Authorization"))
        return _json(state.rollout.report(champion.current, full=full))

    @app.get("/monitoring/drift")
    def drift_report() -> Response:
        return _json(state.drift.report())

    @app.post("/monitoring/drift/reset")
    def drift_reset() -> Response:
        require_admin(config, request.headers.get("Authorization"))
        state.drift.reset()
        return _json(state.drift.report())

    if config.page_enabled:
        from service.images import encode_png
        from service.page import render_page

        page_html = render_page(config.predict_route)

        @app.get("/")
        def page() -> Response:
            return Response(page_html, mimetype="text/html")

        @app.get("/v1/samples/random")
        def random_sample() -> Response:
            loaded = champion.current
            if loaded is None:
                raise state.unavailable()
            samples = loaded.bundle.samples
            if samples is None:
                raise RequestError(404, "no_samples", "the model directory has no samples.npz; upload an image")
            index = random.randrange(len(samples.images))
            label = None if samples.labels is None else loaded.class_names[int(samples.labels[index])]
            return _json({"b64": encode_png(samples.images[index]), "index": index, "label": label})

    return route


def _register_error_handlers(app: Flask, state: ServiceState) -> None:
    """Flask's routes answer errors through service/replies.py, as the predict route does."""
    limit = state.config.max_body_bytes

    @app.errorhandler(Exception)
    def any_error(error: Exception) -> Response:
        status, body, headers = error_reply(request.environ, error, limit)
        response = Response(body, status=status, mimetype=JSON_MIMETYPE)
        for name, value in headers:
            response.headers[name] = value
        return response
