"""tests/xdist_modules.py on a throwaway suite under two real xdist workers: modules stay whole on one worker, a
ONE_UNIT directory goes to one worker, the modules holding a slow test are dealt first, the rest in collected order."""

import re

import pytest

pytest_plugins = ["pytester"]

SIZES = {"a": 1, "b": 4, "c": 2, "d": 5, "e": 3}  # xdist's own reorder by test count would deal d, b, e, c, a


@pytest.fixture
def suite(pytester):
    pytester.makeini("[pytest]\nmarkers =\n    slow: takes a while\n")
    for name, size in SIZES.items():
        body = "import pytest\n\n" + "".join(f"def test_{n}():\n    pass\n\n" for n in range(size))
        if name == "e":
            body += "@pytest.mark.slow\ndef test_slow():\n    pass\n"
        (pytester.path / f"test_module_{name}.py").write_text(body)
    (pytester.path / "tests" / "notebooks").mkdir(parents=True)
    for name in ("one", "two"):
        (pytester.path / "tests" / "notebooks" / f"test_{name}.py").write_text("def test_x():\n    pass\n")
    return pytester


def per_worker(result) -> dict[str, list[str]]:
    ran: dict[str, list[str]] = {}
    for line in result.outlines:
        found = re.match(r"\[(gw\d+)\] \[\s*\d+%\] PASSED (\S+)::", line)
        if found:
            ran.setdefault(found.group(1), []).append(found.group(2))
    return ran


def test_whole_modules_slow_first_then_in_the_collected_order(suite):
    result = suite.runpytest("-p", "tests.xdist_modules", "-n", "2", "-v")
    assert result.ret == pytest.ExitCode.OK
    ran = per_worker(result)
    assert sum(map(len, ran.values())) == sum(SIZES.values()) + 1 + 2
    modules = {worker: list(dict.fromkeys(tests)) for worker, tests in ran.items()}
    for worker, tests in ran.items():  # each module's tests in one run on one worker
        assert len([m for i, m in enumerate(tests) if i == 0 or tests[i - 1] != m]) == len(modules[worker])
    notebooks = {worker for worker, tests in ran.items() if any(t.startswith("tests/notebooks/") for t in tests)}
    assert len(notebooks) == 1  # both notebook modules on one worker
    assert "test_module_e.py" in [found[0] for found in modules.values()]  # the slow module was dealt first
    collected = ["test_module_a.py", "test_module_b.py", "test_module_c.py", "test_module_d.py"]
    for found in modules.values():
        rest = [m for m in found if m in collected]
        assert rest == sorted(rest)  # the others in collected order, not by their number of tests
    assert set().union(*modules.values()) == {
        *collected,
        "test_module_e.py",
        *(f"tests/notebooks/test_{n}.py" for n in ("one", "two")),
    }
