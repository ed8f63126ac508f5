"""`python -m twin` (`make twin-gcp`): the whole gcp lifecycle, `python -m lifecycle --target gcp`, offline.

Every step runs as it would on Google Cloud, with the real client libraries, against the twin (twin/cloud.py):
ingest, analyze and features write the gs:// buckets (fake-gcs-server); feed-feature-store loads BigQuery and syncs
the feature view; train submits a custom job whose container, the trainer image built by `make images`, trains on
smoke data with podman; export, promote, deploy-model and import-evaluation follow. At the end: what each API
received, and the state the next run would read. Needs root and podman (the images), like `make test-images`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from twin.cloud import Twin, running

REPO = Path(__file__).resolve().parents[1]
# A person starts the twin, as `make demo`: the run promotes (no approval wait), and a smoke model (about 0.7 on
# 600 images) passes a floor meant for real data, so the deploy and evaluation-import branch runs too.
SMOKE_GATE = {"FMNIST_REGISTRY__PROMOTE_PIPELINE_RUNS": "true", "FMNIST_REGISTRY__ACCURACY_FLOOR": "0.5"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m twin", description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="dev", help="gcp environment whose config the run uses (default dev)")
    parser.add_argument("--preset", default="smoke", help="training preset (default smoke)")
    parser.add_argument("--train", type=int, default=600, help="smoke training images (default 600)")
    parser.add_argument("--test", type=int, default=200, help="smoke test images (default 200)")
    parser.add_argument("--workdir", type=Path, help="keep the run's files here (default: a temporary directory)")
    parser.add_argument("--record", type=Path, help="write the run's record (requests, state, timings) as JSON here")
    parser.add_argument(
        "--as-configured",
        action="store_true",
        help="keep the config's gate: pipeline runs await approval, and smoke models stay below the accuracy floor "
        "(so deploy-model and import-evaluation are skipped)",
    )
    return parser.parse_args(argv)


def summary(twin: Twin) -> dict:
    """What each API received (method and resource collection), and the state the next run reads."""

    def shape(method: str, path: str, verb: str) -> str:  # projects/p/locations/l/customJobs/1 -> .../customJobs
        return f"{method} {'/'.join(path.split('/')[0::2])}{':' + verb if verb else ''}"

    apis = {
        "vertex": twin.vertex.requests,
        "bigquery": twin.bigquery.requests,
        "monitoring": twin.monitoring.requests,
        "run": twin.run.requests,
    }
    requests = {api: dict(Counter(shape(r.method, r.path, r.verb) for r in reqs)) for api, reqs in apis.items()}
    unauthenticated = [f"{api}: {r.method} {r.path}" for api, reqs in apis.items() for r in reqs if not r.authorization]
    jobs = {k: v.get("state") for k, v in twin.vertex.resources.items() if "/customJobs/" in k}
    endpoints = {
        k: {
            "deployedModels": [d.get("displayName") for d in v.get("deployedModels", [])],
            "trafficSplit": v.get("trafficSplit"),
        }
        for k, v in twin.vertex.resources.items()
        if "/endpoints/" in k
    }
    models = sorted(k for k in twin.vertex.resources if "/models/" in k and "@" in k and "/evaluations" not in k)
    tables = {k: int(v["numRows"]) for k, v in twin.bigquery.tables.items()}
    return {
        "requests": requests,
        "requests_without_credentials": unauthenticated,
        "tokens_issued": sum(p.endswith("/token") or "/token?" in p for p in twin.metadata.requests),
        "custom_jobs": jobs,
        "endpoints": endpoints,
        "model_versions": models,
        "evaluations": sorted(k for k in twin.vertex.resources if "/evaluations/" in k),
        "bigquery_rows": tables,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from settings import load_config
    from trainer.data.synthetic import make_idx_dir

    with tempfile.TemporaryDirectory(prefix="fmnist-twin-") as scratch:
        workdir = (args.workdir or Path(scratch)).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        settings = load_config(args.env)
        if settings.target != "gcp":
            print(f"error: config/{args.env}.yaml is not a gcp environment (use --env dev)", file=sys.stderr)
            return 2
        source = make_idx_dir(workdir / "idx", args.train, args.test)
        with running(settings, workdir) as twin:
            env = twin.environment()
            mlops = workdir / "mlops"
            mlops.mkdir(parents=True, exist_ok=True)
            env["FMNIST_STORAGE_ROOT"] = str(mlops)  # the promoter's local signing key lives beside it
            if not args.as_configured:
                env.update(SMOKE_GATE)
            # the promoter's jobs (twin/run.py) get the same gate and key directory, as their job definition
            twin.run.job_env.update({k: v for k, v in env.items() if k in (*SMOKE_GATE, "FMNIST_STORAGE_ROOT")})
            twin.run.mounts.append(str(mlops))
            command = [sys.executable, "-m", "lifecycle", "--target", "gcp", "--env", args.env]
            command += ["--preset", args.preset, "--source", str(source)]
            print("$ " + " ".join(command[1:]), flush=True)
            started = time.perf_counter()
            status = subprocess.run(command, cwd=REPO, env=env).returncode
            seconds = time.perf_counter() - started
            record = {"exit_status": status, "seconds": round(seconds, 1), **summary(twin)}
        print("\n== the twin's record")
        print(json.dumps(record, indent=2))
        if args.record:
            args.record.write_text(json.dumps(record, indent=2))
        print(f"\npython -m lifecycle --target gcp: exit {status} in {seconds:.0f} s against the twin")
        return status


if __name__ == "__main__":
    sys.exit(main())
