"""One in-process synth of every gcp environment (its bootstrap stack and its main stack), shared by the whole
infra suite (cloud-foundation-fabric style inventory tests read it), plus one synth of deliberate variants (public
endpoint, no state bucket)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("CHECKPOINT_DISABLE", "1")

ENVIRONMENTS = ("dev", "prod")
BOOTSTRAP = {env: f"bootstrap-{env}" for env in ENVIRONMENTS}  # each environment's bootstrap stack
VARIANT = "dev"  # the variant stack is dev with a public endpoint and no state bucket


@dataclass
class Synth:
    outdir: Path
    texts: dict[str, str]

    def stack(self, env: str) -> dict:
        return json.loads(self.texts[env])

    def resources(self, env: str, resource_type: str) -> dict[str, dict]:
        return self.stack(env).get("resource", {}).get(resource_type, {})

    def by_path(self, stack: str) -> dict[str, tuple[str, str, dict]]:
        """Every resource and data source of one stack by construct path under the stack: (type, address, body).
        The path is what cdktf derives the Terraform address from, so a test can pin it without the hash."""
        found = {}
        for kind in ("resource", "data"):
            for resource_type, resources in self.stack(stack).get(kind, {}).items():
                for key, body in resources.items():
                    if "//" in body:  # cdktf's own cross-stack reference carries no construct path
                        address = f"{'data.' if kind == 'data' else ''}{resource_type}.{key}"
                        found[body["//"]["metadata"]["path"].removeprefix(f"{stack}/")] = (resource_type, address, body)
        return found

    def body(self, stack: str, path: str) -> dict:
        return self.by_path(stack)[path][2]

    def ref(self, stack: str, path: str, attribute: str) -> str:
        """The Terraform reference to one attribute of the resource at `path`."""
        return f"${{{self.by_path(stack)[path][1]}.{attribute}}}"

    def waits(self, stack: str, under: str) -> dict[str, list[str]]:
        """construct path -> the construct paths its `depends_on` names, in order, for resources under `under`."""
        paths = {address: path for path, (_, address, _) in self.by_path(stack).items()}
        return {
            path: [paths[address] for address in body["depends_on"]]
            for path, (_, _, body) in self.by_path(stack).items()
            if path.startswith(under) and "depends_on" in body
        }

    def one(self, env: str, resource_type: str) -> dict:
        found = self.resources(env, resource_type)
        assert len(found) == 1, f"{env}: expected one {resource_type}, found {sorted(found)}"
        return next(iter(found.values()))


def _synthesize(outdir: Path, environ: dict[str, str], environments: tuple[str, ...] = ENVIRONMENTS) -> Synth:
    from infra.app import build_app, plan_environments

    build_app(plan_environments(environments, environ=environ), outdir=str(outdir)).synth()
    return _read(outdir)


def _read(outdir: Path) -> Synth:
    return Synth(outdir, {p.parent.name: p.read_text() for p in outdir.glob("stacks/*/cdk.tf.json")})


def _once_per_run(
    tmp_path_factory, name: str, environ: dict[str, str], environments: tuple[str, ...] = ENVIRONMENTS
) -> Synth:
    """A session synth; under pytest-xdist the workers of one run share it (the first synthesizes into the run's
    temporary root under a lock, the others read its files): the same code writes the same stacks, and each synth
    costs ~5 s of CPU. Never under mutmut: there a test must run the constructs itself to be credited with them."""
    if not os.environ.get("PYTEST_XDIST_WORKER") or os.environ.get("MUTANT_UNDER_TEST"):
        return _synthesize(tmp_path_factory.mktemp(name), environ, environments)
    shared = tmp_path_factory.getbasetemp().parent / "shared-synth"  # every worker's basetemp's parent
    shared.mkdir(exist_ok=True)
    outdir, done = shared / name, shared / f"{name}.done"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(outdir, ignore_errors=True)  # a worker that died mid-synth left a part behind
            _synthesize(outdir, environ, environments)
            done.touch()
    return _read(outdir)


def _once_or_per_test(fixture_name: str, config: pytest.Config) -> str:
    """Session-wide, except while mutmut maps which test reaches which function ("stats"): a session fixture runs
    in the first test's set-up, so mutmut would credit the construct to that test alone and judge every mutant of
    it by one test. Per test there; each mutant's own run synthesizes once again."""
    return "function" if os.environ.get("MUTANT_UNDER_TEST") == "stats" else "session"


@pytest.fixture(scope=_once_or_per_test)
def synth(tmp_path_factory) -> Synth:
    """dev and prod exactly as config/*.yaml declare them (no FMNIST_* overrides from the caller's shell)."""
    return _once_per_run(tmp_path_factory, "cdktf-out", environ={})


@pytest.fixture(scope="session")
def variant_synth(tmp_path_factory) -> Synth:
    """dev with `infra.public_endpoint: true`, two invokers, no state bucket (local backend) and a canary."""
    environ = {
        "FMNIST_INFRA__PUBLIC_ENDPOINT": "true",
        "FMNIST_INFRA__STATE_BUCKET": "null",
        "FMNIST_INFRA__INVOKERS": "['group:ml-team@example.com', 'user:ana@example.com']",
        "FMNIST_SERVICE__CHALLENGER": "candidate",
        "FMNIST_SERVICE__ROLLOUT_MODE": "canary",
        "FMNIST_SERVICE__CANARY_PERCENT": "5",
        "FMNIST_ROLLOUT__MIN_REQUESTS": "2000",
    }
    return _once_per_run(tmp_path_factory, "cdktf-variant", environ, environments=(VARIANT,))


APPROVERS = ["group:ml-approvers@example.com", "user:ana@example.com"]


@pytest.fixture(scope=_once_or_per_test)
def approvers_synth(tmp_path_factory) -> Synth:
    """dev with two promotion approvers (none by default): who may execute the promoter's approval job."""
    environ = {"FMNIST_INFRA__PROMOTION_APPROVERS": json.dumps(APPROVERS)}
    return _once_per_run(tmp_path_factory, "cdktf-approvers", environ=environ)


@pytest.fixture(scope="session")
def settings_by_env():
    from settings import load_config

    return {env: load_config(env, environ={}) for env in ENVIRONMENTS}
