"""The service's OpenAPI 3.0 description, built from the configured routes and limits.

Tests run schemathesis against it on a live gunicorn process, so it must say exactly what the service accepts
and answers, including every error status. The routes are a table (`route_table`: one row per documented route,
with the configured paths and limits) and the schemas data; small builders turn them into the document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts.rollout import REASON_CODES
from contracts.serving import ACCURACY_ROUTE, FEEDBACK_ROUTE
from service import limits
from service.config import ServiceConfig
from service.limits import MAX_SIDE

CLASS_NAMES_HINT = "class_names from metadata.json (T-shirt/top ... Ankle boot)"

_ERROR = {"$ref": "#/components/schemas/Error"}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def bounds_description(config: ServiceConfig) -> str:
    """The per-request bounds, stated where clients read them (enforced in service/limits.py and config)."""
    return (
        "Per-request bounds (anything beyond them is refused with a 4xx naming the bound): "
        f"a body of at most {config.max_body_bytes} bytes, chunked or not (413); "
        f"at most {config.max_instances} instances (MAX_INSTANCES); a JSON body with more than twice the lists "
        "([), values (,) or keys (:) that many images can hold is refused before it is parsed; "
        "a list instance is 784 numbers or 28 lists of 28 numbers, nothing nested deeper, with no strings, "
        "booleans or nulls (checked before any conversion); "
        f"an image instance at most {limits.MAX_ENCODED_CHARS} base64 characters and {limits.MAX_SIDE} pixels "
        f"per side, decoding to at most {limits.MAX_IMAGE_PIXELS} pixels (counted as the padded square, a "
        f"JPEG after its 1/2..1/8 draft scaling), {limits.MAX_REQUEST_PIXELS} pixels for all images of a "
        f"request together, {limits.DECODE_CPU_BUDGET_S} s of decoding CPU per request and "
        f"{limits.MAX_JPEG_SCANS} JPEG scans (413 too_many_pixels / decode_budget_exceeded, 400 bad_image). "
        f"Error details are at most {limits.MAX_DETAIL_CHARS} characters, client values quoted in them at most "
        f"{limits.MAX_ECHO_CHARS}; request log lines stay under {limits.MAX_LOG_LINE_BYTES} bytes; an "
        f"X-Request-Id is kept only if it matches {limits.REQUEST_ID_PATTERN}."
    )


_PIXEL = {"type": "number", "minimum": 0, "maximum": 255}
_FLAT = {
    "type": "array",
    "items": _PIXEL,
    "minItems": 784,
    "maxItems": 784,
    "description": "784 raw pixel values (0..255), row-major",
}
_NESTED = {
    "type": "array",
    "minItems": 28,
    "maxItems": 28,
    "description": "28 rows of 28 raw pixel values",
    "items": {"type": "array", "items": _PIXEL, "minItems": 28, "maxItems": 28},
}
_IMAGE = {
    "type": "object",
    "required": ["b64"],
    "additionalProperties": False,
    "properties": {
        "b64": {
            "type": "string",
            "description": "base64 PNG or JPEG (a data: URL is accepted too). 8-bit grayscale 28x28 is "
            "used as is; other modes are converted to grayscale (transparency flattened "
            "onto black) and other sizes are padded to a square and resized to 28x28, "
            f"each noted in metadata.notes. At most {MAX_SIDE} pixels per side.",
        }
    },
}
_TOP_K = {
    "type": "integer",
    "minimum": 1,
    "maximum": 10,
    "description": "also return the k most likely classes, best first",
}


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


@dataclass(frozen=True)
class RouteDoc:
    """One documented route; `operation` builds its OpenAPI operation (keys in this order)."""

    path: str
    method: str
    summary: str
    responses: dict[str, Any]
    description: str | None = None
    parameters: list[dict[str, Any]] | None = None
    security: list[dict[str, list[str]]] | None = None
    request_body: dict[str, Any] | None = None
    page: bool = False  # documented only with PAGE_ENABLED

    def operation(self) -> dict[str, Any]:
        fields = (
            ("summary", self.summary),
            ("description", self.description),
            ("parameters", self.parameters),
            ("security", self.security),
            ("requestBody", self.request_body),
            ("responses", self.responses),
        )
        return {key: value for key, value in fields if value is not None}


def _predict_errors(config: ServiceConfig) -> dict[str, Any]:
    """The statuses every prediction request may answer besides 200."""
    return {
        "400": _error_response("Invalid input: the detail names the problem and the instance"),
        "413": _error_response(
            f"Body over {config.max_body_bytes} bytes (the Vertex AI request limit), or images over their "
            "pixel or decoding budget"
        ),
        "415": _error_response("Content-Type is neither application/json nor application/octet-stream"),
        "503": _error_response(
            "No model has been promoted yet (error no_model: the detail gives a reason code and says how to "
            "promote one; the full reason needs the operator's token), or the model is still loading"
        ),
    }


_HEALTH_SCHEMA = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {
            "type": "string",
            "enum": ["ok", "no_model"],
            "description": "no_model: up, waiting for a promoted model",
        },
        "model_version": {"type": "string"},
        "reason": {
            "type": "string",
            "description": "no_model's reason code (not_promoted, index_invalid, read_error, refused_<reason>)",
        },
        "detail": {
            "type": "string",
            "description": "paths and names only with the operator's token",
        },
    },
}
_SAMPLE_SCHEMA = {
    "type": "object",
    "required": ["b64", "index"],
    "properties": {
        "b64": {"type": "string"},
        "index": {"type": "integer"},
        "label": {"type": "string", "nullable": True},
    },
}


def route_table(config: ServiceConfig) -> tuple[RouteDoc, ...]:
    """Every route the service documents, in the document's order. A new route is one row here."""
    return (
        RouteDoc(
            config.predict_route,
            "post",
            "Classify Fashion-MNIST images",
            description="Vertex AI prediction format, or raw uint8 pixels for high-volume clients.",
            parameters=[
                {
                    "name": "top_k",
                    "in": "query",
                    "required": False,
                    "schema": _TOP_K,
                    "description": "top-k for the binary path (JSON bodies may use parameters.top_k)",
                }
            ],
            request_body={
                "required": True,
                "content": {
                    "application/json": {"schema": _ref("PredictRequest")},
                    "application/octet-stream": {
                        "schema": {
                            "type": "string",
                            "format": "binary",
                            "description": "N x 784 uint8 pixels, row-major, images back to back",
                        }
                    },
                },
            },
            responses={
                "200": _json_response("One prediction per instance, in order", _ref("PredictResponse")),
                **_predict_errors(config),
            },
        ),
        RouteDoc(
            config.health_route,
            "get",
            "Readiness: 200 once the model is loaded and a warm-up prediction succeeded",
            {"200": _json_response("Ready", _HEALTH_SCHEMA), "503": _error_response("Loading or warming up")},
        ),
        RouteDoc(
            "/v1/model",
            "get",
            "The served model: version, classes, input contract and metrics; with the operator "
            "token (ADMIN_ENABLED) also its full metadata.json and where it was loaded from",
            {
                "200": _json_response(
                    "Model metadata", {"type": "object", "required": ["model_version", "class_names", "serving"]}
                ),
                "503": _error_response("No model has been promoted yet"),
            },
        ),
        RouteDoc(
            "/monitoring/drift",
            "get",
            "Population stability index per input feature and for predicted classes",
            {"200": _json_response("Drift report", _ref("DriftReport"))},
        ),
        RouteDoc(
            "/monitoring/rollout",
            "get",
            "Champion and challenger: per-version traffic, latency, classes, agreement and the verdict",
            {"200": _json_response("Rollout report", _ref("RolloutReport"))},
            description='Summed over every worker. Without CHALLENGER: {"mode": "off", "detail": ...}.',
        ),
        RouteDoc(
            FEEDBACK_ROUTE,
            "post",
            "Labels (ground truth) for an earlier prediction",
            {
                "200": _json_response("Counted", _ref("FeedbackResponse")),
                "400": _error_response(
                    "invalid_feedback, invalid_label (not a class of the model) or label_count_mismatch (one "
                    "label per image of that request)"
                ),
                "403": _error_response("poster_not_allowed: FEEDBACK_POSTERS does not name this caller"),
                "404": _error_response(
                    "unknown_request_id: never made here, evicted by newer predictions, over 64 images, or "
                    "served by another instance (the label is still written as a row for the offline join)"
                ),
                "409": _error_response("already_labelled: that prediction's label was counted already"),
                "410": _error_response("prediction_expired: older than FEEDBACK_MAX_AGE_S"),
                "415": _error_response("Content-Type is not application/json"),
            },
            description="One label per image of the request whose reply named request_id, in order, as class "
            "ids or names. Joined to the instance's record of its recent predictions (the last FEEDBACK_SLOTS "
            "of at most 64 images, for FEEDBACK_MAX_AGE_S) and counted once as live accuracy per model version "
            "and class (/monitoring/accuracy). Who may post: any caller the platform admits, or those "
            "FEEDBACK_POSTERS names; each poster is counted apart and capped in the rollout verdict.",
            request_body={"required": True, "content": {"application/json": {"schema": _ref("FeedbackRequest")}}},
        ),
        RouteDoc(
            ACCURACY_ROUTE,
            "get",
            "Live accuracy from posted labels, per model version and true class, with Wilson intervals",
            {"200": _json_response("Accuracy report", _ref("AccuracyReport"))},
            description="Summed over every worker of this instance; the fleet's figure is the PromQL of "
            "contracts/monitoring_queries.py over fmnist_feedback_* counters.",
        ),
        RouteDoc(
            "/monitoring/drift/reset",
            "post",
            "Start counting drift statistics afresh (all workers); operators only",
            {
                "200": _json_response("Reset done", _ref("DriftReport")),
                "401": _error_response("The operator token is missing or wrong"),
                "403": _error_response("Operator routes are disabled (ADMIN_ENABLED is not true)"),
            },
            description="Disabled unless ADMIN_ENABLED=true; then needs 'Authorization: Bearer <ADMIN_TOKEN>'.",
            security=[{"adminToken": []}],
        ),
        RouteDoc(
            "/metrics",
            "get",
            "Prometheus metrics of all workers",
            {
                "200": {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        ),
        RouteDoc(
            "/openapi.json",
            "get",
            "This document",
            {"200": _json_response("OpenAPI 3.0", {"type": "object"})},
        ),
        RouteDoc(
            "/",
            "get",
            "A page to upload an image or try a random test image",
            {"200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}},
            page=True,
        ),
        RouteDoc(
            "/v1/samples/random",
            "get",
            "A random test image shipped with the model (samples.npz), as a base64 PNG",
            {
                "200": _json_response("Sample", _SAMPLE_SCHEMA),
                "404": _error_response("The model directory has no samples.npz"),
                "503": _error_response("No model has been promoted yet"),
            },
            page=True,
        ),
    )


def build_paths(config: ServiceConfig) -> dict[str, Any]:
    """The document's `paths`: each route of the table that this configuration serves."""
    paths: dict[str, Any] = {}
    for route in route_table(config):
        if route.page and not config.page_enabled:
            continue
        paths.setdefault(route.path, {})[route.method] = route.operation()
    return paths


_VERSION_FIGURES = {
    "type": "object",
    "nullable": True,
    "required": ["version", "role", "requests", "errors", "error_rate"],
    "properties": {
        "version": {"type": "string"},
        "role": {"type": "string", "enum": ["champion", "challenger"]},
        "requests": {"type": "integer", "description": "requests this version scored"},
        "answered": {"type": "integer", "description": "requests whose reply it gave"},
        "errors": {"type": "integer"},
        "error_rate": {"type": "number"},
        "clients": {"type": "integer", "description": "distinct client buckets it scored for"},
        "inference_p50_ms": {"type": "number", "nullable": True, "description": "per image"},
        "inference_p99_ms": {"type": "number", "nullable": True, "description": "per image"},
        "classes": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
}
_ROLLOUT_REPORT = {
    "type": "object",
    "required": ["mode"],
    "properties": {
        "mode": {"type": "string", "enum": ["off", "shadow", "canary"]},
        "detail": {"type": "string"},
        "challenger_reference": {"type": "string"},
        "canary_percent": {"type": "number"},
        "sample_every": {"type": "integer"},
        "champion": _ref("VersionFigures"),
        "challenger": _ref("VersionFigures"),
        "agreement": {
            "type": "object",
            "nullable": True,
            "properties": {
                "agreed": {"type": "integer", "description": "images"},
                "compared": {"type": "integer", "description": "images"},
                "requests_credited": {"type": "number", "nullable": True},
                "rate": {
                    "type": "number",
                    "nullable": True,
                    "description": "per request, each client's weight capped",
                },
                "interval_95": {"type": "array", "items": {"type": "number"}},
            },
        },
        "evidence": {
            "type": "object",
            "nullable": True,
            "description": "what the verdict used: distinct clients, requests and errors with each "
            "client's weight capped, the paired inference-time ratio",
        },
        "thresholds": {"type": "object"},
        "accuracy": {
            "type": "object",
            "description": "per role: labels credited (each poster capped), correct, posters",
        },
        "verdict": {
            "type": "object",
            "properties": {
                "decision": {"type": "string", "enum": ["promote", "rollback", "wait"]},
                "codes": {
                    "type": "array",
                    "items": {"type": "string", "enum": list(REASON_CODES)},
                },
                "reasons": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "only with the operator's token",
                },
            },
        },
    },
}


def build_schemas(config: ServiceConfig) -> dict[str, Any]:
    """The document's `components.schemas`; only the request's instance count depends on the configuration."""
    return {
        "PredictRequest": {
            "type": "object",
            "required": ["instances"],
            "additionalProperties": False,
            "properties": {
                "instances": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": config.max_instances,
                    "items": {"oneOf": [_NESTED, _FLAT, _IMAGE]},
                },
                "parameters": {"type": "object", "additionalProperties": False, "properties": {"top_k": _TOP_K}},
            },
        },
        "Prediction": {
            "type": "object",
            "required": ["class_id", "label", "probabilities"],
            "properties": {
                "class_id": {"type": "integer", "minimum": 0, "maximum": 9},
                "label": {"type": "string", "description": CLASS_NAMES_HINT},
                "probabilities": {"type": "array", "items": {"type": "number"}, "minItems": 10, "maxItems": 10},
                "top_k": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["class_id", "label", "probability"],
                        "properties": {
                            "class_id": {"type": "integer"},
                            "label": {"type": "string"},
                            "probability": {"type": "number"},
                        },
                    },
                },
            },
        },
        "PredictResponse": {
            "type": "object",
            "required": ["predictions", "metadata"],
            "properties": {
                "predictions": {"type": "array", "items": _ref("Prediction")},
                "metadata": {
                    "type": "object",
                    "required": ["model_version", "request_id"],
                    "properties": {
                        "model_version": {"type": "string"},
                        "request_id": {
                            "type": "string",
                            "pattern": "^[0-9a-f]{16}$",
                            "description": f"the id to post this request's labels against ({FEEDBACK_ROUTE})",
                        },
                        "notes": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
        "DriftReport": {
            "type": "object",
            "required": ["status", "drift_detected", "threshold", "images_sampled"],
            "properties": {
                "status": {"type": "string", "enum": ["ok", "insufficient_data", "no_baseline"]},
                "drift_detected": {"type": "boolean"},
                "threshold": {"type": "number"},
                "images_sampled": {"type": "integer"},
                "images_seen": {"type": "integer"},
            },
        },
        "VersionFigures": _VERSION_FIGURES,
        "RolloutReport": _ROLLOUT_REPORT,
        "FeedbackRequest": {
            "type": "object",
            "required": ["request_id", "labels"],
            "additionalProperties": False,
            "properties": {
                "request_id": {"type": "string", "description": "metadata.request_id of the reply"},
                "labels": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 64,
                    "items": {
                        "oneOf": [
                            {"type": "integer", "minimum": 0, "maximum": 9},
                            {"type": "string", "description": CLASS_NAMES_HINT},
                        ]
                    },
                },
            },
        },
        "FeedbackResponse": {
            "type": "object",
            "required": ["request_id", "model_version", "labelled", "correct"],
            "properties": {
                "request_id": {"type": "string"},
                "model_version": {"type": "string", "description": "the version that made the prediction"},
                "labelled": {"type": "integer"},
                "correct": {"type": "integer"},
            },
        },
        "AccuracyReport": {
            "type": "object",
            "required": ["versions", "thresholds"],
            "properties": {
                "versions": {
                    "type": "object",
                    "description": "per model version: labelled, correct, accuracy, interval_95, classes "
                    "(the same per true class) and credited (each poster capped: what the verdict uses)",
                    "additionalProperties": {"type": "object"},
                },
                "thresholds": {"type": "object"},
            },
        },
        "Error": {
            "type": "object",
            "required": ["error", "detail"],
            "properties": {
                "error": {"type": "string", "description": "machine-readable reason"},
                "detail": {"type": "string", "description": "what was wrong, where, and how to fix it"},
                "instance": {"type": "integer", "description": "index of the offending instance"},
            },
        },
    }


def build_openapi(config: ServiceConfig, model_version: str) -> dict[str, Any]:
    """The document /openapi.json serves, for this configuration and the version that serves now."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Fashion-MNIST prediction service",
            "version": model_version,
            "description": "ONNX Runtime behind Flask + gunicorn; the same image serves Cloud Run and "
            'Vertex AI endpoints. Errors are JSON {"error", "detail"}. ' + bounds_description(config),
        },
        "paths": build_paths(config),
        "components": {
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
            "schemas": build_schemas(config),
        },
    }
