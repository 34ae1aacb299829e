"""The platform's executor: Dagster's, with step processes forked from a forkserver; or, with
``ML_ASSETS_EXECUTOR=celery``, dagster-celery's, every step a task for the Celery workers
(``ml-assets worker``, ``ml_assets.celery_worker``) on the broker at
``$ML_ASSETS_CELERY_BROKER_URL``.

On Celery, a step's result (its events) is stored in the instance's PostgreSQL, not sent back
over the broker (``rpc://``), so a broker restart loses no result; a task submitted while the
broker is down is published again for about a minute, and storing or reading a result while
the database restarts is retried for up to about fifty seconds, before either fails.

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
from typing import TYPE_CHECKING, Any

import dagster as dg

from ml_assets.instance import POSTGRES_ENV_VAR
from ml_assets.instance.forking import freeze_heap_before_forks

if TYPE_CHECKING:
    from celery import Celery

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


CELERY_SETTINGS = {
    # publishing while the broker restarts: retried for about a minute, then an error
    "task_publish_retry_policy": {
        "max_retries": 30, "interval_start": 0.5, "interval_step": 0.5, "interval_max": 2,
    },
    # the result store (the database) while it restarts: up to ~50 s of jittered backoff
    "result_backend_always_retry": True,
    "result_backend_max_retries": 20,
    "result_backend_base_sleep_between_retries_ms": 200,
    "result_backend_max_sleep_between_retries_ms": 3000,
}  # fmt: skip
"""Settings of the Celery app on both sides: the run's executor and the workers."""


def result_backend() -> str:
    """Where Celery stores the steps' results: the instance's PostgreSQL (table
    ``celery_taskmeta``), else the broker's reply queues (``rpc://``, lost with the broker)."""
    postgres = os.environ.get(POSTGRES_ENV_VAR)
    return f"db+{postgres}" if postgres else "rpc://"


def celery_app() -> "Celery":
    """The platform's Celery app on the environment's broker and result store: the workers'
    (``ml_assets.celery_worker``), or a client's that sends them tasks."""
    from dagster_celery.make_app import make_app

    app = make_app({"broker": broker_url(), "backend": result_backend()})
    app.conf.update(CELERY_SETTINGS)
    return app


def platform_executor() -> dg.ExecutorDefinition:
    """The executor the environment asks for (see the module's docstring)."""
    if not on_celery():
        return forkserver_or_in_process_executor
    from dagster_celery import celery_executor

    return celery_executor.configured(
        {"broker": {"env": BROKER_ENV_VAR} if os.environ.get(BROKER_ENV_VAR) else DEFAULT_BROKER,
         "backend": result_backend(), "config_source": CELERY_SETTINGS,
         "retries": {"enabled": {}}},
        name="celery_executor",
    )  # fmt: skip


def one_step_run_config() -> dict[str, Any]:
    """Run config of runs that gain nothing from step processes: in process, except on Celery,
    where every step is a worker's."""
    return {} if on_celery() else {"execution": {"config": {"in_process": {}}}}


def steps_by_worker(instance: dg.DagsterInstance, run_id: str) -> dict[str, set[str]]:
    """Each step of a run on Celery and the names of the workers that started it (from
    dagster-celery's engine events; a step retried elsewhere has several)."""
    started: dict[str, set[str]] = {}
    for record in instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=100_000
    ).records:
        event = record.event_log_entry.dagster_event
        worker = (event.engine_event_data.metadata or {}).get("Celery worker")
        if worker is not None and event.step_key:
            started.setdefault(event.step_key, set()).add(str(worker.value).split("@")[0])
    return started
