"""`python -m infra.scan`: synthesize every stack, then run checkov on them with the repository's custom policies
and the baseline generated from the suppression notes. Exit status 0 only with 0 failed checks.

Reports: checkov's console summary, and JUnit XML (default cdktf.out/checkov-junit.xml) for CI.
Use `--no-synth` to scan what `cdktf synth` already wrote, `--synth-only` to write the stacks and the baseline
without running checkov (`make synth`).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from infra.checkov_baseline import write_baseline

REPO_ROOT = Path(__file__).resolve().parent.parent
POLICIES_DIR = Path(__file__).resolve().parent / "policies"
CHECKOV_VENV_BINARY = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"


def checkov_binary() -> str:
    """$CHECKOV, else the project's .venv-checkov, else `checkov` on PATH."""
    for candidate in (os.environ.get("CHECKOV"), str(CHECKOV_VENV_BINARY), shutil.which("checkov")):
        if candidate and Path(candidate).is_file():
            return candidate
    raise FileNotFoundError("checkov not found: install it with `python3 -m venv .venv-checkov && "
                            ".venv-checkov/bin/pip install checkov==3.3.30`, or set CHECKOV=/path/to/checkov")


def synthesize(outdir: Path) -> None:
    from infra.app import build_app, plan_environments

    if (outdir / "manifest.json").is_file():
        shutil.rmtree(outdir / "stacks", ignore_errors=True)  # no stale stack of a renamed environment
    build_app(plan_environments(), outdir=str(outdir)).synth()


def checkov_command(outdir: Path, baseline: Path, junit_xml: Path, policies: Path = POLICIES_DIR) -> list[str]:
    return [checkov_binary(), "-d", str(outdir), "--framework", "terraform_json",
            "--external-checks-dir", str(policies), "--baseline", str(baseline),
            "--skip-download", "--compact", "--quiet",
            "-o", "cli", "-o", "junitxml", "--output-file-path", f"console,{junit_xml}"]


def run_checkov(outdir: Path, junit_xml: Path, *, policies: Path = POLICIES_DIR,
                baseline: Path | None = None) -> int:
    """Run checkov on `outdir`; write JUnit XML to `junit_xml`; return checkov's exit status."""
    if baseline is None:
        baseline, _ = write_baseline(outdir)
    junit_xml.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.run(checkov_command(outdir, baseline, junit_xml, policies)).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.scan", description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", type=Path, default=Path("cdktf.out"))
    parser.add_argument("--junit-xml", type=Path, help="default: <outdir>/checkov-junit.xml")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--no-synth", action="store_true", help="scan the existing <outdir> as it is")
    mode.add_argument("--synth-only", action="store_true", help="synthesize and write the baseline; no checkov")
    args = parser.parse_args(argv)
    if args.no_synth and not any(args.outdir.glob("stacks/*/cdk.tf.json")):
        print(f"error: no stacks under {args.outdir}: run `python -m infra` or drop --no-synth", file=sys.stderr)
        return 2
    try:
        if not args.synth_only:
            checkov_binary()
        if not args.no_synth:
            synthesize(args.outdir)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    baseline, suppressions = write_baseline(args.outdir)
    print(f"{len(suppressions)} suppression note(s) from infra code -> {baseline}:")
    for s in suppressions:
        print(f"  {s.stack}: {s.check_id} on {s.resource_type}.{s.logical_id}: {s.reason}")
    if args.synth_only:
        print(f"synthesized {', '.join(sorted(p.parent.name for p in args.outdir.glob('stacks/*/cdk.tf.json')))} "
              f"into {args.outdir}")
        return 0
    junit_xml = args.junit_xml or args.outdir / "checkov-junit.xml"
    status = run_checkov(args.outdir, junit_xml, baseline=baseline)
    print(f"checkov exit status {status}; JUnit XML: {junit_xml}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
