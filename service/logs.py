"""JSON log lines that Cloud Logging parses: severity, message, time/timestamp, and httpRequest for request lines.

Why hand-rolled request lines: one orjson dump and one write per request costs a few microseconds, the logging
module about ten times more. Everything else (start-up, gunicorn's own messages) goes through `logging` with
JsonFormatter, so every line on stdout/stderr is one JSON object. Every client-supplied string in a request
line is cut to MAX_LOG_FIELD_CHARS, so a line stays under MAX_LOG_LINE_BYTES whatever the request carried.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from datetime import UTC, datetime

import orjson

from service.limits import MAX_LOG_FIELD_CHARS, shorten

_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """logging records -> one JSON object per line with Cloud Logging's field names."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "severity": record.levelname if record.levelname != "WARN" else "WARNING",
            "message": record.getMessage(),
            "time": _now(),
            "logger": record.name,
            "pid": record.process,
        }
        fields = getattr(record, "fields", None)  # logging's extra={"fields": {...}}: searchable keys of the line
        if isinstance(fields, dict):
            entry.update({key: value for key, value in fields.items() if key not in entry})
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(level: str = "INFO") -> None:
    """Route the root logger to stderr as JSON (idempotent)."""
    root = logging.getLogger()
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root.handlers[:] = [handler]
    root.setLevel(level)


class RequestLog:
    """Writes one JSON line per request to stdout (fd 1, unbuffered, so no line is lost when a worker exits)."""

    def __init__(self, level: str, project: str | None, model_version: str):
        self._threshold = _LEVELS[level]
        self._project = project
        self.model_version = model_version

    def write(
        self,
        *,
        method: str,
        path: str,
        status: int,
        latency_s: float,
        request_id: str,
        request_size: str | int,
        response_size: str | int,
        remote_ip: str | None,
        user_agent: str | None,
        trace_header: str | None,
        quiet: bool,
        instances: int = 0,
        error: dict[str, str] | None = None,
        model_version: str | None = None,
    ) -> None:
        severity = "WARNING" if status >= 400 else ("DEBUG" if quiet else "INFO")
        if status >= 500:
            severity = "ERROR"
        if _LEVELS[severity] < self._threshold:
            return
        method, path = shorten(method, 16), shorten(path, MAX_LOG_FIELD_CHARS)
        message = f"{method} {path} {status} {latency_s * 1000:.2f} ms"
        if instances:
            message += f" {instances} image{'s' if instances != 1 else ''}"
        if error:
            message += f": {error['detail']}"
        seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
        entry: dict[str, object] = {
            "severity": severity,
            "message": message,
            "timestamp": {"seconds": seconds, "nanos": nanos},
            "request_id": request_id,
            "latency_ms": round(latency_s * 1000, 3),
            "model_version": model_version or self.model_version,
            "httpRequest": {
                "requestMethod": method,
                "requestUrl": path,
                "status": status,
                "latency": f"{latency_s:.6f}s",
                "requestSize": str(request_size),
                "responseSize": str(response_size),
                "remoteIp": remote_ip or "",
                "userAgent": shorten(user_agent or "", MAX_LOG_FIELD_CHARS),
            },
        }
        if instances:
            entry["instances"] = instances
        if error:
            entry["error"] = shorten(error["error"], MAX_LOG_FIELD_CHARS)
        if trace_header and self._project:
            trace_id = shorten(trace_header.split("/", 1)[0], 64)
            entry["logging.googleapis.com/trace"] = f"projects/{self._project}/traces/{trace_id}"
        with contextlib.suppress(OSError):  # a closed stdout must not turn a served request into a 500
            os.write(1, orjson.dumps(entry) + b"\n")
