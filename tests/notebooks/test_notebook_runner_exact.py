"""`python -m lifecycle.notebook.notebook_runner` as CI runs it, on tiny notebooks written here (a real kernel each):
what it prints, writes and exits with, and the exact message of a failed cell (issue 27's notebook-runner group).
The three committed notebooks run in tests/notebooks/test_notebooks.py."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import nbformat
import pytest

from lifecycle.notebook import notebook_runner
from lifecycle.notebook.notebook_runner import NotebookCellFailed, execute_notebook, main
from tests.notebooks.test_notebooks import write_notebook


class FlushRecorder(io.StringIO):
    """A stdout that records what had been written at each flush."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[str] = []

    def flush(self) -> None:
        self.flushed.append(self.getvalue())


def test_help_starts_with_what_the_runner_is_for(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    usage, _, rest = capsys.readouterr().out.partition("\n\n")
    assert rest.startswith("Execute notebooks headless, cell by cell, with a per-cell timeout: what CI and\n"), rest


def test_a_failed_cells_message_names_the_notebook_cell_source_and_error():
    failure = NotebookCellFailed(Path("x/nb.ipynb"), 3, "a = 1\nb = 2", "\n  KeyError: 'b'  \n\n")
    assert str(failure) == "nb.ipynb, cell 3 failed:\n--- source ---\na = 1\nb = 2\n--- error ---\nKeyError: 'b'"
    assert (failure.notebook, failure.index, failure.source) == (Path("x/nb.ipynb"), 3, "a = 1\nb = 2")
    assert failure.error == "\n  KeyError: 'b'  \n\n" and isinstance(failure, RuntimeError)


def test_a_python3_kernelspec_registered_on_the_machine_is_not_used(tmp_path, monkeypatch):
    """Jupyter's "python3" may name another interpreter on a machine (here one that cannot start): not ours."""
    import json

    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    broken = {"argv": ["/nonexistent/python", "-f", "{connection_file}"], "display_name": "x", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(broken))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    path = write_notebook(tmp_path / "which.ipynb", "import sys\nprint(sys.executable)")
    run = execute_notebook(path, cell_timeout=60)
    assert run.nb.cells[0].outputs[0]["text"] == f"{sys.executable}\n"


def test_the_kernel_sees_the_callers_environment_and_the_extra_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("FROM_PARENT", "p")
    path = write_notebook(tmp_path / "env.ipynb", "import os\nprint(os.environ['FROM_PARENT'], os.environ['EXTRA'])")
    run = execute_notebook(path, cell_timeout=60, env={"EXTRA": "e", "FROM_PARENT": "overridden"})
    assert run.nb.cells[0].outputs[0]["text"] == "overridden e\n"
    assert run.notebook == path and len(run.cell_seconds) == 1 and run.seconds >= run.cell_seconds[0] > 0


@pytest.mark.slow  # three kernels: this module's tests take ~12 s in all
def test_main_runs_every_notebook_in_name_order_reports_times_and_writes_the_executed_copies(tmp_path, monkeypatch):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "b_second.ipynb", "print('b')")
    write_notebook(folder / "a_first.ipynb", "x = 1", "import time\ntime.sleep(0.3)\nprint(x + 1)", "y = 3")
    (folder / "notes.txt").write_text("not a notebook")
    monkeypatch.setattr(notebook_runner, "NOTEBOOKS_DIR", folder)
    out_dir = tmp_path / "out" / "executed"
    stdout = FlushRecorder()
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["--output-dir", str(out_dir), "--cell-timeout", "60"]) == 0
    lines = stdout.getvalue().splitlines()
    # each notebook's line reaches CI's log as it finishes, not when the run ends (stdout is a pipe there)
    assert [text.count("\n") for text in stdout.flushed] == [1, 2]
    assert re.fullmatch(r"a_first\.ipynb: \d+\.\d s \(3 cells; slowest cell 1: 0\.[3-9] s\)", lines[0]), lines
    assert re.fullmatch(r"b_second\.ipynb: \d+\.\d s \(1 cells; slowest cell 0: \d+\.\d s\)", lines[1]), lines
    seconds = [float(line.split(": ")[1].split(" s")[0]) for line in lines[:2]]
    assert re.fullmatch(r"all notebooks: \d+\.\d s", lines[2]) and len(lines) == 3
    assert abs(float(lines[2].split(": ")[1][:-2]) - sum(seconds)) <= 0.11
    assert sorted(p.name for p in out_dir.iterdir()) == ["a_first.ipynb", "b_second.ipynb"]
    written = nbformat.read(out_dir / "a_first.ipynb", as_version=4)
    assert written.cells[1].outputs[0]["text"] == "2\n"


def test_main_stops_at_the_first_failing_notebook_with_its_message_and_status_1(tmp_path, capsys):
    slow = write_notebook(tmp_path / "slow.ipynb", "import time; time.sleep(30)")
    never = write_notebook(tmp_path / "never.ipynb", "print('ran')")
    assert main([str(slow), str(never), "--cell-timeout", "1", "--output-dir", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(
        "slow.ipynb, cell 0 failed:\n--- source ---\nimport time; time.sleep(30)\n--- error ---\nCellTimeoutError: "
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [["--cell-timeout", "soon"], ["--unknown"]])
def test_main_refuses_bad_arguments_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith("usage: python -m lifecycle.notebook.notebook_runner")


def test_the_client_gets_the_cell_timeout_two_minutes_to_start_and_this_interpreters_kernel(tmp_path, monkeypatch):
    """The NotebookClient as built (a recording subclass: the same client runs a real kernel): a kernel start may take
    120 s, not nbclient's 60, on a loaded CI machine; cells are numbered from 1 as Jupyter numbers them."""
    import nbclient
    from jupyter_client.manager import AsyncKernelManager

    clients = []

    class Recorded(nbclient.NotebookClient):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            clients.append((self, self.km))  # the kernel manager as given: the client drops it at cleanup

    monkeypatch.setattr(nbclient, "NotebookClient", Recorded)
    path = write_notebook(tmp_path / "two.ipynb", "a = 1", "print(a + 1)")
    run = execute_notebook(path, cell_timeout=45)
    ((client, km),) = clients
    assert (client.timeout, client.startup_timeout) == (45, 120)
    assert client.resources == {"metadata": {"path": str(tmp_path)}}
    assert isinstance(km, AsyncKernelManager) and km.kernel_name == "python3"
    assert type(km.kernel_spec_manager).__name__ == "ThisInterpreter"
    assert [cell.execution_count for cell in run.nb.cells] == [1, 2]
    assert run.nb.cells[1].outputs[0]["text"] == "2\n" and len(run.cell_seconds) == 2


def test_a_failing_cell_raises_with_its_source_and_a_traceback_without_colour_codes(tmp_path):
    """IPython colours its tracebacks with ANSI escapes: a CI log must read them as plain text."""
    import time

    path = write_notebook(tmp_path / "fails.ipynb", "x = 1", "def f():\n    raise ValueError('boom')\nf()")
    started = time.perf_counter()
    with pytest.raises(NotebookCellFailed) as failed:
        execute_notebook(path, cell_timeout=60)
    assert time.perf_counter() - started < 120
    assert (failed.value.notebook, failed.value.index) == (path, 1)
    assert failed.value.source == "def f():\n    raise ValueError('boom')\nf()"
    error = failed.value.error
    assert error.startswith("ValueError: boom\n") and "\x1b" not in error, error
    assert error.rstrip().splitlines()[-1] == "ValueError: boom", error
    assert "--- source ---\ndef f():\n    raise ValueError('boom')\nf()\n--- error ---\n" in str(failed.value)


def test_a_runs_seconds_are_the_time_it_took(tmp_path):
    import time

    path = write_notebook(tmp_path / "quick.ipynb", "1 + 1")
    started = time.perf_counter()
    run = execute_notebook(path, cell_timeout=60)
    took = time.perf_counter() - started
    assert 0 < run.cell_seconds[0] <= run.seconds <= took, (run.cell_seconds, run.seconds, took)
