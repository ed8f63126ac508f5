"""`python -m infra [--env ENV ...] [--outdir DIR]`: synthesize the stacks (this is the app cdktf.json runs)."""

from __future__ import annotations

import argparse
import sys

from infra.app import build_app, plan_environments
from settings import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra", description=__doc__.split(":")[1].strip())
    parser.add_argument("--env", action="append", help="environment to synthesize (repeatable); default: all")
    parser.add_argument("--outdir", help="output directory (default: the cdktf CLI's, else cdktf.out)")
    args = parser.parse_args(argv)
    try:
        plan = plan_environments(args.env)
        if not plan.environments:
            print(
                "error: no gcp-target environment to synthesize: "
                + "; ".join(f"{env}: {why}" for env, why in plan.skipped.items()),
                file=sys.stderr,
            )
            return 1
        app = build_app(plan, outdir=args.outdir)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for env, why in plan.skipped.items():
        print(f"skipped {env}: {why}", file=sys.stderr)
    app.synth()
    print("synthesized: " + ", ".join(s.env for s in plan.environments), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
