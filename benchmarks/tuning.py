"""Hyperparameter tuning throughput: the same trial budget with 1 and with 2 parallel workers.

Run as ``.venv/bin/python benchmarks/tuning.py`` from the project root. On a temporary
``$ML_ASSETS_HOME`` it lands 2013-01-01 … ``--end`` with the publisher, materializes the flights
data layers over that range with ``dg.materialize`` (reference tables first), then the model
layer's ``training_set`` asset (window and split from ``model.yaml``), and takes the tuning data
exactly as the ``hyperparameter_study`` asset does: a seeded sample of ``tuning_sample_rows``
train rows plus all validation rows. It then runs ``ml_assets.modeling.study.run_study`` (the
function the asset calls) once per worker count, each into a fresh study (its own journal file)
with the same seed, search space, pruner and budget.

Fairness: each worker samples with its own seed (``seed + worker``), so the runs do not propose
the same trials, and the family mix (a ridge trial takes well under a second, a large random
forest many seconds) and the pruning differ. Besides the raw throughput (finished trials per
minute, the target), the table gives each run's family mix, and a *work-adjusted* speedup that
prices every trial by what it fitted: boosting iterations or trees actually fitted (stages
reported * size / stages), or one fit for ridge, at the per-family cost measured in the first
(1-worker) run. It says how much faster the same *work* went, whatever the trials were. The
1-worker run is reproducible (same trials, same best MAE every time); the parallel run's
proposals also depend on which trials happen to finish first, so its mix varies between runs.

Also per run: CPU seconds of all processes and cores busy (CPU / wall; a single worker above
1.0 means multi-threaded fits), start-up (call → the start of trial number ``workers``, i.e.
about when the last worker got going: spawn, imports, reading the data) and worker utilization
(trial seconds / (wall * workers)). The in-process 1-worker run imports scikit-learn inside its
first trial, as the asset's step process does. Missing the speed target is reported, not an
error. The machine's load average is printed before and after: other work on the two cores
skews every figure, multi-threaded fits most of all.
"""

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    import optuna

PROJECT_ROOT = Path(__file__).resolve().parent.parent
START, END = date(2013, 1, 1), date(2013, 3, 31)
SPEEDUP_TARGET = 1.6
SHORT = {"hist_gradient_boosting": "hgb", "random_forest": "rf", "ridge": "ridge"}
SIZE_PARAM = {"hist_gradient_boosting": "max_iter", "random_forest": "n_estimators"}


@dataclass
class RunResult:
    """One ``run_study`` call: timings, trials and what they fitted."""

    workers: int
    wall_s: float
    cpu_s: float
    startup_s: float
    trial_s: float
    """Sum of the trials' own durations."""
    completed: int
    pruned: int
    failed: int
    best_mae: float
    families: Counter[str] = field(default_factory=Counter)
    pruned_families: Counter[str] = field(default_factory=Counter)
    work: dict[str, float] = field(default_factory=dict)
    """Per family: units fitted (iterations or trees; 1 per ridge fit)."""
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


def build_tuning_data(
    start: date, end: date, validation_days: int, test_days: int
) -> tuple[pd.DataFrame, str]:
    """Features for ``start``…``end`` through Dagster, then the tuning rows as the study asset
    takes them; returns (data, description)."""
    import dagster as dg

    from ml_assets.home import warehouse_url
    from ml_assets.modeling.assets import SPLIT_COLUMN
    from ml_assets.pipelines.flights.assets import data_assets, key
    from ml_assets.pipelines.flights.definitions import model_assets
    from ml_assets.pipelines.flights.model import FLIGHTS_MODEL
    from ml_assets.pipelines.flights.publish import publish
    from resources.landing_zone import default_landing_zone
    from resources.parquet_io_manager import ParquetIOManager

    began = time.perf_counter()
    publish(default_landing_zone(), start, end)
    resources = {
        "io_manager": ParquetIOManager(base_url=warehouse_url()),
        "landing_zone": default_landing_zone(),
    }
    reference = [key("planes"), key("airports"), key("airlines")]
    training_set = next(a for a in model_assets if key("training_set") in a.keys)
    settings = FLIGHTS_MODEL.settings
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    with dg.DagsterInstance.ephemeral() as instance:
        steps = [
            {"selection": reference},
            {
                "selection": dg.AssetSelection.groups("ingest", "clean", "features")
                - dg.AssetSelection.assets(*reference),
                "tags": {
                    "dagster/asset_partition_range_start": start.isoformat(),
                    "dagster/asset_partition_range_end": end.isoformat(),
                },
            },
        ]
        for step in steps:
            assert dg.materialize(
                data_assets, run_config=quiet, resources=resources, instance=instance, **step
            ).success
        result = dg.materialize(
            [*data_assets, training_set],
            selection=[key("training_set")],
            run_config={
                **quiet,
                "ops": {
                    "flights__training_set": {
                        "config": {
                            "window_start": settings["training"]["window_start"],
                            "window_end": end.isoformat(),
                            "validation_days": validation_days,
                            "test_days": test_days,
                        }
                    }
                },
            },
            resources=resources,
            instance=instance,
        )
    frame = result.output_for_node("flights__training_set")
    # exactly as the hyperparameter_study asset: seeded train sample + all validation rows
    seed = settings["tuning"]["seed"]
    train = frame[frame[SPLIT_COLUMN] == "train"]
    sample = train.sample(
        n=min(len(train), settings["training"]["tuning_sample_rows"]), random_state=seed
    )
    data = pd.concat([sample, frame[frame[SPLIT_COLUMN] == "validation"]])
    data = data[[*FLIGHTS_MODEL.columns, FLIGHTS_MODEL.target, SPLIT_COLUMN]]
    counts = data[SPLIT_COLUMN].value_counts()
    description = (
        f"features {start}…{end} built in {time.perf_counter() - began:.1f} s; tuning data: "
        f"{counts.get('train', 0)} train rows (sample of {len(train)}, "
        f"tuning_sample_rows {settings['training']['tuning_sample_rows']}) + "
        f"{counts.get('validation', 0)} validation rows ({validation_days} days)"
    )
    return data, description


def _units(trial: "optuna.trial.FrozenTrial") -> tuple[str, float]:
    """The trial's family and what it fitted: iterations or trees, or 1 for a single fit."""
    from ml_assets.modeling.estimators import STAGES
    from ml_assets.modeling.study import best_configuration

    family, params = best_configuration(trial.params)
    stages = max(len(trial.intermediate_values), 1)
    size = params.get(SIZE_PARAM.get(family, ""), None)
    return family, (stages * size / STAGES) if size else float(stages)


def run_once(
    workers: int, trials: int, timeout_s: float, data: pd.DataFrame, home: Path
) -> RunResult:
    """A fresh study (own journal file) of ``trials`` trials with ``workers`` processes."""
    import optuna

    from ml_assets.modeling.study import StudySettings, run_study
    from ml_assets.pipelines.flights.model import FLIGHTS_MODEL

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tuning = FLIGHTS_MODEL.settings["tuning"]
    run_dir = home / f"study-{workers}w-{time.time_ns()}"
    settings = StudySettings(
        study_name=f"tuning-benchmark-{workers}w",
        storage=str(run_dir / "study.journal"),
        n_trials=trials,
        timeout_seconds=timeout_s,
        workers=workers,
        seed=tuning["seed"],
        n_startup_trials=tuning["pruner"]["n_startup_trials"],
        n_warmup_steps=tuning["pruner"]["n_warmup_steps"],
    )
    cpu_before, called_at = _cpu_s(), time.time()
    began = time.perf_counter()
    study, numbers = run_study(
        settings,
        FLIGHTS_MODEL.settings["search_space"],
        FLIGHTS_MODEL.features,
        data,
        FLIGHTS_MODEL.target,
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
        wall_s=wall,
        cpu_s=cpu,
        startup_s=(starts[min(workers, len(starts)) - 1] - called_at) if starts else float("nan"),
        trial_s=sum(t.duration.total_seconds() for t in finished),
        completed=sum(t.state == state.COMPLETE for t in ran),
        pruned=sum(t.state == state.PRUNED for t in ran),
        failed=sum(t.state == state.FAIL for t in ran),
        best_mae=study.best_value,
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--start", type=date.fromisoformat, default=START)
    parser.add_argument("--end", type=date.fromisoformat, default=END)
    parser.add_argument("--trials", type=int, default=16, help="trial budget of every run")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="worker counts, first = reference"
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="study timeout, seconds")
    parser.add_argument("--validation-days", type=int, help="default: model.yaml")
    parser.add_argument("--test-days", type=int, help="default: model.yaml")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="ml_assets_tuning_"))
    os.environ.update(ML_ASSETS_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
    for variable in ("ML_ASSETS_LANDING_URL", "ML_ASSETS_WAREHOUSE_URL", "MLFLOW_TRACKING_URI"):
        os.environ.pop(variable, None)
    sys.path.insert(0, str(PROJECT_ROOT))
    from ml_assets.pipelines.flights.model import FLIGHTS_MODEL

    training = FLIGHTS_MODEL.settings["training"]
    try:
        data, description = build_tuning_data(
            args.start,
            args.end,
            args.validation_days or training["validation_days"],
            args.test_days or training["test_days"],
        )
        print(f"home {home}\n{description}")
        omp = os.environ.get("OMP_NUM_THREADS", "unset")
        print(f"{os.cpu_count()} CPUs; OMP_NUM_THREADS {omp}; budget {args.trials} trials")
        print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
        runs = []
        for workers in args.workers:
            run = run_once(workers, args.trials, args.timeout, data, home)
            runs.append(run)
            print(
                f"  {workers} worker(s): {run.wall_s:.1f} s, {run.finished} trials, "
                f"best MAE {run.best_mae:.3f}",
                flush=True,
            )
        print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))

        reference = runs[0]
        header = (
            "workers", "wall s", "done/pruned", "trials/min", "best val MAE", "CPU s",
            "cores busy", "start-up s", "utilization", "family mix (p = pruned)",
        )  # fmt: skip
        rows = [
            (
                str(r.workers),
                f"{r.wall_s:.1f}",
                f"{r.completed}/{r.pruned}" + (f" +{r.failed} failed" if r.failed else ""),
                f"{r.per_minute:.2f}",
                f"{r.best_mae:.3f}",
                f"{r.cpu_s:.1f}",
                f"{r.cpu_s / r.wall_s:.2f}",
                f"{r.startup_s:.1f}",
                f"{r.trial_s / (r.wall_s * r.workers):.0%}",
                r.mix(),
            )
            for r in runs
        ]
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
        print()
        for row in (header, *rows):
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))

        print(
            "\nper family: trials, mean trial s, ms per unit fitted (unit: iteration / tree / fit)"
        )
        for r in runs:
            parts = [
                f"{SHORT.get(f, f)} {r.families[f]}, {r.seconds[f] / r.families[f]:.1f} s, "
                f"{1000 * r.seconds[f] / r.work[f]:.1f} ms/unit"
                for f in sorted(r.families)
            ]
            print(f"  {r.workers} worker(s): " + "; ".join(parts))

        print()
        for r in runs[1:]:
            speedup = r.per_minute / reference.per_minute
            adjusted = (work_equivalent_s(r, reference) / r.wall_s) / (
                work_equivalent_s(reference, reference) / reference.wall_s
            )
            met = "met" if speedup >= SPEEDUP_TARGET else "NOT met"
            print(
                f"speedup {r.workers} vs {reference.workers} worker(s), trials/min: "
                f"{speedup:.2f} (target ≥ {SPEEDUP_TARGET:g}: {met}); "
                f"work-adjusted: {adjusted:.2f}"
            )
        return 0
    finally:
        if args.keep:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
