"""`python -m lifecycle` (what `make demo` runs): the whole lifecycle, offline by default.

local target: ingest -> analyze -> features -> train -> evaluate -> export/register -> shadow the candidate behind
the champion (lifecycle/checks/shadow.py; not a plan step) -> promote -> infra synth + policy scan -> serve the
champion and check it over HTTP -> summary table and report in the dev bucket.
gcp target (`--target gcp`, needs credentials and a deployed `infra/`): the same data steps into the datasets
bucket, training as a Vertex AI custom job, then evaluate/export/promote and `deploy-model` to the endpoint.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from contracts.layout import CANDIDATE, CHAMPION
from lifecycle.orchestration.plan import PROMOTED, REFUSED, Step, build_steps
from lifecycle.orchestration.steps import REPO_ROOT, StepFailed, StepLog, banner, run_step
from settings import ConfigError, load_config

GATE_OUTCOMES = {PROMOTED: "promoted to champion", REFUSED: "refused by the quality gate"}


def gate_summary(outcome: str, report: dict | None) -> str:
    """The summary's promotion line, naming the paired gate's decision: an identical candidate is not a refusal."""
    if outcome == PROMOTED or report is None:
        return GATE_OUTCOMES[outcome]
    reasons = "; ".join(report.get("reasons", ()))
    if report.get("decision") == "identical":
        return f"not promoted: identical to the champion ({reasons})"
    return f"{GATE_OUTCOMES[outcome]}, decision {report.get('decision')} ({reasons})"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m lifecycle", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--target",
        choices=["local", "gcp"],
        default="local",
        help="local (default, offline) or gcp (Vertex AI; needs credentials)",
    )
    parser.add_argument("--env", help="config environment (default: local, or dev with --target gcp)")
    parser.add_argument("--preset", default="demo", help="training preset (demo, full, smoke)")
    parser.add_argument("--source", help="data source for ingest (default: config, Debian package, download)")
    parser.add_argument("--train-arg", action="append", default=[], help="extra `trainer train` flag (repeatable)")
    parser.add_argument("--skip-infra", action="store_true", help="skip synth + policy scan")
    parser.add_argument("--infra-outdir", default="cdktf.out", help="where synth writes the stacks (default cdktf.out)")
    return parser.parse_args(argv)


def run_plan(log: StepLog, steps: list[Step], before: dict | None = None) -> dict[str, str]:
    """Run the step list in order (the local runner of what `compile` turns into a pipeline); returns outcomes.

    `before`: step name -> a callable run just before that step (a local-only action between plan parts)."""
    outcomes: dict[str, str] = {}
    for step in steps:
        if before and step.name in before:
            before[step.name]()
        if step.condition and outcomes.get(step.condition.step) != step.condition.outcome:
            print(f"\n-- {step.title}: skipped ({step.condition.step} was {outcomes.get(step.condition.step)})")
            continue
        outcome = run_step(log, step.title, step.argv, outcomes=step.outcomes or None)
        if outcome is not None:
            outcomes[step.name] = outcome
            if outcome == REFUSED:
                print("the quality gate kept the current champion (numbers above)", flush=True)
    return outcomes


def infra_inventory(outdir: Path) -> tuple[dict, str]:
    """Resource counts per synthesized stack and checkov's pass/fail totals from its JUnit XML."""
    counts = {}
    for stack in sorted(outdir.glob("stacks/*/cdk.tf.json")):
        resources = json.loads(stack.read_text()).get("resource", {})
        counts[stack.parent.name] = sum(len(items) for items in resources.values())
    junit = outdir / "checkov-junit.xml"
    if not junit.is_file():
        return counts, "not run"
    root = ET.parse(junit).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    return counts, f"{tests - failed - skipped} passed, {failed} failed, {skipped} skipped"


def run_local(args, settings, log: StepLog):
    from lifecycle.checks.http_check import check_service
    from lifecycle.checks.report import RunSummary, write_report
    from trainer.data.dataset import load_dataset
    from trainer.models.registry import ModelRegistry

    started = time.perf_counter()
    summary = RunSummary()
    run_id = "demo-" + time.strftime("%Y%m%dt%H%M%S", time.gmtime())
    steps = build_steps(settings, run_id=run_id, preset=args.preset, source=args.source, train_args=args.train_arg)
    registry = ModelRegistry.from_settings(settings)
    champion_at_gate: dict[str, str | None] = {}

    def before_gate() -> None:
        champion_at_gate["champion"] = registry.read_index().alias(CHAMPION)
        shadow_step(settings, registry, summary, log)

    outcomes = run_plan(log, steps, before={"promote": before_gate})
    summary.model_version = registry.resolve(CANDIDATE)
    champion_before = champion_at_gate.get("champion")
    summary.gate = gate_summary(outcomes["promote"], registry.gate_report(summary.model_version, champion_before))

    if not args.skip_infra:
        run_step(log, "infra synth + policy scan", ["-m", "infra.scan", "--outdir", args.infra_outdir])
        summary.infra_resources, summary.checkov = infra_inventory(REPO_ROOT / args.infra_outdir)

    index = registry.read_index()
    summary.champion = registry.resolve(CHAMPION, index)
    champion_dir = registry.version_uri(summary.champion)
    metrics = index.versions[summary.champion].metrics
    summary.accuracy = metrics["accuracy"]
    summary.macro_precision = metrics.get("macro_precision", 0.0)
    summary.macro_recall = metrics.get("macro_recall", 0.0)
    summary.macro_f1 = metrics.get("macro_f1", 0.0)
    dataset = load_dataset(settings)
    summary.dataset_version = dataset.version

    banner(f"serve champion {summary.champion} and check it over HTTP")
    start = time.perf_counter()
    from trainer.api import index_key_environment  # the service checks the index's signature

    figures = check_service(
        f"{settings.models_bucket}@champion", dataset.x_test, dataset.y_test, extra_env=index_key_environment(settings)
    )
    log.timings["serve + HTTP checks"] = time.perf_counter() - start
    summary.http_accuracy_json, summary.http_accuracy_binary = figures.json_accuracy, figures.binary_accuracy
    summary.cold_start_s = figures.cold_start_s
    summary.latency_p50_ms, summary.latency_p99_ms = figures.latency_p50_ms, figures.latency_p99_ms
    summary.binary_images_per_s = figures.binary_images_per_s
    summary.drift_on_test = bool(figures.drift_before.get("drift_detected"))
    summary.drift_on_shifted = bool(figures.drift_after.get("drift_detected"))
    summary.drifted_features = list(figures.drift_after.get("drifted", []))[:4]
    expected = round(summary.accuracy * len(dataset.y_test))
    problems = []
    for path, accuracy in (("JSON", figures.json_accuracy), ("binary", figures.binary_accuracy)):
        if round(accuracy * len(dataset.y_test)) != expected:
            problems.append(f"{path} path accuracy {accuracy:.4f} != evaluation {summary.accuracy:.4f}")
    if summary.drift_on_test:
        problems.append("drift flagged on the real test images")
    if not summary.drift_on_shifted:
        problems.append("no drift flagged on inverted images")

    summary.timings = dict(log.timings)
    summary.peak_rss_mb = log.peak_child_rss_mb()
    summary.wall_s = time.perf_counter() - started
    stamped, latest = write_report(settings, summary, champion_dir)
    banner("summary")
    print(summary.table())
    print(f"report: {latest}\n        {stamped}")
    if problems:
        raise StepFailed("HTTP check: " + "; ".join(problems))


def shadow_step(settings, registry, summary, log: StepLog) -> None:
    """Before the gate: the candidate in shadow behind the champion over HTTP (nothing to do on a first run)."""
    from lifecycle.checks.shadow import shadow_candidate
    from trainer.data.dataset import load_dataset

    banner("shadow the candidate behind the champion")
    index = registry.read_index()
    if not index.alias(CHAMPION):
        print("no champion yet: nothing to shadow", flush=True)
        summary.shadow_verdict = "no champion yet: nothing to shadow"
        return
    if index.alias(CHAMPION) == index.alias(CANDIDATE):
        print("the candidate is the champion: nothing to shadow", flush=True)
        summary.shadow_verdict = "candidate is the champion: nothing to shadow"
        return
    start = time.perf_counter()
    dataset = load_dataset(settings)
    figures = shadow_candidate(settings.models_bucket, dataset.x_test, settings.rollout.thresholds())
    log.timings["shadow candidate"] = time.perf_counter() - start
    summary.record_shadow(figures)


def run_gcp(args, settings, log: StepLog):
    """The same lifecycle against Google Cloud; each step is the command a pipeline would run."""
    if settings.target != "gcp":
        raise ConfigError(
            f"--target gcp needs a gcp environment; config/{settings.env}.yaml has target "
            f"{settings.target} (use --env dev)"
        )
    job = "fmnist-train-" + time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    run_plan(log, build_steps(settings, run_id=job, preset=args.preset, source=args.source, train_args=args.train_arg))


# `python -m lifecycle <command> ...`: commands beside the run itself, imported only when asked for.
COMMANDS = {
    "compile": "lifecycle.orchestration.compile",
    "run-compiled": "lifecycle.orchestration.run_compiled",
    "graph": "lifecycle.orchestration.graph",
    "publish": "lifecycle.orchestration.publish",
    "batch-predict": "lifecycle.batch.batch_predict",
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
    args = parse_args(argv)
    log = StepLog()
    try:
        settings = load_config(args.env or ("dev" if args.target == "gcp" else None))
        (run_gcp if args.target == "gcp" else run_local)(args, settings, log)
    except (StepFailed, ConfigError) as exc:
        print(f"\nlifecycle stopped: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
