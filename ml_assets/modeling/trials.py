"""One worker's share of an Optuna study over a declared search space: the study's settings
and storage, the objective of a trial and the worker's loop (``work``), which runs the same in
this process, in a spawned worker process or as a Celery task
(``ml_assets.modeling.distributed_study``).

The search space is the declared list of model families; each trial picks a family, then that
family's parameters, fits it in stages on the training sample and reports the validation
objective (a metric of the task, minimised or maximised as the metric says) after each stage so
the pruner can stop hopeless trials early.
"""

import contextlib
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ml_assets.contract.model_format import Features, scores
from ml_assets.contract.search_space import FamilySpace
from ml_assets.contract.tasks import METRICS, Task
from ml_assets.modeling.estimators import build_pipeline, staged_fits
from ml_assets.modeling.folds import windows
from ml_assets.modeling.metrics import metric_value

Direction = Literal["minimize", "maximize"]
FOLD_VALUES = "fold_values"
"""A cross-validated trial's user attribute: its validation metric on each fold, in order."""


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


def load_or_create(settings: StudySettings, direction: Direction, worker: int = 0):
    """The study named in ``settings``, created on first use (optimising in ``direction``),
    with a seeded TPE sampler."""
    import optuna

    return optuna.create_study(
        study_name=settings.study_name,
        storage=open_storage(settings.storage),
        direction=direction,
        load_if_exists=True,
        # each worker gets its own seed: identical seeds would propose identical trials
        sampler=optuna.samplers.TPESampler(seed=settings.seed + worker),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=settings.n_startup_trials, n_warmup_steps=settings.n_warmup_steps
        ),
    )


def suggest(trial, space: list[FamilySpace]) -> tuple[str, dict[str, Any]]:
    """Pick a model family and its parameters from ``space`` for ``trial``."""
    families = {declared.family: declared for declared in space}
    family = trial.suggest_categorical("family", sorted(families))
    params = {}
    for name, param in families[family].params().items():
        label = f"{family}.{name}"  # families' parameters are distinct Optuna parameters
        if param.type == "float":
            params[name] = trial.suggest_float(label, param.low, param.high, log=param.log)
        elif param.type == "int":
            params[name] = trial.suggest_int(
                label, param.low, param.high, step=param.step, log=param.log
            )
        else:
            params[name] = trial.suggest_categorical(label, param.choices)
    return family, params


def best_configuration(params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Split a trial's flat Optuna parameters back into (family, family parameters)."""
    family = params["family"]
    prefix = f"{family}."
    return family, {k.removeprefix(prefix): v for k, v in params.items() if k.startswith(prefix)}


def objective(
    trial,
    space: list[FamilySpace],
    features: Features,
    data: pd.DataFrame,
    target: str,
    task: Task,
    metric: str,
) -> float:
    """Validation ``metric`` of the trial's model: on the one split, reported after every
    fitting stage; or the mean over the rolling folds (``folds.windows``), the running
    mean reported after each fold, each fold's value kept in the trial's user attribute
    ``fold_values``."""
    import optuna

    family, params = suggest(trial, space)
    scored, columns = windows(data), features.columns
    values: list[float] = []
    for number, window in enumerate(scored):
        train, valid = data[data[window] == "train"], data[data[window] == "validation"]
        pipeline = build_pipeline(family, params, features, task)
        if len(scored) == 1:
            for stage in staged_fits(family, pipeline, train[columns], train[target]):
                score = metric_value(metric, valid[target], scores(pipeline, valid[columns], task))
                trial.report(score, stage)
                if trial.should_prune():
                    raise optuna.TrialPruned()
            return score
        pipeline.fit(train[columns], train[target])
        values.append(metric_value(metric, valid[target], scores(pipeline, valid[columns], task)))
        trial.set_user_attr(FOLD_VALUES, values)
        trial.report(float(np.mean(values)), number)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return float(np.mean(values))


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


def work(
    settings: StudySettings,
    worker: int,
    space: list[FamilySpace],
    features: Features,
    data: str | bytes,
    target: str,
    task: Task,
    metric: str,
    trials: int,
) -> None:
    """Worker number ``worker``'s share of the study: ``trials`` trials on ``data`` (a Parquet
    file's path, or its bytes)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    frame = pd.read_parquet(data if isinstance(data, str) else io.BytesIO(data))
    study = load_or_create(settings, METRICS[task][metric], worker)
    with worker_thread_limit(settings.workers):
        study.optimize(
            lambda trial: objective(trial, space, features, frame, target, task, metric),
            n_trials=trials,
            timeout=settings.timeout_seconds,
            catch=(ValueError,),
        )
