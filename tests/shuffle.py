"""`--shuffle=SEED|random`: run the test modules under `shuffle_paths` in a seeded random order, so a test that
passes only after (or before) a neighbour shows at once, and the seed printed in the header and the summary
replays that order exactly.

Why not pytest-randomly: installed, it shuffles every run of every suite that shares the environment and reseeds
`random` and numpy before each test; this is opt-in, touches nothing but the order, and shuffles only the paths
configured (the others keep their file order). Modules are shuffled among themselves, then the classes and tests
inside each module; a module's tests stay together, so a module-scoped fixture (a live server) starts once.
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
    if value is not None:
        config.stash[SEED] = _seed(value)


def pytest_report_header(config: pytest.Config) -> str | None:
    if SEED not in config.stash:
        return None
    return f"shuffle: seed {config.stash[SEED]} (replay this order with --shuffle={config.stash[SEED]})"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if SEED in config.stash:  # at the end too: a long CI log is read from its bottom
        seed = config.stash[SEED]
        terminalreporter.write_line(f"shuffled with seed {seed}: replay this order with --shuffle={seed}")


def _shuffled(items: list[pytest.Item], rng: random.Random) -> list[pytest.Item]:
    """The items of one module: classes (and the module's plain functions) in a random order, then their tests."""
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
    rng = random.Random(config.stash[SEED])
    roots: list[Path] = [Path(p).resolve() for p in config.getini("shuffle_paths")]
    modules: dict[Path, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.path, []).append(item)

    def eligible(path: Path) -> bool:
        return not roots or any(path.is_relative_to(root) for root in roots)

    chosen = [path for path in modules if eligible(path)]
    order = iter(rng.sample(chosen, len(chosen)))  # eligible modules take each other's places; others stay put
    items[:] = [
        item for path in modules for item in (_shuffled(modules[next(order)], rng) if eligible(path) else modules[path])
    ]
