"""Load only the provider submodules the app uses, so a synth takes seconds instead of ten.

Why: `import cdktf_cdktf_provider_google` executes an `__init__` that imports all ~1,470 generated submodules
(9-13 s, 0.5-1.3 GB). The submodules only need the package's `_jsii` module, which registers the jsii assembly.
`install()` puts a bare package object in `sys.modules` whose `__path__` is the real package directory and runs
`_jsii`; `import cdktf_cdktf_provider_google.storage_bucket` then loads that one submodule on demand. The
synthesized JSON is byte-identical to the full import (bench/bench_infra.py checks it).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

PROVIDER_PACKAGES = ("cdktf_cdktf_provider_google", "cdktf_cdktf_provider_docker")


def install(packages: tuple[str, ...] = PROVIDER_PACKAGES) -> None:
    """Replace each provider package with a lazy stub (no-op if the package is already imported)."""
    for name in packages:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError(f"{name} is not installed: run `.venv/bin/pip install -e '.[infra]'`", name=name)
        stub = types.ModuleType(name, f"lazy stub for {name} (see infra/provider_loader.py)")
        stub.__spec__ = spec
        stub.__file__ = spec.origin
        stub.__path__ = list(spec.submodule_search_locations)
        stub.__package__ = name
        sys.modules[name] = stub
        try:
            importlib.import_module(f"{name}._jsii")
        except BaseException:
            del sys.modules[name]
            raise


def loaded_submodules(package: str = "cdktf_cdktf_provider_google") -> list[str]:
    """Names of the provider's submodules imported so far (the tests keep this list short)."""
    prefix = package + "."
    names = (name[len(prefix) :] for name in sys.modules if name.startswith(prefix))
    return sorted(name for name in names if "." not in name)
