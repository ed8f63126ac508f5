"""How `make test` splits the suite over pytest-xdist workers: whole modules (a module's fixtures, a live server or
an executed notebook, start once), dealt out in the collected order (the seeded `--shuffle` order, not xdist's
reorder by test count), the modules with a test marked `slow` first so that the last module to start is a short one
and both workers finish together. A directory in ONE_UNIT goes to one worker whole: its session fixture costs more
than running its modules side by side would save. Nothing here acts without `-n`.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

# tests/notebooks: explored_world (ingest, analyse, train, export, promote: ~11 s quiet) would be built per worker,
# and the notebooks it feeds may change it, so its modules share one process.
ONE_UNIT = ("tests/notebooks/",)


def _unit(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0]
    return next((directory for directory in ONE_UNIT if module.startswith(directory)), module)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):  # -> xdist's scheduler protocol
    if config.option.dist not in ("load", "loadfile"):  # --dist each, loadscope, ...: asked for by name, kept
        return None
    from xdist.scheduler import LoadScopeScheduling

    class WholeModules(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    config.option.loadscopereorder = False  # the collected order stands: the seed's, slow modules first
    return WholeModules(config, log)


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> Generator[None]:
    """On an xdist worker, after every other hook (the shuffle's order included): the units holding a slow test
    first, each group in the order it had. Every worker computes the same order, as xdist requires."""
    result = yield
    if hasattr(config, "workerinput"):
        slow = {_unit(item.nodeid) for item in items if item.get_closest_marker("slow")}
        items.sort(key=lambda item: _unit(item.nodeid) not in slow)  # stable: the order inside each group stays
    return result
