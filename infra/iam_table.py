"""`python -m infra.iam_table [--env dev] [--write]`: who holds which role on what, read from the synthesized stacks.

Why generated: SECURITY.md once named only the trainer as a writer of the models bucket while four identities
could write it (issue 25). This table is built from every `google_*_iam_member` (and `_binding`) resource the
environment's bootstrap and main stacks declare, so it cannot drift from what `cdktf deploy` grants; `--write`
replaces the table between the markers in SECURITY.md, and tests/infra/test_iam_table.py fails when they differ.
Terraform references are shown by the construct path they point at (`accounts_pipelines` -> `pipelines`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SECURITY = REPO / "SECURITY.md"
BEGIN, END = "<!-- iam-table:begin (python -m infra.iam_table --write) -->", "<!-- iam-table:end -->"
# Roles that can change objects, keys or what runs: the "writes" column.
WRITING = re.compile(
    r"(admin|Admin|objectCreator|objectUser|writer|Writer|editor|Editor|signerVerifier|encrypterDecrypter|user$|"
    r"invoker|actAs|serviceAccountUser|serviceAccountTokenCreator|jobUser|dataEditor|publisher)"
)
_REFERENCE = re.compile(r"\$\{(?:data\.)?[a-z_0-9]+\.([a-z_0-9]+?)(?:_[0-9A-F]{8})?\.[a-z_]+\}")
_EMAIL = re.compile(r"@[a-z0-9-]+\.iam\.gserviceaccount\.com$")
_ACCOUNT = re.compile(r"\$\{google_service_account\.accounts_([a-z_0-9]+?)_[0-9A-F]{8}\.(email|name|id)\}")


def _readable(value: str) -> str:
    value = _ACCOUNT.sub(lambda m: m.group(1), value)
    return _REFERENCE.sub(lambda m: m.group(1), value)


def _target(resource_type: str, body: dict) -> str:
    for field in ("bucket", "crypto_key_id", "repository", "dataset_id", "topic", "name", "service_account_id"):
        if field in body:
            return f"{resource_type.removeprefix('google_').removesuffix('_iam_member')}: {_readable(str(body[field]))}"
    return resource_type.removeprefix("google_").removesuffix("_iam_member")


def rows(stack: dict, stack_name: str) -> list[tuple[str, str, str, str, str]]:
    """(principal, role, on what, condition title, stack) for every IAM grant in one synthesized stack."""
    out = []
    for resource_type, resources in stack.get("resource", {}).items():
        if not resource_type.endswith(("_iam_member", "_iam_binding")):
            continue
        for body in resources.values():
            members = body.get("members") or [body.get("member", "?")]
            condition = (body.get("condition") or {}).get("title", "")
            for member in members:
                principal = _EMAIL.sub("", _readable(str(member)).removeprefix("serviceAccount:"))
                out.append((principal, str(body.get("role")), _target(resource_type, body), condition, stack_name))
    return sorted(out)


def table(stacks: dict[str, dict]) -> str:
    lines = [
        "| principal | role | on | condition | writes or acts | stack |",
        "|---|---|---|---|---|---|",
    ]
    for name, stack in sorted(stacks.items()):
        for principal, role, target, condition, stack_name in rows(stack, name):
            writes = "yes" if WRITING.search(role.rsplit("/", 1)[-1]) else ""
            lines.append(f"| {principal} | `{role}` | {target} | {condition} | {writes} | {stack_name} |")
    return "\n".join(lines) + "\n"


def synthesized(env: str) -> dict[str, dict]:
    """The environment's bootstrap and main stacks, synthesized in-process into a scratch directory."""
    from infra.app import build_app, plan_environments

    with tempfile.TemporaryDirectory() as tmp:
        build_app(plan_environments([env], environ={}), outdir=tmp).synth()
        return {p.parent.name: json.loads(p.read_text()) for p in Path(tmp).glob("stacks/*/cdk.tf.json")}


def replace_between_markers(text: str, generated: str) -> str:
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{SECURITY}: the markers {BEGIN!r} and {END!r} are missing")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{generated}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.iam_table", description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="dev", help="the environment whose stacks are read (default dev)")
    parser.add_argument("--write", action="store_true", help="replace the table in SECURITY.md")
    args = parser.parse_args(argv)
    generated = table(synthesized(args.env))
    if args.write:
        SECURITY.write_text(replace_between_markers(SECURITY.read_text(), generated))
        print(f"wrote the IAM table of {args.env} into {SECURITY}")
    else:
        sys.stdout.write(generated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
