"""The Celery app of the platform's step workers: ``ml-assets worker`` runs it.

dagster-celery's task (``execute_plan``) on the broker at ``$ML_ASSETS_CELERY_BROKER_URL``.
A task is acknowledged only once its step finished and is given back to the queue when its
worker dies (``task_acks_late``, ``task_reject_on_worker_lost``), and a worker takes one task
at a time, so a step of a killed worker is run by another; the run's ``RetryPolicy`` lets
Dagster re-execute it in the same run. The workers also run the shares of Optuna studies
(``study_share``).

A task given back while its first worker still runs it (the broker restarted, so that
worker's acknowledgement had nowhere to go) must not run the step a second time: every task
holds a PostgreSQL advisory lock named by its id from before it starts until its result is
stored (``OncePerTask``). The second delivery waits for the first to finish and returns its
stored result; the lock of a worker that died goes with its connection
(``ml_assets.advisory_locks``), so its task runs again. A task that cannot reach PostgreSQL
to take its lock goes back to the queue.
"""

import contextlib
import os
from typing import TYPE_CHECKING, Any

from celery import Task, states
from celery.exceptions import Reject
from dagster_celery.tasks import create_task
from sqlalchemy.exc import OperationalError

from ml_assets.advisory_locks import session_lock
from ml_assets.executor import celery_app
from ml_assets.instance import POSTGRES_ENV_VAR
from ml_assets.modeling.distributed_study import STUDY_SHARE_TASK, run_share

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


class OncePerTask(Task):
    """A task not run again once it succeeded, nor while another delivery of it runs."""

    _lock: "Connection | None" = None

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        url = os.environ.get(POSTGRES_ENV_VAR)
        if not url:
            return
        try:
            self._lock = session_lock(url, f"celery-task:{task_id}")
        except OperationalError as error:  # the database is restarting: try again later
            raise Reject(error, requeue=True) from error

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._lock is not None:  # results are in PostgreSQL: look before running
            done = self.backend.get_task_meta(self.request.id)
            if done["status"] == states.SUCCESS:  # a delivery before this one ran it
                return done["result"]
        return super().__call__(*args, **kwargs)

    def after_return(self, *args: Any, **kwargs: Any) -> None:  # after the result is stored
        lock, self._lock = self._lock, None
        if lock is not None:
            with contextlib.suppress(Exception):  # a lost connection released it already
                lock.close()


app = celery_app()
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
execute_plan = create_task(app, base=OncePerTask)


@app.task(name=STUDY_SHARE_TASK, bind=True)
def study_share(self: Task, payload: dict[str, Any]) -> bool:
    """A worker's share of an Optuna study (``ml_assets.modeling.distributed_study``)."""
    return run_share(payload, self.request.hostname)
