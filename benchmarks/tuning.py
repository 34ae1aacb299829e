"""Hyperparameter tuning throughput: the same trial budget with 1 and with 2 parallel workers.

Run as ``.venv/bin/python benchmarks/tuning.py [--pipeline flights|taxi] [--quick]`` from the
project root. On a temporary ``$ML_ASSETS_HOME`` it lands the pipeline's data with its
publisher (flights: 2013-01-01 … ``--end``; taxi: all four months), materializes it through the
code location's jobs (``<prefix>_reference_tables``, ``<prefix>_data`` over the range as one
run), then the ``training_set`` asset through ``<prefix>_model`` (window and split declared,
or given), and takes the tuning data exactly as the ``hyperparameter_study`` asset does: a
seeded sample of the declared ``tuning.sample_rows`` train rows plus all validation rows. It
then runs ``ml_assets.modeling.study.run_study`` (the function the asset calls) once per worker
count, each into a fresh study (its own journal file) with the same seed, search space, pruner,
objective (MAE for flights, log loss for taxi) and budget.

Fairness: each worker samples with its own seed (``seed + worker``), so the runs do not propose
the same trials, and the family mix (a ridge or logistic regression trial takes well under a
second, a large random forest many seconds) and the pruning differ. Besides the raw throughput
(finished trials per minute, the target), the table gives each run's family mix, and a
*work-adjusted* speedup that prices every trial by what it fitted: boosting iterations or trees
actually fitted (stages reported * size / stages), or one fit for a linear model, at the
per-family cost measured in the first (1-worker) run. It says how much faster the same *work*
went, whatever the trials were. The 1-worker run is reproducible (same trials, same best value
every time); the parallel run's proposals also depend on which trials happen to finish first,
so its mix varies between runs.

Also per run: CPU seconds of all processes and cores busy (CPU / wall; a single worker above
1.0 means multi-threaded fits), start-up (call → the start of trial number ``workers``, i.e.
about when the last worker got going: spawn, imports, reading the data) and worker utilization
(trial seconds / (wall * workers)). The in-process 1-worker run imports scikit-learn inside its
first trial, as the asset's step process does. Every run must finish exactly its budget with no
failed trial and a finite best value, else the exit code is 1; missing the speed target is
reported, not an error. The machine's load average is printed before and after: other work on
the two cores skews every figure, multi-threaded fits most of all. ``--quick`` tunes on a small
window (flights: two weeks) with a budget of 4 trials: the same code, for the test suite.
"""

import argparse
import math
import os
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from _common import (
    DEFAULT_PIPELINE,
    Checks,
    Window,
    benchmark_home,
    build_data,
    bytecode_note,
    declaration,
    enter_home,
    load_average,
    op,
    pipeline_names,
    run_job,
    table,
    target,
    window,
)

if TYPE_CHECKING:
    import optuna

SPEEDUP_TARGET = 1.6
SHORT = {
    "hist_gradient_boosting": "hgb",
    "random_forest": "rf",
    "ridge": "ridge",
    "logistic_regression": "logreg",
}
SIZE_PARAM = {"hist_gradient_boosting": "max_iter", "random_forest": "n_estimators"}
"""The parameter that sizes a staged family's fit; other families are one fit per trial."""
WINDOWS = {
    "flights": {
        False: Window("2013-01-01", "2013-03-31", "2013-01-08", 30, 30),
        True: Window("2013-01-01", "2013-01-14", "2013-01-08", 2, 1, min_train_partitions=4),
    }
}
"""Per pipeline, full and quick; a pipeline not listed tunes on its declared training window
(taxi: all 10,000 trips, in either mode)."""


@dataclass
class RunResult:
    """One ``run_study`` call: timings, trials and what they fitted."""

    workers: int
    study_name: str
    wall_s: float
    cpu_s: float
    startup_s: float
    trial_s: float
    """Sum of the trials' own durations."""
    completed: int
    pruned: int
    failed: int
    best_value: float
    families: Counter[str] = field(default_factory=Counter)
    pruned_families: Counter[str] = field(default_factory=Counter)
    work: dict[str, float] = field(default_factory=dict)
    """Per family: units fitted (iterations or trees; 1 per linear fit)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Per family: trial seconds."""

    @property
    def finished(self) -> int:
        return self.completed + self.pruned

    @property
    def per_minute(self) -> float:
        return 60 * self.finished / self.wall_s

    def mix(self) -> str:
        return ", ".join(
            f"{SHORT.get(f, f)} {n}"
            + (f" ({self.pruned_families[f]}p)" if self.pruned_families[f] else "")
            for f, n in sorted(self.families.items())
        )


def _cpu_s() -> float:
    """CPU seconds of this process (all its threads) and its reaped children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def build_tuning_data(pipeline: str, built: Window) -> tuple[pd.DataFrame, str]:
    """Features of ``built`` through the pipeline's jobs, then the tuning rows as the study
    asset takes them; returns (data, description)."""
    import dagster as dg

    from ml_assets.contract.dagster_terms import asset_key
    from ml_assets.modeling.layer import SPLIT_COLUMN

    declared = declaration(pipeline)
    model = declared.model
    began = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:
        build_data(pipeline, built.keys(pipeline), instance)
        result = run_job(
            f"{declared.prefix}_model",
            instance,
            {"ops": {op(declared, "training_set"): {"config": built.training_config()}}},
            asset_selection=[asset_key(declared, "training_set")],
        )
    frame = result.output_for_node(op(declared, "training_set"))
    # exactly as the hyperparameter_study asset: seeded train sample + all validation rows
    rows = model.tuning.sample_rows
    train = frame[frame[SPLIT_COLUMN] == "train"]
    sample = train.sample(n=min(len(train), rows), random_state=model.tuning.seed)
    data = pd.concat([sample, frame[frame[SPLIT_COLUMN] == "validation"]])
    data = data[[*model.features, model.target, SPLIT_COLUMN]]
    counts = data[SPLIT_COLUMN].value_counts()
    description = (
        f"{pipeline} features {built.first}…{built.last} built in "
        f"{time.perf_counter() - began:.1f} s; tuning data: {counts.get('train', 0)} train rows "
        f"(sample of {len(train)}, tuning sample_rows {rows}) + "
        f"{counts.get('validation', 0)} validation rows "
        f"({built.validation_partitions} partitions); objective {model.objective_metric}"
    )
    return data, description


def _units(trial: "optuna.trial.FrozenTrial") -> tuple[str, float]:
    """The trial's family and what it fitted: iterations or trees, or 1 for a single fit."""
    from ml_assets.modeling.estimators import STAGES
    from ml_assets.modeling.trials import best_configuration

    family, params = best_configuration(trial.params)
    stages = max(len(trial.intermediate_values), 1)
    size = params.get(SIZE_PARAM.get(family, ""), None)
    return family, (stages * size / STAGES) if size else float(stages)


def run_once(
    pipeline: str,
    workers: int,
    trials: int,
    timeout_s: float,
    data: pd.DataFrame,
    home: Path,
    storage: str | None = None,
) -> RunResult:
    """A fresh study of ``trials`` trials with ``workers`` workers, on ``storage`` (default:
    a journal file of its own)."""
    import optuna

    from ml_assets.contract.model_format import Features
    from ml_assets.modeling.study import run_study
    from ml_assets.modeling.trials import StudySettings

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    model = declaration(pipeline).model
    tuning = model.tuning
    run_dir = home / f"study-{workers}w-{time.time_ns()}"
    settings = StudySettings(
        study_name=f"tuning-benchmark-{pipeline}-{workers}w-{time.time_ns()}",
        storage=storage or str(run_dir / "study.journal"),
        n_trials=trials,
        timeout_seconds=timeout_s,
        workers=workers,
        seed=tuning.seed,
        n_startup_trials=tuning.pruner_startup_trials,
        n_warmup_steps=tuning.pruner_warmup_steps,
    )
    cpu_before, called_at = _cpu_s(), time.time()
    began = time.perf_counter()
    study, numbers = run_study(
        settings,
        model.search_space,
        Features(categorical=model.categorical, numeric=model.numeric),
        data,
        model.target,
        model.task,
        model.objective_metric,
        scratch=run_dir / "scratch",
    )
    wall = time.perf_counter() - began
    cpu = _cpu_s() - cpu_before
    this_call = set(numbers)
    ran = [t for t in study.trials if t.number in this_call]
    state = optuna.trial.TrialState
    finished = [t for t in ran if t.datetime_start and t.datetime_complete]
    starts = sorted(t.datetime_start.timestamp() for t in finished)
    result = RunResult(
        workers=workers,
        study_name=settings.study_name,
        wall_s=wall,
        cpu_s=cpu,
        startup_s=(starts[min(workers, len(starts)) - 1] - called_at) if starts else math.nan,
        trial_s=sum(t.duration.total_seconds() for t in finished),
        completed=sum(t.state == state.COMPLETE for t in ran),
        pruned=sum(t.state == state.PRUNED for t in ran),
        failed=sum(t.state == state.FAIL for t in ran),
        best_value=study.best_value if any(t.state == state.COMPLETE for t in ran) else math.nan,
    )
    for trial in finished:
        if trial.state not in (state.COMPLETE, state.PRUNED):
            continue
        family, units = _units(trial)
        result.families[family] += 1
        result.pruned_families[family] += trial.state == state.PRUNED
        result.work[family] = result.work.get(family, 0.0) + units
        result.seconds[family] = result.seconds.get(family, 0.0) + trial.duration.total_seconds()
    return result


def work_equivalent_s(run: RunResult, reference: RunResult) -> float:
    """Seconds ``run``'s trials would take at ``reference``'s per-family cost per unit fitted
    (a family the reference never tried: its mean trial seconds per trial)."""
    per_trial = sum(reference.seconds.values()) / max(reference.finished, 1)
    return sum(
        units * reference.seconds[f] / reference.work[f]
        if reference.work.get(f)
        else run.families[f] * per_trial
        for f, units in run.work.items()
    )


def print_report(runs: list[RunResult], metric: str) -> None:
    header = (
        "workers", "wall s", "done/pruned", "trials/min", f"best val {metric}", "CPU s",
        "cores busy", "start-up s", "utilization", "family mix (p = pruned)",
    )  # fmt: skip
    rows = [
        (
            r.workers,
            f"{r.wall_s:.1f}",
            f"{r.completed}/{r.pruned}" + (f" +{r.failed} failed" if r.failed else ""),
            f"{r.per_minute:.2f}",
            f"{r.best_value:.4f}",
            f"{r.cpu_s:.1f}",
            f"{r.cpu_s / r.wall_s:.2f}",
            f"{r.startup_s:.1f}",
            f"{r.trial_s / (r.wall_s * r.workers):.0%}",
            r.mix(),
        )
        for r in runs
    ]
    print(f"\n{table(header, rows, disable_numparse=True)}")
    print("\nper family: trials, mean trial s, ms per unit fitted (unit: iteration / tree / fit)")
    for r in runs:
        parts = [
            f"{SHORT.get(f, f)} {r.families[f]}, {r.seconds[f] / r.families[f]:.1f} s, "
            f"{1000 * r.seconds[f] / r.work[f]:.1f} ms/unit"
            for f in sorted(r.families)
        ]
        print(f"  {r.workers} worker(s): " + "; ".join(parts))
    reference = runs[0]
    print()
    for r in runs[1:]:
        adjusted = (work_equivalent_s(r, reference) / r.wall_s) / (
            work_equivalent_s(reference, reference) / reference.wall_s
        )
        label = f"speedup {r.workers} vs {reference.workers} worker(s), trials/min"
        speedup = r.per_minute / reference.per_minute
        print(
            target(label, speedup, SPEEDUP_TARGET, False, f"{SPEEDUP_TARGET:g}")
            + f"; work-adjusted: {adjusted:.2f}"
        )


def check_runs(runs: list[RunResult], trials: int, checks: Checks) -> None:
    for r in runs:
        checks.require(not r.failed, f"{r.workers} worker(s): {r.failed} trials failed")
        checks.require(
            r.finished + r.failed == trials,
            f"{r.workers} worker(s) ran {r.finished + r.failed} trials, budget {trials}",
        )
        checks.require(math.isfinite(r.best_value), f"{r.workers} worker(s): no best value")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", choices=pipeline_names(), default=DEFAULT_PIPELINE)
    parser.add_argument("--quick", action="store_true", help="small window, 4 trials (tests)")
    parser.add_argument("--end", type=date.fromisoformat, help="last partition (default: per mode)")
    parser.add_argument("--trials", type=int, help="trial budget of every run (16; quick 4)")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="worker counts, first = reference"
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="study timeout, seconds")
    parser.add_argument("--validation-partitions", type=int, help="default: per mode")
    parser.add_argument("--test-partitions", type=int, help="default: per mode")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    args = parser.parse_args()
    trials = args.trials or (4 if args.quick else 16)

    with benchmark_home("ml_assets_tuning_", args.keep) as home:
        enter_home(home)
        chosen = window(args.pipeline, args.quick, WINDOWS)
        built = replace(
            chosen,
            last=args.end.isoformat() if args.end else chosen.last,
            validation_partitions=args.validation_partitions or chosen.validation_partitions,
            test_partitions=args.test_partitions or chosen.test_partitions,
        )
        data, description = build_tuning_data(args.pipeline, built)
        print(f"home {home}\n{description}")
        omp = os.environ.get("OMP_NUM_THREADS", "unset")
        print(f"{os.cpu_count()} CPUs; OMP_NUM_THREADS {omp}; budget {trials} trials")
        print(f"load average before: {load_average()}")
        if note := bytecode_note():
            print(note)
        runs = []
        for workers in args.workers:
            run = run_once(args.pipeline, workers, trials, args.timeout, data, home)
            runs.append(run)
            print(
                f"  {workers} worker(s): {run.wall_s:.1f} s, {run.finished} trials, "
                f"best {run.best_value:.4f}",
                flush=True,
            )
        print(f"load average after: {load_average()}")
        print_report(runs, declaration(args.pipeline).model.objective_metric)
        if args.quick:
            print("(quick mode: the target is reported, never a failure)")
        checks = Checks()
        check_runs(runs, trials, checks)
        return checks.report()


if __name__ == "__main__":
    sys.exit(main())
