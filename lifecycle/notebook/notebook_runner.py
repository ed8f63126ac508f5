"""Execute notebooks headless, cell by cell, with a per-cell timeout: what CI and
`python -m lifecycle.notebook.notebook_runner` run to prove the notebooks in notebooks/ still work.

Why cell by cell: a failure must name the notebook, the cell's number and source, and the error, not only a
traceback from inside a kernel. The kernel is the running interpreter's ipykernel (not whatever kernelspec
named "python3" a machine has registered), started in the notebook's own directory, as Jupyter would.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
DEFAULT_CELL_TIMEOUT_S = 300
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class NotebookCellFailed(RuntimeError):
    """A cell raised or ran past its timeout; the message holds the notebook, the cell's source and the error."""

    def __init__(self, notebook: Path, index: int, source: str, error: str):
        self.notebook, self.index, self.source, self.error = notebook, index, source, error
        super().__init__(
            f"{notebook.name}, cell {index} failed:\n--- source ---\n{source}\n--- error ---\n{error.strip()}"
        )


@dataclass
class NotebookRun:
    notebook: Path
    seconds: float = 0.0
    cell_seconds: list[float] = field(default_factory=list)
    nb: object = None  # the executed nbformat.NotebookNode, outputs included


def this_interpreter_kernels():
    """A kernelspec manager that always answers with the running interpreter's ipykernel."""
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

    class ThisInterpreter(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return KernelSpec(resource_dir=RESOURCES, name=kernel_name, **get_kernel_dict())

    return ThisInterpreter()


def execute_notebook(
    path: Path | str, *, cell_timeout: int = DEFAULT_CELL_TIMEOUT_S, env: dict[str, str] | None = None
) -> NotebookRun:
    """Run every cell in order in a fresh kernel; raise NotebookCellFailed at the first failing cell."""
    import nbformat
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=this_interpreter_kernels())
    client = NotebookClient(
        nb, km=km, timeout=cell_timeout, startup_timeout=120, resources={"metadata": {"path": str(path.parent)}}
    )
    run = NotebookRun(path, nb=nb)
    started = time.perf_counter()
    client.reset_execution_trackers()
    # cleanup_kc: nbclient shuts down only kernels it created itself; this one must not outlive the run either
    with client.setup_kernel(env={**os.environ, **(env or {})}, cleanup_kc=True):
        client.wait_for_reply(client.kc.kernel_info())
        for index, cell in enumerate(nb.cells):
            cell_started = time.perf_counter()
            try:
                client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
            except CellExecutionError as exc:
                error = f"{exc.ename}: {exc.evalue}\n{_ANSI.sub('', exc.traceback)}"
                raise NotebookCellFailed(path, index, cell.source, error) from None
            except (CellTimeoutError, DeadKernelError) as exc:
                raise NotebookCellFailed(path, index, cell.source, f"{type(exc).__name__}: {exc}") from None
            run.cell_seconds.append(time.perf_counter() - cell_started)
    run.seconds = time.perf_counter() - started
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lifecycle.notebook.notebook_runner", description=__doc__.splitlines()[0]
    )
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/*.ipynb, in name order")
    parser.add_argument("--cell-timeout", type=int, default=DEFAULT_CELL_TIMEOUT_S, help="seconds per cell")
    parser.add_argument("--output-dir", type=Path, help="also write the executed notebooks, outputs included, here")
    args = parser.parse_args(argv)
    total = 0.0
    for path in args.notebooks or sorted(NOTEBOOKS_DIR.glob("*.ipynb")):
        try:
            run = execute_notebook(path, cell_timeout=args.cell_timeout)
        except NotebookCellFailed as exc:
            print(exc, file=sys.stderr)
            return 1
        total += run.seconds
        if args.output_dir:
            import nbformat

            args.output_dir.mkdir(parents=True, exist_ok=True)
            nbformat.write(run.nb, args.output_dir / path.name)
        slowest = max(range(len(run.cell_seconds)), key=run.cell_seconds.__getitem__)
        print(
            f"{path.name}: {run.seconds:.1f} s ({len(run.cell_seconds)} cells; "
            f"slowest cell {slowest}: {run.cell_seconds[slowest]:.1f} s)",
            flush=True,
        )
    print(f"all notebooks: {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
