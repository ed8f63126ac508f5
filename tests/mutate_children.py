"""pytest plugin for tests/mutate.py's KFP_GROUPS: credits to a test the mutated functions that its child
processes reached (written by the children's sitecustomize to MUTMUT_CHILD_HITS), before mutmut's own teardown
hook maps the functions hit during the test to it. Without it, code that runs only in kfp's interpreter would
count as reached by no test, and its mutants would never run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    hits = Path(os.environ.get("MUTMUT_CHILD_HITS", ""))
    if os.environ.get("MUTANT_UNDER_TEST") != "stats" or not hits.name or not hits.is_file():
        return
    from mutmut.state import state

    state()._stats.update(hits.read_text(encoding="utf-8").split())
    hits.unlink()
