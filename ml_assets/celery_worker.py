"""The Celery app of the platform's step workers: ``ml-assets worker`` runs it.

dagster-celery's task (``execute_plan``) on the broker at ``$ML_ASSETS_CELERY_BROKER_URL``.
A task is acknowledged only once its step finished and is given back to the queue when its
worker dies (``task_acks_late``, ``task_reject_on_worker_lost``), and a worker takes one task
at a time, so a step of a killed worker is run by another; the run's ``RetryPolicy`` lets
Dagster re-execute it in the same run.
"""

from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from ml_assets.executor import broker_url

app = make_app({"broker": broker_url(), "backend": "rpc://"})
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
execute_plan = create_task(app)
