"""The main job end to end on a small generated dataset: the same `python -m lifecycle` that `make demo` runs,
with the smoke preset, the real service under gunicorn, the real synth and checkov scan; then its report and the
champion's page in headless Chromium."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_idx_dir

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
pytestmark = pytest.mark.slow


def run_lifecycle(root: Path, *args, **extra_env):
    environ = {
        **os.environ,
        "FMNIST_STORAGE_ROOT": str(root / "mlops"),
        "FMNIST_REGISTRY__ACCURACY_FLOOR": "0.3",
        **extra_env,
    }
    return subprocess.run(
        [sys.executable, "-m", "lifecycle", "--preset", "smoke", *args],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )


def registry_index(root: Path) -> dict:
    return json.loads((root / "mlops" / "models" / "registry" / "index.json").read_text())


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lifecycle")
    source = make_idx_dir(root / "idx", n_train=1000, n_test=300)
    result = run_lifecycle(root, "--source", str(source), "--infra-outdir", str(root / "cdktf.out"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root, source, result


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


def test_first_run_trains_promotes_scans_serves_and_reports(first_run):
    root, _, result = first_run
    out = result.stdout
    assert "promoted to champion" in out
    assert "checkov" in out and " 0 failed" in out
    assert "HTTP accuracy, JSON / binary" in out
    assert len(registry_index(root)["versions"]) == 1
    page = (root / "mlops" / "dev" / "reports" / "latest" / "report.html").read_text()
    assert "data:image/png;base64," in page and "confusion matrix" in page


@pytest.mark.browser
def test_report_renders_in_chromium(first_run, browser, tmp_path):
    root, _, _ = first_run
    page = browser.new_page()
    page.goto((root / "mlops" / "dev" / "reports" / "latest" / "report.html").as_uri())
    assert "champion served" in page.text_content("#summary")
    assert len(page.query_selector_all("#per-class tr")) == 11
    widths = page.eval_on_selector_all("figure img", "imgs => imgs.map(i => i.naturalWidth)")
    assert len(widths) >= 4 and min(widths) > 100  # every inlined figure decoded
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000


@pytest.mark.browser
def test_champion_page_shows_top3_for_a_random_test_image(first_run, browser, tmp_path):
    from lifecycle.served import running_service

    root, _, _ = first_run
    with running_service(f"{root / 'mlops' / 'models'}@champion", workers=1, extra_env={"PAGE_ENABLED": "true"}) as (
        base,
        _,
    ):
        page = browser.new_page()
        page.set_default_timeout(15_000)
        page.goto(f"{base}/")
        page.click("#random")
        page.wait_for_selector("#top1")
        assert page.text_content("#top1").startswith("Prediction: ")
        assert len(page.query_selector_all("#result .bar")) == 3
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)


def test_second_run_reuses_the_dataset_and_gates_a_new_version(first_run):
    """The floor is opened wide; the paired gate (trainer/models/gate.py) compares the new version with the champion
    on the same images (the generated test split: no official test set here) and writes its report; the outcome the
    run prints and the champion it leaves must be the report's decision (a retrain with the same seed is often
    identical to the champion, and an identical candidate is not promoted again)."""
    root, source, _ = first_run
    first_champion = registry_index(root)["aliases"]["champion"]
    second = run_lifecycle(
        root,
        "--source",
        str(source),
        "--skip-infra",
        FMNIST_REGISTRY__ACCURACY_FLOOR="0",
        FMNIST_REGISTRY__REQUIRE_PINNED_GATE_SET="false",
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "nothing to do" in second.stdout  # the same dataset version is reused
    index = registry_index(root)
    [new_version] = set(index["versions"]) - {first_champion}  # the second model is a new version
    reports = root / "mlops" / "models" / "registry" / "gate-reports"
    report = json.loads((reports / f"{new_version}-vs-{first_champion}.json").read_text())
    assert (reports / f"{new_version}-vs-{first_champion}.md").read_text().startswith("# Promotion gate")
    if report["decision"] == "promote":
        assert "promoted to champion" in second.stdout
        assert index["history"]["champion"] == [first_champion, new_version]
    else:
        assert report["decision"] in ("identical", "refuse")
        named = "not promoted: identical to the champion" if report["decision"] == "identical" else "decision refuse"
        assert named in second.stdout
        assert index["aliases"]["champion"] == first_champion


def test_a_failing_step_stops_the_run_with_its_name(first_run, tmp_path):
    root, _, _ = first_run
    before = registry_index(root)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    result = run_lifecycle(root, "--source", str(broken), "--skip-infra")
    assert result.returncode == 1
    assert "lifecycle stopped: step 'ingest + validate' failed" in result.stderr
    assert "Re-run it alone with: python -m trainer" in result.stderr
    assert registry_index(root) == before
