"""MLflow tracking as a Dagster resource, with no MLflow run ever left RUNNING.

Each Dagster run has one MLflow run per experiment (tagged ``dagster_run_id``); every step that
logs resumes it, logs under it in nested runs of its own, and ends it before the step ends:
FINISHED, or FAILED if the step raised. A step can still fail after its code returned (a
blocking check that failed): when the resource is torn down it marks the MLflow runs it opened
FAILED if the Dagster run has a failed step. So however the run was launched
(``dg.materialize``, the UI, automation, the CLI), nothing stays RUNNING in MLflow and a failed
Dagster run is a failed MLflow run. (dagster-mlflow's resource is
an old-style beta resource that cannot be configured per run and ends its MLflow run only in a
job hook: dagster#15053, #21797.)
"""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr

DAGSTER_RUN_TAG = "dagster_run_id"
EXPERIMENT_ID_ENV_VAR = "MLFLOW_EXPERIMENT_ID"


@contextlib.contextmanager
def _active_experiment(experiment_id: str) -> Iterator[None]:
    """``experiment_id`` as MLflow's active experiment for the block, then the previous one.

    ``mlflow.start_run(nested=True)`` starts a nested run in the *active* experiment, not in
    its parent's (MLflow 3.x ``fluent.start_run``): without this the steps' nested runs (study,
    trials, trained model) land in the Default experiment, or in the experiment of whichever
    pipeline this process set last. MLflow keeps the active experiment in a module global and
    ``MLFLOW_EXPERIMENT_ID``; both are put back, so nothing leaks into later code.
    """
    import mlflow
    from mlflow.tracking import fluent

    saved = fluent._active_experiment_id, os.environ.get(EXPERIMENT_ID_ENV_VAR)
    mlflow.set_experiment(experiment_id=experiment_id)
    try:
        yield
    finally:
        fluent._active_experiment_id = saved[0]
        if saved[1] is None:
            os.environ.pop(EXPERIMENT_ID_ENV_VAR, None)
        else:
            os.environ[EXPERIMENT_ID_ENV_VAR] = saved[1]


class MlflowTracking(dg.ConfigurableResource):
    """The MLflow tracking server or store the platform logs to, and its model registry."""

    tracking_uri: str = Field(description="An MLflow server URL or a database URI.")
    _opened: set[str] = PrivateAttr(default_factory=set)
    """MLflow runs this process resumed or started for its Dagster run."""

    def use(self) -> None:
        """Point this process's MLflow client (tracking and registry) at the store."""
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)

    def experiment_id(self, name: str) -> str:
        """The experiment ``name``, created on first use (artifacts beside a local store)."""
        import mlflow

        self.use()
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = None
        if self.tracking_uri.startswith("sqlite:///"):
            folder = Path(self.tracking_uri.removeprefix("sqlite:///")).parent / "artifacts"
            folder.mkdir(parents=True, exist_ok=True)
            location = folder.as_uri()
        return mlflow.create_experiment(name, artifact_location=location)

    @contextlib.contextmanager
    def dagster_run(self, context: dg.AssetExecutionContext, experiment: str) -> Iterator[str]:
        """The Dagster run's MLflow run in ``experiment``, active for the block; yields its id.

        Ended when the block ends (FAILED if it raised), so no step leaves it RUNNING.
        """
        import mlflow

        experiment_id = self.experiment_id(experiment)
        run_id = context.run.run_id
        found = mlflow.search_runs(
            experiment_ids=[experiment_id],
            filter_string=f"tags.{DAGSTER_RUN_TAG} = '{run_id}'",
            output_format="list",
            max_results=1,
        )
        while mlflow.active_run() is not None:  # a run some earlier code left open here
            mlflow.end_run()
        with _active_experiment(experiment_id):
            if found:
                active = mlflow.start_run(run_id=found[0].info.run_id)
            else:
                active = mlflow.start_run(
                    experiment_id=experiment_id,
                    run_name=context.run.job_name,
                    tags={DAGSTER_RUN_TAG: run_id, "dagster_job": context.run.job_name},
                )
            self._opened.add(active.info.run_id)
            status = "FAILED"
            try:
                yield active.info.run_id
                status = "FINISHED"
            finally:
                while mlflow.active_run() is not None:
                    mlflow.end_run(status)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if not self._opened or context.instance is None or context.run is None:
            return
        failures = context.instance.get_records_for_run(
            context.run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE
        )
        if failures.records:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(self.tracking_uri)
            for run_id in self._opened:
                client.set_terminated(run_id, "FAILED")
