"""The Makefile's venv set-up (issue 26: uv instead of pip, about 2.7x faster from a fresh clone): the uv it
bootstraps is the one the dev group pins, and every install compiles bytecode (the google provider imports 3x slower
without .pyc files, and a fresh clone would compile it in every process instead)."""

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAKEFILE = (REPO / "Makefile").read_text()


def makefile_variable(name: str) -> str:
    found = re.search(rf"^{name} := (.+)$", MAKEFILE, re.M)
    assert found, f"the Makefile defines no {name}"
    return found.group(1).strip()


def test_the_bootstrapped_uv_is_the_version_the_dev_group_pins():
    dev = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    pins = [requirement for requirement in dev if re.match(r"uv\s*==", requirement)]
    assert pins == [f"uv=={makefile_variable('UV_VERSION')}"], (
        f"pyproject's dev group pins {pins}, the Makefile bootstraps uv=={makefile_variable('UV_VERSION')}: "
        "set UV_VERSION to the dev group's pin (or the other way round)"
    )


def test_every_venv_is_filled_by_uv_with_bytecode_compiled():
    assert {"--compile-bytecode", "--system-certs"} <= set(makefile_variable("UV_INSTALL").split())
    targets = re.findall(r"^(\$\((?:VENV|CHECKOV_VENV|KFP_VENV)\)/\.installed):.*\n((?:\t.*\n)+)", MAKEFILE, re.M)
    assert {target for target, _ in targets} == {f"$({v})/.installed" for v in ("VENV", "CHECKOV_VENV", "KFP_VENV")}
    for target, recipe in targets:
        assert "$(UV_INSTALL)" in recipe and "pip install" not in recipe, f"{target} installs without uv: {recipe}"
