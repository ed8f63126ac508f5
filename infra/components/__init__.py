"""One construct per concern; infra/stack.py wires them together for one environment.

Importing this package installs the lazy provider loader first, so that importing any construct never pulls in
all ~1,470 provider submodules (see infra/provider_loader.py).
"""

from infra import provider_loader

provider_loader.install()
