"""Build the cdktf App: per config/<env>.yaml whose target is gcp, four stacks in deploy order: `bootstrap-<env>`
(by a person, once), `<env>`, `images-<env>` (the docker provider alone) and `serving-<env>` (Cloud Run on the
pushed digests). Only `images-<env>` needs a Docker daemon, to plan as to deploy (issue 23, defect 7).

Environments with `target: local` are skipped on purpose: their buckets are directories under `.mlops/` and
nothing of theirs lives on Google Cloud (a stack for a project that does not exist could never be deployed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cdktf import App

from settings import CONFIG_DIR, Settings, load_config


@dataclass
class SynthPlan:
    environments: list[Settings] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # env -> reason


def plan_environments(
    only: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None, config_dir: Path = CONFIG_DIR
) -> SynthPlan:
    """Load every (or each named) environment and split them into stacks to build and skipped ones."""
    environ = os.environ if environ is None else environ
    names = list(only) if only else sorted(p.stem for p in config_dir.glob("*.yaml"))
    plan = SynthPlan()
    for env in names:
        settings = load_config(env, environ=environ, config_dir=config_dir)
        if settings.target != "gcp":
            plan.skipped[env] = (
                f"target is '{settings.target}': nothing on Google Cloud to declare "
                f"(buckets are directories under {settings.storage_root}/)"
            )
            continue
        plan.environments.append(settings)
    return plan


def build_app(plan: SynthPlan, *, outdir: str | None = None) -> App:
    """An App holding the four stacks of each planned environment; `outdir` None honours the cdktf CLI's choice."""
    from infra.bootstrap import BootstrapStack  # imports the providers: only when a stack is really built
    from infra.images_stack import ImagesStack
    from infra.serving_stack import ServingStack
    from infra.stack import EnvironmentStack

    app = App(outdir=outdir) if outdir else App()
    for settings in plan.environments:
        BootstrapStack(app, settings)
        environment = EnvironmentStack(app, settings)
        images = ImagesStack(app, settings, after=environment)
        ServingStack(app, settings, identity=environment.identity, images=images.images)
    return app
