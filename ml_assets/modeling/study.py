"""Optuna hyperparameter studies across parallel workers: ``run_study`` splits the trial budget
into one share per worker and runs the shares (``ml_assets.modeling.trials.work``) in this
process, in spawned worker processes, or, when steps run on Celery and the storage is a URL,
as Celery tasks for the step workers (``ml_assets.modeling.distributed_study``). Workers share
one study through its storage: a journal file locally, any Optuna storage URL (e.g.
PostgreSQL) in production.
"""

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pandas as pd

from ml_assets.contract.model_format import Features
from ml_assets.contract.search_space import FamilySpace
from ml_assets.contract.tasks import METRICS, Task
from ml_assets.modeling.trials import Direction, StudySettings, load_or_create, work


def run_study(
    settings: StudySettings,
    space: list[FamilySpace],
    features: Features,
    data: pd.DataFrame,
    target: str,
    task: Task,
    objective: str,
    scratch: Path,
):
    """Run ``settings.n_trials`` more trials on the study, across ``settings.workers`` processes,
    optimising the validation metric ``objective`` of ``task``.

    ``data`` labels its rows ``train`` and ``validation`` in column ``split``, or in one
    column per rolling fold (``folds.fold_columns``). Returns the study and the numbers
    of the trials this call ran.
    """
    from ml_assets.executor import on_celery  # here: spawned workers need none of it

    direction = METRICS[task][objective]
    study = load_or_create(settings, direction)
    _check_objective(study, objective, direction)
    before = len(study.trials)
    # Each worker runs its own share: a shared stop condition is only checked after a trial
    # ends, so a worker that starts late would run one trial past the budget.
    shares = [
        settings.n_trials // settings.workers + (w < settings.n_trials % settings.workers)
        for w in range(max(settings.workers, 1))
    ]
    work_args = (space, features, data, target, task, objective)
    if settings.workers > 1 and on_celery() and "://" in settings.storage:
        from ml_assets.modeling.distributed_study import run_shares

        run_shares(settings, shares, *work_args)
    else:
        _run_here(settings, shares, *work_args, scratch=scratch)
    study = load_or_create(settings, direction)
    return study, [t.number for t in study.trials if t.number >= before]


def _run_here(
    settings: StudySettings,
    shares: list[int],
    space: list[FamilySpace],
    features: Features,
    data: pd.DataFrame,
    target: str,
    task: Task,
    objective: str,
    scratch: Path,
) -> None:
    """The shares in this process, or in worker processes of this machine (spawned)."""
    scratch.mkdir(parents=True, exist_ok=True)
    data_path = scratch / f"{settings.study_name}-{os.getpid()}.parquet"
    data.to_parquet(data_path)
    try:
        args = (space, features, str(data_path), target, task, objective)
        if settings.workers <= 1:
            work(settings, 0, *args, settings.n_trials)
        else:
            # spawn: a clean interpreter per worker, never a fork of a threaded step process
            with ProcessPoolExecutor(settings.workers, mp_context=get_context("spawn")) as pool:
                futures = [
                    pool.submit(work, settings, w, *args, shares[w])
                    for w in range(settings.workers)
                    if shares[w]
                ]
                for future in futures:
                    future.result()
    finally:
        data_path.unlink(missing_ok=True)


def _check_objective(study, objective: str, direction: Direction) -> None:
    """Record the study's objective on first use; refuse to resume it on another one.

    Optuna loads an existing study whatever direction it is asked for, so trials scored on
    another metric or in the other direction would silently mix with this run's.
    """
    recorded = study.user_attrs.get("objective", objective)
    found = study.direction.name.lower()
    if (recorded, found) != (objective, direction):
        raise ValueError(
            f"study {study.study_name!r} optimises {recorded} ({found}), not {objective} "
            f"({direction}): start a new study (tuning.resume: false)"
        )
    study.set_user_attr("objective", objective)
