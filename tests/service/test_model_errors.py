"""The model's error family (service/model_errors.py): a refusal keeps its message for the log and its reason for
the refused-versions metric, and every reason the service raises is one of the closed set the metric allows."""

from __future__ import annotations

import ast
from pathlib import Path

from service.model_errors import (
    REFUSAL_REASONS,
    ModelLoadError,
    ModelReadError,
    ModelRefused,
    NoModelPromoted,
    ObjectNotFound,
)

SERVICE = Path(__file__).resolve().parents[2] / "service"


def test_a_refusal_keeps_its_message_and_reason_and_is_a_load_error():
    refused = ModelRefused("m/model.onnx was changed", "digest_mismatch")
    assert (str(refused), refused.args, refused.reason) == (
        "m/model.onnx was changed",
        ("m/model.onnx was changed",),
        "digest_mismatch",
    )
    for kind in (ModelRefused, ModelReadError, NoModelPromoted, ObjectNotFound):
        assert issubclass(kind, ModelLoadError)  # a caller that catches ModelLoadError sees every one


def test_every_reason_the_service_raises_is_in_the_closed_set_and_every_one_is_raised():
    raised = set()
    for source in SERVICE.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ModelRefused":
                reason = node.args[-1] if len(node.args) == 2 else None
                assert isinstance(reason, ast.Constant), f"{source.name}:{node.lineno}: a reason must be a literal"
                raised.add(reason.value)
    assert raised == set(REFUSAL_REASONS) and len(REFUSAL_REASONS) == len(raised)
