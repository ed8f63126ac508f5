"""Infra figures: full synth time (lazy provider loading vs the full import, byte-identical output), checkov time,
the cdktf CLI synth time, the infra test suite time, and what loading the google-beta bindings would cost (their
jsii assembly, beside the google provider's: why infra/components/service_agents.py declares its one beta
resource without them). Prints a table; writes bench/results/infra.json.

Goals: synth <= 3 s, checkov <= 5 s, infra tests <= 30 s without the CLI test.
Run: `.venv/bin/python bench/bench_infra.py [--repeat 3]` (a shared 2-core machine: quote the conditions).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
ENVIRON = {
    **{k: v for k, v in os.environ.items() if not k.startswith("FMNIST_")},
    "CHECKPOINT_DISABLE": "1",
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
}
PROVIDER_JSII_LOAD = "from infra import provider_loader; provider_loader.install((__import__('sys').argv[1],))"
# The service identities as infra/components/service_agents.py declares them, and as the beta bindings would.
BETA_EQUIVALENCE = """
import json, sys
from cdktf import App, TerraformStack
from infra import provider_loader
provider_loader.install(("cdktf_cdktf_provider_google", "cdktf_cdktf_provider_google_beta"))
from cdktf_cdktf_provider_google_beta.google_project_service_identity import GoogleProjectServiceIdentity
from cdktf_cdktf_provider_google_beta.provider import GoogleBetaProvider
from infra.components.apis import Apis
from infra.components.providers import google_beta_provider, google_provider
from infra.components.service_agents import IDENTITY_AGENTS, ServiceAgents
from infra.naming import Names
from infra.teardown import TeardownPolicy
from settings import load_config

names = Names.of(load_config("dev", environ={}))
app = App(outdir=sys.argv[1])
raw = TerraformStack(app, "raw")
google_provider(raw, names)
apis = Apis(raw, "apis", names=names, teardown=TeardownPolicy(protect=False))
ServiceAgents(raw, "agents", names=names, apis=apis, beta=google_beta_provider(raw, names))
bound = TerraformStack(app, "bound")
google_provider(bound, names)
apis = Apis(bound, "apis", names=names, teardown=TeardownPolicy(protect=False))
beta = GoogleBetaProvider(bound, "google-beta", project=names.project, region=names.region)
for agent, api in IDENTITY_AGENTS.items():
    GoogleProjectServiceIdentity(bound, f"agents_{agent}", project=names.project, service=api, provider=beta,
                                 depends_on=[apis[api]])
app.synth()
def shape(stack):
    document = json.load(open(f"{sys.argv[1]}/stacks/{stack}/cdk.tf.json"))
    identities = document["resource"]["google_project_service_identity"]
    strip = lambda body: {k: v for k, v in body.items() if k != "//"}
    return {k.split("_")[1]: strip(v) for k, v in identities.items()}, document["provider"]["google-beta"]
# The required_providers source differs on purpose: the bindings write the bare "google-beta" (the cdktf quirk
# the google provider's override fixes); the plain declaration writes the full "hashicorp/google-beta".
print(json.dumps(shape("raw") == shape("bound")))
"""
FULL_IMPORT_SYNTH = (
    "import sys, runpy, cdktf_cdktf_provider_google; "
    "sys.argv = ['infra', '--outdir', sys.argv[1]]; runpy.run_module('infra', run_name='__main__')"
)


CPU_SECONDS: dict[str, list[float]] = {}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], label: str = "", ok_codes: tuple[int, ...] = (0,), **kwargs) -> float:
    """Wall seconds of one run; its CPU seconds (user + system, node included) go to CPU_SECONDS[label]: on a
    shared machine the CPU figure moves much less than the wall figure."""
    cpu_start, start = _children_cpu(), time.perf_counter()
    completed = subprocess.run(command, cwd=REPO_ROOT, env=ENVIRON, capture_output=True, text=True, **kwargs)
    elapsed = time.perf_counter() - start
    CPU_SECONDS.setdefault(label, []).append(_children_cpu() - cpu_start)
    if completed.returncode not in ok_codes:
        raise SystemExit(
            f"{' '.join(command)} failed ({completed.returncode}):\n{completed.stdout[-3000:]}"
            f"{completed.stderr[-3000:]}"
        )
    return elapsed


def same_tree(left: Path, right: Path) -> bool:
    files = sorted(p.relative_to(left) for p in left.rglob("*") if p.is_file())
    other = sorted(p.relative_to(right) for p in right.rglob("*") if p.is_file())
    return files == other and all(filecmp.cmp(left / f, right / f, shallow=False) for f in files)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-tests", action="store_true", help="skip the (slow) test-suite timings")
    args = parser.parse_args()
    figures: dict[str, object] = {"machine": f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start"}
    sys.path.insert(0, str(REPO_ROOT))
    from infra.images import IMAGE_SOURCES, source_tag

    tags_at_start = {image: source_tag(image) for image in IMAGE_SOURCES}
    with tempfile.TemporaryDirectory(prefix="bench-infra-") as tmp:
        tmp = Path(tmp)
        lazy = [timed([PYTHON, "-m", "infra", "--outdir", str(tmp / f"lazy{i}")], "synth") for i in range(args.repeat)]
        full = timed([PYTHON, "-c", FULL_IMPORT_SYNTH, str(tmp / "full")], "synth_full_import")
        figures["synth_lazy_s"] = {"min": min(lazy), "median": statistics.median(lazy)}
        figures["synth_full_import_s"] = full
        figures["byte_identical"] = same_tree(tmp / "lazy0", tmp / "full")
        figures["stacks"] = sorted(p.name for p in (tmp / "lazy0" / "stacks").iterdir())
        try:
            equal = (
                subprocess.run(
                    [PYTHON, "-c", BETA_EQUIVALENCE, str(tmp / "beta")],
                    cwd=REPO_ROOT,
                    env=ENVIRON,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            figures["beta_raw_equals_bindings"] = equal == "true"
        except subprocess.CalledProcessError as exc:
            figures["beta_raw_equals_bindings"] = f"not run: {exc.stderr.strip().splitlines()[-1]}"
        for package in ("cdktf_cdktf_provider_google", "cdktf_cdktf_provider_google_beta"):
            try:
                timed([PYTHON, "-c", PROVIDER_JSII_LOAD, package], f"jsii_load_{package.rsplit('_', 1)[-1]}")
            except SystemExit:
                figures[f"jsii_load_{package}"] = "not installed"
        from infra.scan import checkov_command

        command = checkov_command(tmp / "lazy0")  # every check, custom policies included, full JSON report
        # exit status 1 is expected: the suppressed findings are judged by infra.scan, not checkov
        checkov = [timed(command, "checkov", ok_codes=(0, 1)) for _ in range(args.repeat)]
        figures["checkov_s"] = {"min": min(checkov), "median": statistics.median(checkov)}
        cdktf = REPO_ROOT / "node_modules" / ".bin" / "cdktf"
        if cdktf.is_file():
            figures["cdktf_cli_synth_s"] = timed([str(cdktf), "synth", "--output", str(tmp / "cli")], "cli_synth")
            figures["cli_equals_in_process"] = same_tree(tmp / "cli" / "stacks", tmp / "lazy0" / "stacks")
        if {image: source_tag(image) for image in IMAGE_SOURCES} != tags_at_start:
            figures["note"] = (
                "trainer/ or service/ sources changed during the bench: image tags differ between "
                "the synths, so the byte comparisons above are void; rerun on a quiet tree"
            )
    if not args.skip_tests:
        figures["infra_tests_without_cli_s"] = timed(
            [PYTHON, "-m", "pytest", "tests/infra", "-q", "-m", "not cli", "-p", "no:cacheprovider"],
            "tests_without_cli",
        )
        figures["infra_tests_with_cli_s"] = timed(
            [PYTHON, "-m", "pytest", "tests/infra", "-q", "-p", "no:cacheprovider"], "tests_with_cli"
        )
    figures["cpu_s"] = {label: min(values) for label, values in CPU_SECONDS.items() if label}
    figures["load_at_end"] = os.getloadavg()[0]
    for key, value in figures.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.2f}"
        print(f"{key:28s} {value}")
    results = REPO_ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "infra.json").write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if figures["byte_identical"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
