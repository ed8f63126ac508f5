"""`python -m infra.scan`: synthesize every stack, run checkov on them with the repository's custom policies and the
graph policies of infra/graph_policies.py, simulate plan, apply and destroy (infra/simulate.py), and fail unless
every failed check is covered by a suppression note in code. Exit status 0 only with 0 findings.

Why not `checkov --baseline` alone: with a baseline checkov reports only new failures and drops the passed
checks, so its JUnit said "2 tests". Here checkov reports everything (JSON), each failure is matched against
the notes (infra/suppressions.py), and the JUnit XML lists passed checks, suppressed ones as skipped with their
reason, and findings as failures. The checkov baseline file is still written (cdktf.out/checkov.baseline) for
anyone running checkov directly, e.g. on the `cdktf synth --hcl` output; a test keeps the two in agreement.

Reports: a console summary and JUnit XML (default cdktf.out/checkov-junit.xml) for CI.
`--no-synth` scans what `cdktf synth` already wrote; `--synth-only` writes the stacks and the baseline without
running checkov (`make synth`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field, replace
from pathlib import Path

from infra import simulate
from infra.checkov_baseline import Suppression, read_suppressions, write_baseline
from infra.graph_policies import GraphResult, evaluate_outdir

REPO_ROOT = Path(__file__).resolve().parent.parent
POLICIES_DIR = Path(__file__).resolve().parent / "policies"
CHECKOV_VENV_BINARY = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"


def checkov_binary() -> str:
    """$CHECKOV, else the project's .venv-checkov, else `checkov` on PATH."""
    for candidate in (os.environ.get("CHECKOV"), str(CHECKOV_VENV_BINARY), shutil.which("checkov")):
        if candidate and Path(candidate).is_file():
            return candidate
    raise FileNotFoundError(
        "checkov not found: install it with `python3 -m venv .venv-checkov && "
        ".venv-checkov/bin/pip install checkov==3.3.30`, or set CHECKOV=/path/to/checkov"
    )


def synthesize(outdir: Path) -> None:
    from infra.app import build_app, plan_environments

    if (outdir / "manifest.json").is_file():
        shutil.rmtree(outdir / "stacks", ignore_errors=True)  # no stale stack of a renamed environment
    build_app(plan_environments(), outdir=str(outdir)).synth()


@dataclass(frozen=True)
class Finding:
    stack: str
    check_id: str
    check_name: str
    resource: str  # checkov's name: `resource.<id>` (Python checks) or `<type>.<id>` (graph checks)
    guideline: str = ""
    reason: str = ""  # the suppression note's reason, when one covers it


@dataclass
class ScanResult:
    passed: list[Finding] = field(default_factory=list)
    failed: list[Finding] = field(default_factory=list)
    suppressed: list[Finding] = field(default_factory=list)

    @property
    def status(self) -> int:
        return 1 if self.failed else 0

    def summary(self) -> str:
        return f"checkov: {len(self.passed)} passed, {len(self.failed)} failed, {len(self.suppressed)} suppressed"


def checkov_command(outdir: Path, policies: Path = POLICIES_DIR) -> list[str]:
    return [
        checkov_binary(),
        "-d",
        str(outdir),
        "--framework",
        "terraform_json",
        "--external-checks-dir",
        str(policies),
        "--skip-download",
        "-o",
        "json",
    ]


def run_checkov_json(outdir: Path, policies: Path = POLICIES_DIR) -> list[dict]:
    """checkov's full JSON report(s) for `outdir`; raises RuntimeError when checkov itself fails."""
    completed = subprocess.run(checkov_command(outdir, policies), capture_output=True, text=True)
    try:
        reports = json.loads(completed.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(
            f"checkov exited {completed.returncode} without a report:\n{completed.stderr[-3000:]}"
        ) from None
    return reports if isinstance(reports, list) else [reports]


def _finding(check: dict) -> Finding:
    parts = Path(check.get("file_path", "")).parts
    stack = parts[parts.index("stacks") + 1] if "stacks" in parts else "?"
    return Finding(
        stack, check["check_id"], check.get("check_name", ""), check["resource"], check.get("guideline") or ""
    )


def evaluate(reports: list[dict], suppressions: list[Suppression]) -> ScanResult:
    """Split checkov's results into passed, failed and suppressed (a note on the same stack, resource and check)."""
    notes = {(s.stack, s.logical_id, s.check_id): s.reason for s in suppressions}
    result = ScanResult()
    for report in reports:
        results = report.get("results", {})
        result.passed += [_finding(c) for c in results.get("passed_checks", [])]
        for check in results.get("failed_checks", []):
            finding = _finding(check)
            reason = notes.get((finding.stack, finding.resource.split(".", 1)[-1], finding.check_id))
            if reason:
                result.suppressed.append(replace(finding, reason=reason))
            else:
                result.failed.append(finding)
    return result


def add_graph_results(result: ScanResult, graph: list[GraphResult], suppressions: list[Suppression]) -> ScanResult:
    """The graph policies' outcomes, judged against the same notes (resource named `<type>.<id>`)."""
    notes = {(s.stack, s.logical_id, s.check_id): s.reason for s in suppressions}
    for outcome in graph:
        finding = Finding(outcome.stack, outcome.check_id, outcome.check_name, outcome.resource, outcome.problem or "")
        reason = notes.get((outcome.stack, outcome.resource.split(".")[-1], outcome.check_id))
        if outcome.problem is None:
            result.passed.append(finding)
        elif reason:
            result.suppressed.append(replace(finding, reason=reason))
        else:
            result.failed.append(finding)
    return result


def write_junit(result: ScanResult, path: Path) -> None:
    """One testsuite per stack; a testcase per (check, resource)."""
    by_stack: dict[str, list[tuple[Finding, str]]] = {}
    for outcome, findings in (("passed", result.passed), ("failed", result.failed), ("suppressed", result.suppressed)):
        for finding in findings:
            by_stack.setdefault(finding.stack, []).append((finding, outcome))
    root = ElementTree.Element(
        "testsuites",
        name="checkov",
        tests=str(sum(map(len, by_stack.values()))),
        failures=str(len(result.failed)),
        skipped=str(len(result.suppressed)),
    )
    for stack, cases in sorted(by_stack.items()):
        suite = ElementTree.SubElement(
            root,
            "testsuite",
            name=f"checkov {stack}",
            tests=str(len(cases)),
            failures=str(sum(o == "failed" for _, o in cases)),
            skipped=str(sum(o == "suppressed" for _, o in cases)),
        )
        for finding, outcome in sorted(cases, key=lambda c: (c[0].check_id, c[0].resource)):
            case = ElementTree.SubElement(
                suite,
                "testcase",
                classname=f"{stack}.{finding.resource}",
                name=f"{finding.check_id} {finding.check_name}",
            )
            if outcome == "failed":
                ElementTree.SubElement(case, "failure", message=finding.check_name).text = finding.guideline
            elif outcome == "suppressed":
                ElementTree.SubElement(case, "skipped", message=f"suppressed in code: {finding.reason}")
    path.parent.mkdir(parents=True, exist_ok=True)
    ElementTree.ElementTree(root).write(path, encoding="unicode", xml_declaration=True)


def scan(
    outdir: Path, junit_xml: Path, *, policies: Path = POLICIES_DIR, suppressions: list[Suppression] | None = None
) -> ScanResult:
    """checkov and the graph policies on `outdir`, judged against the notes (default: those in the stacks)."""
    if suppressions is None:
        suppressions = read_suppressions(outdir)
    result = evaluate(run_checkov_json(outdir, policies), suppressions)
    add_graph_results(result, evaluate_outdir(outdir), suppressions)
    add_graph_results(result, simulate.evaluate_outdir(outdir), suppressions)
    write_junit(result, junit_xml)
    return result


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
    stacks = sorted(p.parent.name for p in args.outdir.glob("stacks/*/cdk.tf.json"))
    print(f"stacks: {', '.join(stacks)} in {args.outdir}; {len(suppressions)} suppression note(s) -> {baseline}")
    if args.synth_only:
        return 0
    junit_xml = args.junit_xml or args.outdir / "checkov-junit.xml"
    try:
        result = scan(args.outdir, junit_xml, suppressions=suppressions)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for finding in result.suppressed:
        print(f"  suppressed {finding.stack}: {finding.check_id} on {finding.resource}: {finding.reason}")
    for finding in result.failed:
        print(
            f"  FAILED {finding.stack}: {finding.check_id} {finding.check_name} on {finding.resource} "
            f"{finding.guideline}"
        )
    print(f"{result.summary()}; JUnit XML: {junit_xml}")
    return result.status


if __name__ == "__main__":
    raise SystemExit(main())
