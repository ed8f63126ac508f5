"""Turn the suppression notes in synthesized stacks into a checkov baseline file.

Why a generated baseline: checkov drops the `"//"` keys of cdk.tf.json, so the notes infra/suppressions.py
writes there are invisible to it. This script reads them (plain JSON, no cdktf import) and writes the baseline
that `checkov --baseline` understands; the reason stays with the resource in code and in the synthesized JSON.

`python -m infra.checkov_baseline [OUTDIR] [--output FILE]` (default cdktf.out, cdktf.out/checkov.baseline).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from infra.suppressions import NOTE_KEY

DEFAULT_OUTDIR = Path("cdktf.out")
BASELINE_NAME = "checkov.baseline"


@dataclass(frozen=True)
class Suppression:
    stack: str
    resource_type: str
    logical_id: str
    check_id: str
    reason: str


def read_suppressions(outdir: Path) -> list[Suppression]:
    """Every note in every `stacks/<stack>/cdk.tf.json` under `outdir`, sorted for a stable baseline."""
    found = []
    for stack_file in sorted(outdir.glob("stacks/*/cdk.tf.json")):
        document = json.loads(stack_file.read_text())
        for resource_type, resources in document.get("resource", {}).items():
            for logical_id, body in resources.items():
                for check_id, reason in body.get("//", {}).get(NOTE_KEY, {}).items():
                    found.append(Suppression(stack_file.parent.name, resource_type, logical_id, check_id, reason))
    return found


def baseline(suppressions: list[Suppression]) -> dict:
    """checkov's baseline shape. Resource-level Python checks name a resource `resource.<id>` in terraform_json,
    graph checks `<type>.<id>`: both names are listed, so a note works whichever kind of check it silences."""
    by_file: dict[str, dict[str, set[str]]] = {}
    for s in suppressions:
        findings = by_file.setdefault(f"/stacks/{s.stack}/cdk.tf.json", {})
        for name in (f"resource.{s.logical_id}", f"{s.resource_type}.{s.logical_id}"):
            findings.setdefault(name, set()).add(s.check_id)
    return {
        "failed_checks": [
            {
                "file": file,
                "findings": [{"resource": name, "check_ids": sorted(ids)} for name, ids in sorted(findings.items())],
            }
            for file, findings in sorted(by_file.items())
        ]
    }


def write_baseline(outdir: Path, output: Path | None = None) -> tuple[Path, list[Suppression]]:
    suppressions = read_suppressions(outdir)
    output = output or outdir / BASELINE_NAME
    output.write_text(json.dumps(baseline(suppressions), indent=2) + "\n")
    return output, suppressions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.checkov_baseline", description=__doc__.splitlines()[0])
    parser.add_argument("outdir", nargs="?", type=Path, default=DEFAULT_OUTDIR)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    if not any(args.outdir.glob("stacks/*/cdk.tf.json")):
        print(f"error: no stacks under {args.outdir}: run `python -m infra` (or `cdktf synth`) first")
        return 1
    path, suppressions = write_baseline(args.outdir, args.output)
    for s in suppressions:
        print(f"{s.stack} {s.resource_type}.{s.logical_id} {s.check_id}: {s.reason}")
    print(f"{len(suppressions)} suppression(s) -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
