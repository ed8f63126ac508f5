"""--shuffle (tests/shuffle.py) on a throwaway suite: a seed replays its order, modules stay whole, only the
configured paths move, and the seed is printed."""

import re

import pytest

pytest_plugins = ["pytester"]

MODULE = "\n".join(f"def test_{n}():\n    pass\n" for n in range(6))


@pytest.fixture
def suite(pytester):
    pytester.makeini("[pytest]\nshuffle_paths = moved\n")
    for directory in ("moved", "kept"):
        for module in ("a", "b", "c", "d"):
            path = pytester.path / directory / f"test_{directory}_{module}.py"
            path.parent.mkdir(exist_ok=True)
            path.write_text(MODULE)
    return pytester


def order(result) -> list[str]:
    return [line.split(" ")[0] for line in result.outlines if re.match(r"\S+::test_\d", line)]


def run(suite, *args):
    return suite.runpytest("-p", "tests.shuffle", "-v", *args)


def test_a_seed_replays_its_order_and_moves_only_the_configured_paths(suite):
    plain = order(run(suite))
    first, again = run(suite, "--shuffle=12345"), run(suite, "--shuffle=12345")
    assert order(first) == order(again) and sorted(order(first)) == sorted(plain)
    moved = [t for t in order(first) if t.startswith("moved/")]
    assert moved != [t for t in plain if t.startswith("moved/")]
    assert [t for t in order(first) if t.startswith("kept/")] == [t for t in plain if t.startswith("kept/")]
    modules = [t.split("::")[0] for t in order(first)]
    runs = [m for i, m in enumerate(modules) if i == 0 or modules[i - 1] != m]
    assert len(runs) == len(set(modules))  # each module's tests together: a module fixture starts once
    first.stdout.fnmatch_lines(["shuffle: seed 12345 (replay this order with --shuffle=12345)"])
    first.stdout.fnmatch_lines(["shuffled with seed 12345: replay this order with --shuffle=12345"])
    assert order(run(suite, "--shuffle=54321")) != order(first)


def test_a_random_seed_is_printed_and_a_bad_one_is_refused(suite):
    result = run(suite, "--shuffle=random")
    seed = re.search(r"shuffle: seed (\d+)", result.stdout.str()).group(1)
    assert order(run(suite, f"--shuffle={seed}")) == order(result)
    refused = run(suite, "--shuffle=abc")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["*--shuffle='abc': give an integer seed, or 'random' for a fresh one*"])
