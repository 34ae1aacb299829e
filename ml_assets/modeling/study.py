"""Optuna hyperparameter studies over a declared search space, with parallel worker processes.

The search space is data (``{family: {param: spec}}``); each trial picks a family, then that
family's parameters, fits it in stages on the training sample and reports the validation MAE
after each stage so the pruner can stop hopeless trials early. Workers are separate processes
sharing one study through its storage: a journal file locally, any Optuna storage URL (e.g.
PostgreSQL) in production.
"""

import contextlib
import os
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pandas as pd

from ml_assets.modeling.estimators import Features, build_pipeline, staged_fits

SearchSpace = Mapping[str, Mapping[str, Mapping[str, Any]]]


@dataclass(frozen=True)
class StudySettings:
    """How to run a study: where it lives, its budget and its randomness."""

    study_name: str
    storage: str
    """A journal file path, or an Optuna storage URL such as ``postgresql://...``."""
    n_trials: int
    timeout_seconds: float
    workers: int
    seed: int
    n_startup_trials: int = 4
    n_warmup_steps: int = 1


def open_storage(storage: str):
    """The Optuna storage for ``storage``: a URL as is, anything else a journal file path."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if "://" in storage:
        return storage
    Path(storage).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(storage))


def load_or_create(settings: StudySettings, worker: int = 0):
    """The study named in ``settings``, created on first use, with a seeded TPE sampler."""
    import optuna

    return optuna.create_study(
        study_name=settings.study_name,
        storage=open_storage(settings.storage),
        direction="minimize",
        load_if_exists=True,
        # each worker gets its own seed: identical seeds would propose identical trials
        sampler=optuna.samplers.TPESampler(seed=settings.seed + worker),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=settings.n_startup_trials, n_warmup_steps=settings.n_warmup_steps
        ),
    )


def suggest(trial, space: SearchSpace) -> tuple[str, dict[str, Any]]:
    """Pick a model family and its parameters from ``space`` for ``trial``."""
    family = trial.suggest_categorical("family", sorted(space))
    params = {}
    for name, spec in space[family].items():
        label = f"{family}.{name}"  # families' parameters are distinct Optuna parameters
        kind = spec["type"]
        if kind == "float":
            params[name] = trial.suggest_float(
                label, spec["low"], spec["high"], log=spec.get("log", False)
            )
        elif kind == "int":
            params[name] = trial.suggest_int(
                label,
                spec["low"],
                spec["high"],
                step=spec.get("step", 1),
                log=spec.get("log", False),
            )
        elif kind == "categorical":
            params[name] = trial.suggest_categorical(label, spec["choices"])
        else:
            raise ValueError(f"{label}: unknown parameter type {kind!r}")
    return family, params


def best_configuration(params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Split a trial's flat Optuna parameters back into (family, family parameters)."""
    family = params["family"]
    prefix = f"{family}."
    return family, {k.removeprefix(prefix): v for k, v in params.items() if k.startswith(prefix)}


def objective(trial, space: SearchSpace, features: Features, data: pd.DataFrame, target: str):
    """Validation MAE of the trial's model, reported after every fitting stage."""
    import optuna
    from sklearn.metrics import mean_absolute_error

    family, params = suggest(trial, space)
    train, valid = data[data["split"] == "train"], data[data["split"] == "validation"]
    columns = [*features.categorical, *features.numeric]
    pipeline = build_pipeline(family, params, features)
    score = float("nan")
    for stage in staged_fits(family, pipeline, train[columns], train[target]):
        score = mean_absolute_error(valid[target], pipeline.predict(valid[columns]))
        trial.report(score, stage)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return score


def worker_thread_limit(workers: int):
    """A context limiting each of ``workers`` processes' native thread pools (OpenMP in
    HistGradientBoosting, BLAS) to its share of the cores; no limit for a single worker.

    Without it every worker's pools size themselves to all cores, so two workers on two cores
    run four busy threads and the spinning OpenMP threads slow each other down severely.
    """
    if workers <= 1:
        return contextlib.nullcontext()
    import sklearn.ensemble  # noqa: F401  threadpoolctl limits only the runtimes already loaded
    from threadpoolctl import threadpool_limits

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return threadpool_limits(limits=max(1, (cores or 1) // workers))


def _work(
    settings: StudySettings,
    worker: int,
    space: SearchSpace,
    features: Features,
    data_path: str,
    target: str,
    trials: int,
) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = pd.read_parquet(data_path)
    study = load_or_create(settings, worker)
    with worker_thread_limit(settings.workers):
        study.optimize(
            lambda trial: objective(trial, space, features, data, target),
            n_trials=trials,
            timeout=settings.timeout_seconds,
            catch=(ValueError,),
        )


def run_study(
    settings: StudySettings,
    space: SearchSpace,
    features: Features,
    data: pd.DataFrame,
    target: str,
    scratch: Path,
):
    """Run ``settings.n_trials`` more trials on the study, across ``settings.workers`` processes.

    ``data`` holds ``train`` and ``validation`` rows (column ``split``). Returns the study and
    the numbers of the trials this call ran.
    """
    study = load_or_create(settings)
    before = len(study.trials)
    # Each worker runs its own share: a shared stop condition is only checked after a trial
    # ends, so a worker that starts late would run one trial past the budget.
    shares = [
        settings.n_trials // settings.workers + (w < settings.n_trials % settings.workers)
        for w in range(max(settings.workers, 1))
    ]
    scratch.mkdir(parents=True, exist_ok=True)
    data_path = scratch / f"{settings.study_name}-{os.getpid()}.parquet"
    data.to_parquet(data_path)
    try:
        if settings.workers <= 1:
            _work(settings, 0, space, features, str(data_path), target, settings.n_trials)
        else:
            # spawn: a clean interpreter per worker, never a fork of a threaded step process
            with ProcessPoolExecutor(settings.workers, mp_context=get_context("spawn")) as pool:
                futures = [
                    pool.submit(
                        _work, settings, w, space, features, str(data_path), target, shares[w]
                    )
                    for w in range(settings.workers)
                    if shares[w]
                ]
                for future in futures:
                    future.result()
    finally:
        data_path.unlink(missing_ok=True)
    study = load_or_create(settings)
    return study, [t.number for t in study.trials if t.number >= before]
