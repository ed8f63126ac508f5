"""Benches never import the test suite. bench/ holds scripts run by path (not a package), so import-linter cannot
see them: this check reads their imports instead. What a bench shares with the tests lives in a unit
(lifecycle.served, lifecycle.checks.hostile_corpus, trainer.data.synthetic)."""

from __future__ import annotations

import ast
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def imported_modules(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_the_check_sees_an_import_of_the_tests():
    assert "tests.conftest" in imported_modules("def f():\n    from tests.conftest import make_idx_dir\n")


def test_no_bench_imports_the_tests():
    offenders = {
        path.name: sorted(m for m in imported_modules(path.read_text()) if m == "tests" or m.startswith("tests."))
        for path in sorted(BENCH.glob("*.py"))
    }
    offenders = {name: modules for name, modules in offenders.items() if modules}
    assert not offenders, f"benches importing the test suite: {offenders}; move what they share into a unit"
