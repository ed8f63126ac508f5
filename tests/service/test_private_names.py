"""No service module imports another module's private name: what one module needs of another is public, so a
module's underscore names can change without breaking its neighbours (issue 21: the slot imported the model
source's private reader)."""

import ast
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2] / "service"


def private_imports(source: str, where: str) -> list[str]:
    """`module.name` for every `from module import _name` in `source` (dunder names such as __version__ are public)."""
    found = []
    for node in ast.walk(ast.parse(source, where)):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.endswith("__"):
                    found.append(f"{where}:{node.lineno} {node.module}.{alias.name}")
    return found


def test_no_service_module_imports_a_private_name_of_another():
    found = [hit for path in sorted(SERVICE.glob("*.py")) for hit in private_imports(path.read_text(), path.name)]
    assert found == []


def test_the_check_sees_a_private_name_in_a_parenthesised_import():
    source = "from service.model_source import (\n    ModelBundle,\n    _NotFound,\n    __version__,\n)\n"
    assert private_imports(source, "versions.py") == ["versions.py:1 service.model_source._NotFound"]
