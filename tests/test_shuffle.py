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


def per_worker(result) -> dict[str, list[str]]:
    """xdist's verbose lines ('[gw0] [ 12%] PASSED moved/test_moved_a.py::test_3'): each worker's tests, in order."""
    ran: dict[str, list[str]] = {}
    for line in result.outlines:
        found = re.match(r"\[(gw\d+)\] \[\s*\d+%\] PASSED (\S+)", line)
        if found:
            ran.setdefault(found.group(1), []).append(found.group(2))
    return ran


def test_under_xdist_every_worker_shares_the_seed_and_each_worker_s_order_replays_in_one_process(suite):
    """Workers that drew seeds of their own would collect different orders (xdist refuses to run); the summary
    names each worker's modules in the order it ran them, and --shuffle-as-listed runs them in that order again."""
    result = run(suite, "-n", "2", "--dist", "loadfile", "--shuffle=random")
    assert result.ret == pytest.ExitCode.OK
    seed = re.search(r"shuffled with seed (\d+)", result.stdout.str()).group(1)
    ran = per_worker(result)
    assert sorted(ran) == ["gw0", "gw1"] and sum(map(len, ran.values())) == 48
    assert re.search(
        r"^time in tests per worker \(set-up, call, teardown\): gw0 \d+\.\d s, gw1 \d+\.\d s$",
        result.stdout.str(),
        re.M,
    )
    for worker, tests in ran.items():
        modules = [t.split("::")[0] for t in tests]
        listed = list(dict.fromkeys(modules))
        assert len(listed) == len([m for i, m in enumerate(modules) if i == 0 or modules[i - 1] != m])  # whole
        replay = (
            re.search(
                rf"worker {worker} ran \d+ modules in this order; replay it in one process with (.+)$",
                result.stdout.str(),
                re.M,
            )
            .group(1)
            .split()
        )
        assert replay == ["-p", "no:xdist", f"--shuffle={seed}", "--shuffle-as-listed", *listed]
        assert order(run(suite, *replay)) == tests
    assert run(suite, "--shuffle-as-listed").ret == pytest.ExitCode.USAGE_ERROR
