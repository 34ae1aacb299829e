"""The platform's executor: Dagster's, with step processes forked from a forkserver; or, with
``ML_ASSETS_EXECUTOR=celery``, dagster-celery's, every step a task for the Celery workers
(``ml-assets worker``, ``ml_assets.celery_worker``) on the broker at
``$ML_ASSETS_CELERY_BROKER_URL``.

Dagster's default executor runs each step in a freshly *spawned* process that imports the code
location again (pandas, Pandera, Dagster: ~2.5 s, more while other steps compete for the CPU).
With ``forkserver``, one server process per run imports the code location once and each step
process is forked from it. Dagster would preload the job's module by itself only for a job
loaded through a plain module pointer, which neither the CLI's ``-m`` nor a workspace gives, so
the module is named here. A run can still choose ``in_process`` or set its own
``multiprocess`` options, ``start_method`` included.

In the forkserver, the heap the preload built is frozen before each fork
(``ml_assets.instance.forking.freeze_heap_before_forks``), so the step processes share its
pages instead of copying them: the run's memory is that of one code location plus each step's
own data.
"""

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg

from ml_assets.instance.forking import freeze_heap_before_forks

CODE_LOCATION = "ml_assets.definitions"
FORKSERVER = {"forkserver": {"preload_modules": [CODE_LOCATION]}}

freeze_heap_before_forks()  # imported by the code location, so in the forkserver's preload


def _forkserver_unless_chosen(config: Mapping[str, Any]) -> Mapping[str, Any]:
    if "multiprocess" in config:
        return {"multiprocess": {"start_method": FORKSERVER, **config["multiprocess"]}}
    return config


forkserver_or_in_process_executor = dg.multi_or_in_process_executor.configured(
    _forkserver_unless_chosen,
    name="forkserver_or_in_process_executor",
    config_schema=dg.multi_or_in_process_executor.config_schema.as_field(),
)


EXECUTOR_ENV_VAR = "ML_ASSETS_EXECUTOR"
BROKER_ENV_VAR = "ML_ASSETS_CELERY_BROKER_URL"
DEFAULT_BROKER = "pyamqp://guest@127.0.0.1:5672//"
STEP_RETRIES = 2
"""A step whose worker died is run again on another (``RetryPolicy`` of every step)."""


def on_celery() -> bool:
    return os.environ.get(EXECUTOR_ENV_VAR, "").lower() == "celery"


def broker_url() -> str:
    return os.environ.get(BROKER_ENV_VAR) or DEFAULT_BROKER


def platform_executor() -> dg.ExecutorDefinition:
    """The executor the environment asks for (see the module's docstring)."""
    if not on_celery():
        return forkserver_or_in_process_executor
    from dagster_celery import celery_executor

    return celery_executor.configured(
        {"broker": {"env": BROKER_ENV_VAR} if os.environ.get(BROKER_ENV_VAR) else DEFAULT_BROKER,
         "backend": "rpc://", "retries": {"enabled": {}}},
        name="celery_executor",
    )  # fmt: skip


def one_step_run_config() -> dict[str, Any]:
    """Run config of runs that gain nothing from step processes: in process, except on Celery,
    where every step is a worker's."""
    return {} if on_celery() else {"execution": {"config": {"in_process": {}}}}
