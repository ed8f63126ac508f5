"""The one error type bad requests raise: an HTTP status, a machine-readable reason and a sentence for people.

The JSON body is always {"error": <short name>, "detail": <what was wrong, where (which instance) and the fix>};
`reason` labels the errors-by-reason metric. The detail is cut to MAX_DETAIL_CHARS by construction, so no
client input echoed in it can make an error body or a log line large.
"""

from __future__ import annotations

from service.limits import MAX_DETAIL_CHARS, shorten


class RequestError(Exception):
    def __init__(self, status: int, reason: str, detail: str, instance: int | None = None):
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.instance = instance
        self.detail = shorten(f"instance {instance}: {detail}" if instance is not None else detail, MAX_DETAIL_CHARS)

    def body(self) -> dict[str, str | int]:
        out: dict[str, str | int] = {"error": self.reason, "detail": self.detail}
        if self.instance is not None:
            out["instance"] = self.instance
        return out
