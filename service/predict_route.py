"""The predict route as a plain WSGI handler: the hot path reads the environ directly and skips Flask.

Why: per 1-image request, Flask's request and app contexts, URL adapter, context-local proxies and Response
object cost about as much CPU as inference itself (bench/profile_service.py measures both); the bare anchor pays
them too, so skipping them is what pays for the service's features (accounting, metrics, drift, rollout). The
accounting middleware (service/accounting.py) sends `POST <predict route>` here; every other route, and every
other method on this one (405), stays with Flask. Errors are answered by service/replies.py, as Flask's handlers
answer them. Each request reads the champion slot's `current` once: the version that answers is the one its
reply, log line and metrics name, even if another version starts serving meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from werkzeug.http import parse_options_header
from werkzeug.wrappers import Request

from service import metrics
from service.accounting import INSTANCES, MODEL_VERSION
from service.admin import is_admin
from service.body import read_body
from service.caller import caller_key
from service.errors import RequestError
from service.replies import DUMP_OPTIONS, JSON_MIMETYPE, error_reply, status_line
from service.request_parsing import ParsedRequest, parse_binary, parse_json, parse_query

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse

    from service.feedback import Feedback
    from service.state import ServiceState

_OK = "200 OK"
_NO_QUERY: Mapping[str, str] = {}


@lru_cache(maxsize=64)
def mimetype(content_type: str) -> str:
    """The media type of a Content-Type header, lower-cased, as werkzeug's `request.mimetype` gives it."""
    return parse_options_header(content_type)[0].lower()


def predictions(
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


class PredictRoute:
    """`POST <predict route>` for one worker's state: a WSGI application, and `answer(environ)` for Flask's view."""

    def __init__(self, state: ServiceState, feedback: Feedback):
        self._state = state
        self._feedback = feedback
        self._config = state.config
        self._champion = state.champion
        self._identity = state.config.caller_identity
        self._hops = state.config.trusted_proxy_hops

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            body = self.answer(environ)
            status = _OK
            headers = [("Content-Type", JSON_MIMETYPE), ("Content-Length", str(len(body)))]
        except Exception as error:  # noqa: BLE001 - every failure becomes a JSON reply, as Flask's handlers do
            code, body, extra = error_reply(environ, error, self._config.max_body_bytes)
            status = status_line(code)
            headers = [("Content-Type", JSON_MIMETYPE), ("Content-Length", str(len(body))), *extra]
        start_response(status, headers)
        return [body]

    def answer(self, environ: dict[str, Any]) -> bytes:
        """The reply's JSON bytes; RequestError or an HTTPException (413) when the request is refused."""
        state = self._state
        loaded = self._champion.current  # the one read of the slot: this request is answered by this version
        if loaded is None:
            raise state.unavailable(is_admin(self._config, environ.get("HTTP_AUTHORIZATION")))
        environ[MODEL_VERSION] = version = loaded.version
        parsed = self._parse(environ)
        pixels = parsed.pixels
        environ[INSTANCES] = len(pixels)
        names = loaded.class_names
        started = time.perf_counter()
        if state.rollout is None:
            probabilities = loaded.classifier.predict(pixels)
        else:  # champion and challenger (service/rollout.py), keyed by who the platform says is calling
            answer = state.rollout.predict(pixels, loaded, caller_key(environ, self._identity, self._hops))
            probabilities, names = answer.probabilities, answer.model.class_names
            environ[MODEL_VERSION] = version = answer.model.version
        metrics.INFERENCE.observe(time.perf_counter() - started)
        predicted = probabilities.argmax(axis=1)
        state.drift.observe(pixels, predicted, self._caller(environ))
        state.count_predictions(parsed.encoding, predicted, names)
        meta: dict[str, object] = {
            "model_version": version,
            "request_id": self._feedback.on_prediction(version, probabilities, predicted),
        }
        if parsed.notes:
            meta["notes"] = parsed.notes
        document = {"predictions": predictions(probabilities, predicted, parsed.top_k, names), "metadata": meta}
        return orjson.dumps(document, option=DUMP_OPTIONS)

    def _caller(self, environ: Mapping[str, Any]) -> Callable[[], str]:
        return lambda: caller_key(environ, self._identity, self._hops)

    def _parse(self, environ: dict[str, Any]) -> ParsedRequest:
        config = self._config
        kind = mimetype(environ.get("CONTENT_TYPE") or "")
        query = Request(environ).args if environ.get("QUERY_STRING") else _NO_QUERY
        if kind == "application/octet-stream":
            return parse_binary(read_body(environ, config.max_body_bytes), config.max_instances, query)
        if kind == JSON_MIMETYPE or kind.endswith("+json"):
            query_top_k = parse_query(query)
            parsed = parse_json(read_body(environ, config.max_body_bytes), config.max_instances)
            if parsed.top_k is None:
                parsed.top_k = query_top_k
            return parsed
        raise RequestError(
            415,
            "unsupported_media_type",
            f"Content-Type {kind or '(none)'!r} is not supported: send application/json "
            '({"instances": [...]}) or application/octet-stream (N x 784 uint8 pixels)',
        )
