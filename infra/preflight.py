"""`python -m infra.preflight ENV`: refuse a deploy while config/<env>.yaml still holds placeholder values.

Why two guards: the committed configs hold placeholders on purpose (synth, scans and tests run offline with them),
but a deploy with them creates a budget on no real billing account and alerts nobody. The deploy path (Makefile,
Cloud Build) runs this preflight before any cloud call; infra/guard.py also writes the same list into each stack
as a Terraform variable whose validation fails `terraform plan` before any provider is called, so a bare
`cdktf deploy` stops too. Each message names the key and how to set it.
"""

from __future__ import annotations

import argparse
import re
import sys

from settings import ConfigError, Settings, load_config

PLACEHOLDER_DOMAINS = ("example.com", "example.org", "example.net")
PLACEHOLDER_OWNERS = ("example-org", "example")


def _override(key: str) -> str:
    return "FMNIST_INFRA__" + key.upper()


def placeholder_problems(settings: Settings) -> list[str]:
    """One line per setting a deploy of this environment must not use as committed."""
    infra, where = settings.infra, f"config/{settings.env}.yaml"
    problems = []
    if infra.billing_account is None or re.fullmatch(r"0{6}-0{6}-0{6}", infra.billing_account):
        problems.append(
            f"infra.billing_account is {infra.billing_account!r}, a placeholder: set your billing account id in "
            f"{where} or {_override('billing_account')} (`gcloud billing accounts list`)"
        )
    if infra.budget_currency is None:
        problems.append(
            f"infra.budget_currency is not set: it must equal the billing account's currency; set it in {where} "
            f"or {_override('budget_currency')} "
            "(`gcloud billing accounts describe ACCOUNT --format='value(currencyCode)'`)"
        )
    if infra.github_owner in PLACEHOLDER_OWNERS:
        problems.append(
            f"infra.github_owner is {infra.github_owner!r}, a placeholder: set the GitHub owner of the repository "
            f"in {where} or {_override('github_owner')}"
        )
    if infra.alert_email.rsplit("@", 1)[-1].lower() in PLACEHOLDER_DOMAINS:
        problems.append(
            f"infra.alert_email is {infra.alert_email!r}, an address nobody reads: set it in {where} or "
            f"{_override('alert_email')}"
        )
    for member in infra.invokers:
        if member.rsplit("@", 1)[-1].lower() in PLACEHOLDER_DOMAINS:
            problems.append(f"infra.invokers lists {member!r}, a placeholder: set real members in {where}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.preflight", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("env", help="environment (config/<env>.yaml); `bootstrap-<env>` names the same one")
    args = parser.parse_args(argv)
    env = args.env.removeprefix("bootstrap-")
    try:
        settings = load_config(env)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if settings.target != "gcp":
        print(f"error: {env} has target '{settings.target}': nothing to deploy on Google Cloud", file=sys.stderr)
        return 2
    problems = placeholder_problems(settings)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        print(f"refusing to deploy {args.env}: {len(problems)} placeholder setting(s) above", file=sys.stderr)
        return 1
    print(f"preflight {args.env}: no placeholder settings")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
