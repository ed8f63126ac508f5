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
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from service import metrics
from service.accounting import ERROR, INSTANCES, MODEL_VERSION, REQUEST_ID, AccountingMiddleware
from service.admin import is_admin, require_admin
from service.body import read_body
from service.caller import caller_key
from service.config import ServiceConfig
from service.errors import RequestError
from service.feedback import Feedback
from service.feedback import register_routes as register_feedback_routes
from service.logs import configure_logging
from service.request_parsing import ParsedRequest, parse_binary, parse_json, parse_query
from service.rollout import OFF, Answer
from service.state import ServiceState
from service.versions import LoadedModel, ModelSlot

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger("service")
JSON_MIMETYPE = "application/json"
_DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_DRAIN_LIMIT = 8 * 1024 * 1024  # what is read of a refused body so the client sees its 413 (then the connection ends)
_PUBLIC_METADATA = ("model_version", "class_names", "input", "metrics", "created_at")


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body, option=_DUMP_OPTIONS), status=status, mimetype=JSON_MIMETYPE)


class ServiceApp(Flask):
    """Flask with the accounting middleware in front of its WSGI entry (set by create_app), so the test
    client and gunicorn both go through it."""

    accounting: AccountingMiddleware | None = None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self.accounting is None:
            return super().__call__(environ, start_response)
        return self.accounting(environ, start_response)


def _predictions(
    probabilities: np.ndarray, predicted: np.ndarray, top_k: int | None, names: list[str]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"class_id": class_id, "label": names[class_id], "probabilities": probabilities[i]}
        for i, class_id in enumerate(predicted.tolist())
    ]
    if top_k:
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
        for i, item in enumerate(out):
            item["top_k"] = [
                {"class_id": j, "label": names[j], "probability": probabilities[i, j]} for j in order[i].tolist()
            ]
    return out


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
    _register_routes(app, state, feedback)
    register_feedback_routes(app, state, feedback)
    _register_error_handlers(app, state)
    routes = {rule.rule for rule in app.url_map.iter_rules() if "<" not in rule.rule}
    app.accounting = AccountingMiddleware(
        app.wsgi_app, state, routes, {config.health_route, "/metrics"}, state.request_log, config.trusted_proxy_hops
    )
    if activate:
        state.activate()
    bundle = champion.pending or (champion.current.bundle if champion.current else None)
    if bundle is None:
        log.warning("no model to serve yet: %s; /predict answers 503 until one is promoted", champion.waiting_reason)
    else:
        log.info("serving model %s (%s) from %s", bundle.version, bundle.artifact, bundle.version_dir)
    return app


def _parse(state: ServiceState) -> ParsedRequest:
    mimetype = request.mimetype
    config = state.config
    query = request.args if request.environ.get("QUERY_STRING") else {}
    if mimetype == "application/octet-stream":
        return parse_binary(read_body(request, config.max_body_bytes), config.max_instances, query)
    if mimetype == JSON_MIMETYPE or mimetype.endswith("+json"):
        query_top_k = parse_query(query)
        parsed = parse_json(read_body(request, config.max_body_bytes), config.max_instances)
        if parsed.top_k is None:
            parsed.top_k = query_top_k
        return parsed
    raise RequestError(
        415,
        "unsupported_media_type",
        f"Content-Type {mimetype or '(none)'!r} is not supported: send application/json "
        '({"instances": [...]}) or application/octet-stream (N x 784 uint8 pixels)',
    )


def _rollout_predict(state: ServiceState, champion: LoadedModel, pixels: np.ndarray) -> Answer:
    """Champion and challenger (service/rollout.py), keyed by who the platform says is calling (service/caller.py)."""
    rollout = state.rollout
    assert rollout is not None
    key = caller_key(request.environ, rollout.config.caller_identity, state.config.trusted_proxy_hops)
    return rollout.predict(pixels, champion, key)


def _register_routes(app: Flask, state: ServiceState, feedback: Feedback) -> None:
    config = state.config
    champion = state.champion

    identity, hops = config.caller_identity, config.trusted_proxy_hops

    def predict() -> Response:
        loaded = champion.current  # the one read of the slot: this request is answered by this version
        if loaded is None:
            raise state.unavailable(is_admin(config, request.headers.get("Authorization")))
        environ = request.environ
        environ[MODEL_VERSION] = version = loaded.version
        parsed = _parse(state)
        environ[INSTANCES] = len(parsed.pixels)
        names = loaded.class_names
        started = time.perf_counter()
        if state.rollout is None:
            probabilities = loaded.classifier.predict(parsed.pixels)
        else:
            answer = _rollout_predict(state, loaded, parsed.pixels)
            probabilities, names = answer.probabilities, answer.model.class_names
            environ[MODEL_VERSION] = version = answer.model.version
        metrics.INFERENCE.observe(time.perf_counter() - started)
        predicted = probabilities.argmax(axis=1)
        state.drift.observe(parsed.pixels, predicted, lambda: caller_key(environ, identity, hops))
        state.count_predictions(parsed.encoding, predicted, names)
        response_meta: dict[str, object] = {
            "model_version": version,
            "request_id": feedback.on_prediction(version, probabilities, predicted),
        }
        if parsed.notes:
            response_meta["notes"] = parsed.notes
        return _json(
            {"predictions": _predictions(probabilities, predicted, parsed.top_k, names), "metadata": response_meta}
        )

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


def _drain_body() -> None:
    """Read what the client is still sending, so the error reply is not lost to a connection reset."""
    stream = request.environ.get("wsgi.input")
    remaining = _DRAIN_LIMIT
    try:
        while stream is not None and remaining > 0:
            chunk = stream.read(min(65536, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
    except Exception:  # noqa: BLE001 - a client that hangs up mid-body only loses its own error reply
        pass


def _register_error_handlers(app: Flask, state: ServiceState) -> None:
    def reply(error: RequestError) -> Response:
        request.environ[ERROR] = {"error": error.reason, "detail": error.detail}
        metrics.ERRORS.labels(error.reason).inc()
        return _json(error.body(), error.status)

    @app.errorhandler(RequestError)
    def request_error(error: RequestError) -> Response:
        return reply(error)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        reason = (error.name or "http_error").lower().replace(" ", "_")
        detail = error.description or error.name
        if error.code == 413:
            _drain_body()
            detail = (
                f"the body is over {state.config.max_body_bytes} bytes (the Vertex AI limit): split the "
                "batch or use the binary path"
            )
        elif error.code == 404:
            detail = f"no route {request.path}; see /openapi.json"
        elif error.code == 405:
            detail = f"{request.method} is not allowed on {request.path}; see /openapi.json"
        response = reply(RequestError(error.code or 400, reason, detail))
        if error.code == 413:
            response.headers["Connection"] = "close"  # the rest of the body is not read
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return reply(
            RequestError(
                500,
                "internal_error",
                f"{type(error).__name__}: the service failed; see its "
                f"logs for request id {request.environ.get(REQUEST_ID, '?')}",
            )
        )
