"""`python -m trainer tune`: search the declared hyperparameters within a time budget, locally or on Vertex AI.

Local target: Optuna (TPE sampler, seeded) runs whole training runs in-process, each judged on its validation
accuracy (the test set never picks a trial) and each recorded as a run record under
`<dev bucket>/tuning/<study>/runs/`; the study's trials and the best one go to `<dev bucket>/tuning/<study>/study.json`,
and `--save-preset NAME` saves the best configuration so `trainer train --preset NAME` trains it.
Why Optuna: `train()` is a plain function of a config, which Optuna's objective takes as it is (keras-tuner wants
a HyperModel and owns the fit loop), it stops on a wall-clock `timeout`, and it needs no server or database.
gcp target: the same search space becomes a Vertex AI hyperparameter tuning job (trainer/cloud/tuning.py) whose
trials run the trainer image.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import storage
from trainer.data.dataset import load_dataset
from trainer.errors import CommandError
from trainer.training.search_space import METRIC, apply, search_space, suggest
from trainer.training.train import OutputPaths, preset, saved_preset_uri, train


def add_arguments(parser: Any) -> None:
    parser.add_argument("--preset", help="the preset whose other knobs trials keep (default: config training.preset)")
    parser.add_argument("--trials", type=int, default=8, help="trials at most (default 8)")
    parser.add_argument("--timeout", type=float, default=600, help="local: stop starting trials after this many s")
    parser.add_argument("--parallel", type=int, default=2, help="gcp: trials running at once (default 2)")
    parser.add_argument("--study", help="study name (default tune-<UTC time>)")
    parser.add_argument("--save-preset", metavar="NAME", help="local: save the best trial's config as a preset")
    parser.add_argument("--dry-run", action="store_true", help="gcp: print the tuning job request, send nothing")


def study_uri(settings: Any, study: str) -> str:
    return storage.join(settings.dev_bucket, "tuning", study)


def run_local(settings: Any, args: Any, study_name: str) -> dict[str, Any]:
    import optuna

    base = preset(settings, args.preset or settings.training.preset)
    space = search_space(base.optimizer)
    data = load_dataset(settings, settings.training.dataset_version)
    root = study_uri(settings, study_name)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=base.seed))

    def objective(trial: Any) -> float:
        values = {p.name: suggest(trial, p) for p in space}
        config = apply(base, values)
        result = train(
            data.x_train, data.y_train, data.x_test, data.y_test, config, OutputPaths(root),
            dataset={"version": data.version, "hash": data.hash}, run_id=f"{study_name}-trial-{trial.number}",
            fresh=True, verbose=0,
        )  # fmt: skip
        score = float(result.history[-1][METRIC])
        trial.set_user_attr("run_id", result.run_id)
        trial.set_user_attr("config", config.to_dict())
        trial.set_user_attr("seconds", round(result.seconds, 1))
        print(f"trial {trial.number}: {METRIC} {score:.4f} in {result.seconds:.0f} s with {values}", flush=True)
        return score

    study.optimize(objective, n_trials=args.trials, timeout=args.timeout)
    done = [t for t in study.trials if t.value is not None]
    if not done:
        raise CommandError(f"no trial finished within --timeout {args.timeout:.0f} s; give it more time")
    best = study.best_trial
    summary = {
        "study": study_name,
        "metric": METRIC,
        "base_preset": args.preset or settings.training.preset,
        "dataset_version": data.version,
        "trials": [
            {"number": t.number, "params": t.params, "value": t.value, "state": t.state.name, **t.user_attrs}
            for t in study.trials
        ],
        "best": {"number": best.number, "params": best.params, "value": best.value, **best.user_attrs},
    }
    storage.write_text(storage.join(root, "study.json"), json.dumps(summary, indent=2), content_type="application/json")
    if args.save_preset:
        payload = {"config": best.user_attrs["config"], "from_study": study_name, "value": best.value}
        storage.write_text(saved_preset_uri(settings, args.save_preset), json.dumps(payload, indent=2))
    return summary


def run(args: Any, settings: Any) -> int:
    study_name = args.study or f"tune-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    if settings.target == "gcp":
        from trainer.cloud.tuning import build_tuning_job, send
        from trainer.cloud.vertex import require_gcp

        name = args.preset or settings.training.preset
        request = build_tuning_job(
            settings, search_space(preset(settings, name).optimizer), METRIC, preset=name,
            display_name=study_name, trials=args.trials, parallel=args.parallel,
        )  # fmt: skip
        if args.dry_run:
            print(json.dumps({"custom_job": request.custom_job.job, "tuning": request.tuning, "run": request.run},
                             indent=2))  # fmt: skip
            return 0
        require_gcp(settings, "tune")
        job = send(request)
        print(f"submitted {job.resource_name}: {args.trials} trials, {args.parallel} at a time")
        return 0
    started = time.perf_counter()
    summary = run_local(settings, args, study_name)
    best = summary["best"]
    print(
        f"study {study_name}: {len(summary['trials'])} trials in {time.perf_counter() - started:.0f} s; best trial "
        f"{best['number']} {METRIC} {best['value']:.4f} with {best['params']}; "
        f"written to {storage.join(study_uri(settings, study_name), 'study.json')}"
        + (f"; saved as preset {args.save_preset}" if args.save_preset else "")
    )
    return 0
