"""The three notebooks executed top to bottom in a real kernel on small generated data, as CI runs them; and the
rule that a committed notebook carries no outputs (what the nbstripout hook in .pre-commit-config.yaml enforces)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import requests

from lifecycle.notebook.notebook_runner import NOTEBOOKS_DIR, execute_notebook

NOTEBOOKS = ("01_explore_data.ipynb", "02_train_evaluate_compare.ipynb", "03_call_the_service.ipynb")
CELL_TIMEOUT_S = 120
MACHINE_PATHS = re.compile(r"(?<![\w.])/(work|tmp|root|home|usr/share/datasets)/")


def texts(nb) -> str:
    """Everything the executed cells printed or displayed as text or Markdown."""
    out = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            out.append(output.get("text", ""))
            data = output.get("data", {})
            out += [data.get("text/plain", ""), data.get("text/markdown", "")]
    return "\n".join(out)


def images(nb) -> int:
    return sum("image/png" in o.get("data", {}) for cell in nb.cells for o in cell.get("outputs", []))


@pytest.fixture(scope="module")
def executed(explored_world):
    """Each notebook's run, in reading order; the timings are printed (`pytest -s`) for the README."""
    runs = {}
    for name in NOTEBOOKS:
        runs[name] = execute_notebook(NOTEBOOKS_DIR / name, cell_timeout=CELL_TIMEOUT_S, env=explored_world.environ)
        print(f"\n{name}: {runs[name].seconds:.1f} s", flush=True)
    print(f"all three: {sum(r.seconds for r in runs.values()):.1f} s")
    return runs


@pytest.mark.slow
def test_explore_data_shows_the_analysis_and_the_features(executed, explored_world):
    nb = executed["01_explore_data.ipynb"].nb
    out = texts(nb)
    assert f"dataset {explored_world.dataset_version}: 1,000 train and 300 test images" in out
    assert "| T-shirt/top | 100 | 30 |" in out  # the class balance table of the generated, balanced data
    assert "outliers of 1,300 images" in out
    assert "1,300 rows; features: mean_intensity" in out
    assert images(nb) == 5  # class balance, pixel histogram, mean images, outliers, feature distributions


@pytest.mark.slow
def test_train_evaluate_compare_trains_and_compares_with_the_champion(executed, explored_world):
    nb = executed["02_train_evaluate_compare.ipynb"].nb
    out = texts(nb)
    accuracy = float(re.search(r"test accuracy (\d\.\d{4}) after", out).group(1))
    assert accuracy > 0.3, out  # ten classes: chance is 0.1
    assert f"champion {explored_world.champion}, trained on dataset {explored_world.dataset_version}" in out
    assert "| accuracy |" in out and "champion, as registered" in out
    assert images(nb) == 2  # the confusion matrix and the disagreements


@pytest.mark.slow
def test_call_the_service_predicts_both_ways_flags_drift_and_stops_the_service(executed):
    nb = executed["03_call_the_service.ipynb"].nb
    out = texts(nb)
    assert "the same classes as the JSON path: True" in out
    assert "drift on the test images: False" in out
    assert "drift on the inverted images: True" in out
    assert images(nb) == 1
    base = re.search(r"service: (http://127\.0\.0\.1:\d+)", out).group(1)
    with pytest.raises(requests.ConnectionError):  # the last cell stopped it: nothing is left running
        requests.get(f"{base}/health", timeout=2)


def test_explore_data_reads_the_dev_buckets_when_the_configuration_says_so(gcs_settings, tmp_path):
    """FMNIST_ENV=dev: the same notebook on gs:// buckets (the fake-gcs-server emulator), no code changed."""
    import argparse
    import os

    from tests.conftest import make_idx_dir
    from trainer.data import features
    from trainer.data.ingest import Source, ingest

    version = ingest(gcs_settings, Source("directory", str(make_idx_dir(tmp_path / "idx", 200, 100))))
    assert features.run(argparse.Namespace(version=version), gcs_settings) == 0
    env = {
        "FMNIST_ENV": "dev",
        "FMNIST_BUCKET_PREFIX": gcs_settings.bucket_prefix,
        "STORAGE_EMULATOR_HOST": os.environ["STORAGE_EMULATOR_HOST"],
    }
    out = texts(execute_notebook(NOTEBOOKS_DIR / NOTEBOOKS[0], cell_timeout=CELL_TIMEOUT_S, env=env).nb)
    assert f"environment dev (target gcp); datasets in gs://{gcs_settings.bucket_prefix}-datasets" in out
    assert f"dataset {version}: 200 train and 100 test images" in out
    assert "300 rows; features: mean_intensity" in out


def test_the_three_notebooks_are_the_ones_ci_executes():
    assert sorted(p.name for p in NOTEBOOKS_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_a_committed_notebook_has_no_outputs_and_no_machine_paths(name):
    path = NOTEBOOKS_DIR / name
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name} cell {index}: run nbstripout"
    assert not MACHINE_PATHS.search(path.read_text()), f"{name} names a path of this machine"
    verify = subprocess.run([sys.executable, "-m", "nbstripout", "--verify", str(path)], capture_output=True)
    assert verify.returncode == 0, verify.stdout.decode() + verify.stderr.decode()


def test_nbstripout_refuses_a_notebook_with_outputs(tmp_path):
    """The pre-commit hook's tool, on a notebook as JupyterLab saves it after a run."""
    nb = nbformat.read(NOTEBOOKS_DIR / NOTEBOOKS[0], as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code")
    cell.execution_count = 1
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="dataset v-123\n")]
    path = tmp_path / "with_outputs.ipynb"
    nbformat.write(nb, path)
    verify = subprocess.run([sys.executable, "-m", "nbstripout", "--verify", str(path)], capture_output=True)
    assert verify.returncode != 0
    assert json.loads(path.read_text())["cells"][1]["outputs"], "--verify must not change the file"
    subprocess.run([sys.executable, "-m", "nbstripout", str(path)], check=True)
    assert nbformat.read(path, as_version=4).cells[1].outputs == []


# ---- the runner itself -----------------------------------------------------------------------------------------


def write_notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_the_kernel_is_this_interpreter_in_the_notebooks_folder(tmp_path):
    folder = tmp_path / "somewhere"
    folder.mkdir()
    path = write_notebook(folder / "where.ipynb", "import os, sys\nprint(sys.executable)\nprint(os.getcwd())")
    run = execute_notebook(path, cell_timeout=60)
    assert run.nb.cells[0].outputs[0]["text"].split() == [sys.executable, str(folder)]


def test_a_failing_cell_fails_the_run_with_its_source_and_error(tmp_path):
    from lifecycle.notebook.notebook_runner import NotebookCellFailed

    path = write_notebook(tmp_path / "broken.ipynb", "x = 41", "y = x + 1\nraise ValueError(f'wrong answer {y}')")
    with pytest.raises(NotebookCellFailed) as failure:
        execute_notebook(path, cell_timeout=60)
    message = str(failure.value)
    assert failure.value.index == 1
    assert "broken.ipynb, cell 1 failed" in message
    assert "raise ValueError(f'wrong answer {y}')" in message  # the source
    assert "ValueError: wrong answer 42" in message  # the error, without terminal colours
    assert "\x1b[" not in message


def child_processes() -> set[int]:
    """This process's children, from each thread's list; a thread that ends between the listing and the read has
    none (its file is gone: the CI failure of wave 3's eleventh session)."""
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            pids.update(int(pid) for pid in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return pids


def test_a_cell_past_its_timeout_fails_the_run_with_its_source_and_stops_the_kernel(tmp_path):
    from lifecycle.notebook.notebook_runner import NotebookCellFailed

    path = write_notebook(tmp_path / "slow.ipynb", "import time", "time.sleep(60)")
    before = child_processes()
    started = time.perf_counter()
    with pytest.raises(NotebookCellFailed) as failure:
        execute_notebook(path, cell_timeout=2)
    assert time.perf_counter() - started < 30
    assert failure.value.index == 1 and "time.sleep(60)" in str(failure.value)
    assert "CellTimeoutError" in str(failure.value)
    assert child_processes() <= before, "the kernel outlived the run"
