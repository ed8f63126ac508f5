"""`--shuffle=SEED|random`: run the test modules under `shuffle_paths` in a seeded random order, so a test that
passes only after (or before) a neighbour shows at once, and the seed printed in the header and the summary
replays that order exactly.

Why not pytest-randomly: installed, it shuffles every run of every suite that shares the environment and reseeds
`random` and numpy before each test; this is opt-in, touches nothing but the order, and shuffles only the paths
configured (the others keep their file order). Modules are shuffled among themselves, then the classes and tests
inside each module (seeded by the seed and the module's path, so a module's order does not depend on which others
were collected); a module's tests stay together, so a module-scoped fixture (a live server) starts once.

Under pytest-xdist (`-n 2`) the controller's seed goes to every worker (they must collect the same order), whole
modules are dealt out in that order (tests/xdist_modules.py), and the summary prints the modules each worker ran in
the order it ran them: `--shuffle=SEED --shuffle-as-listed` with those modules replays one worker in one process.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import pytest

SEED = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--shuffle",
        metavar="SEED",
        default=None,
        help="run the modules under the shuffle_paths ini option, and the tests in each, in a random order "
        "seeded by SEED (an integer, or 'random' for a fresh one); the seed is printed to replay the order",
    )
    parser.addoption(
        "--shuffle-as-listed",
        action="store_true",
        help="with --shuffle: keep the modules in the order given on the command line and shuffle only the tests "
        "inside each (replays the order of one xdist worker, as the summary prints it)",
    )
    parser.addini("shuffle_paths", "directories whose tests --shuffle reorders (all when empty)", type="paths")


def _seed(value: str) -> int:
    if value == "random":
        return random.SystemRandom().randrange(2**32)
    try:
        return int(value)
    except ValueError:
        raise pytest.UsageError(f"--shuffle={value!r}: give an integer seed, or 'random' for a fresh one") from None


def pytest_configure(config: pytest.Config) -> None:
    value = config.getoption("--shuffle")
    given = getattr(config, "workerinput", {}).get("shuffle_seed")
    if given is not None:  # an xdist worker: the controller's seed, so that every worker collects the same order
        config.stash[SEED] = given
    elif value is not None:
        config.stash[SEED] = _seed(value)
    elif config.getoption("--shuffle-as-listed"):
        raise pytest.UsageError("--shuffle-as-listed replays a seeded order: give --shuffle=SEED too")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_Workers(config), "shuffle-workers")


class _Workers:
    """The xdist side: hand the seed to each worker, and note which modules each worker ran, in order, and how long
    its tests took (set-up, call and teardown: two workers that end far apart were dealt unevenly)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.ran: dict[str, list[str]] = {}
        self.busy: dict[str, float] = defaultdict(float)

    def pytest_configure_node(self, node) -> None:  # the controller, before a worker starts
        if SEED in self.config.stash:
            node.workerinput["shuffle_seed"] = self.config.stash[SEED]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        worker = getattr(report, "node", None)  # set on the controller's copy of a worker's report
        if worker is None:
            return
        self.busy[worker.gateway.id] += report.duration
        if report.when != "setup":
            return
        modules = self.ran.setdefault(worker.gateway.id, [])
        module = report.nodeid.split("::", 1)[0]
        if not modules or modules[-1] != module:
            modules.append(module)


def pytest_report_header(config: pytest.Config) -> str | None:
    if SEED not in config.stash:
        return None
    return f"shuffle: seed {config.stash[SEED]} (replay this order with --shuffle={config.stash[SEED]})"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if SEED not in config.stash:
        return
    seed = config.stash[SEED]  # at the end too: a long CI log is read from its bottom
    workers = config.pluginmanager.get_plugin("shuffle-workers")
    for worker, modules in sorted(workers.ran.items()) if isinstance(workers, _Workers) else ():
        terminalreporter.write_line(
            f"worker {worker} ran {len(modules)} modules in this order; replay it in one process with "
            f"-p no:xdist --shuffle={seed} --shuffle-as-listed {' '.join(modules)}"
        )
    if isinstance(workers, _Workers) and workers.busy:
        busy = ", ".join(f"{worker} {seconds:.1f} s" for worker, seconds in sorted(workers.busy.items()))
        terminalreporter.write_line(f"time in tests per worker (set-up, call, teardown): {busy}")
    terminalreporter.write_line(f"shuffled with seed {seed}: replay this order with --shuffle={seed}")


def _shuffled(items: list[pytest.Item], seed: int, module: str) -> list[pytest.Item]:
    """The items of one module: classes (and the module's plain functions) in a random order, then their tests;
    seeded by the seed and the module's path alone, so the same module runs in the same order in any company."""
    rng = random.Random(f"{seed}:{module}")
    groups: dict[object, list[pytest.Item]] = defaultdict(list)
    for item in items:
        groups[getattr(item, "cls", None)].append(item)
    keys = list(groups)
    rng.shuffle(keys)
    out: list[pytest.Item] = []
    for key in keys:
        rng.shuffle(groups[key])
        out += groups[key]
    return out


@pytest.hookimpl(trylast=True)  # after the fixtures plugin groups items by their parametrized fixtures
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SEED not in config.stash:
        return
    seed = config.stash[SEED]
    rng = random.Random(seed)
    roots: list[Path] = [Path(p).resolve() for p in config.getini("shuffle_paths")]
    modules: dict[Path, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.path, []).append(item)

    def eligible(path: Path) -> bool:
        return not roots or any(path.is_relative_to(root) for root in roots)

    chosen = [path for path in modules if eligible(path)]
    # eligible modules take each other's places (others stay put), or keep the order the command line listed them in
    order = iter(chosen if config.getoption("--shuffle-as-listed") else rng.sample(chosen, len(chosen)))

    def shuffled(path: Path) -> list[pytest.Item]:
        name = path.relative_to(config.rootpath) if path.is_relative_to(config.rootpath) else path
        return _shuffled(modules[path], seed, name.as_posix())

    items[:] = [item for path in modules for item in (shuffled(next(order)) if eligible(path) else modules[path])]
