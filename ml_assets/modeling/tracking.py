"""MLflow tracking through dagster-mlflow, with every MLflow run ended however Dagster ran.

dagster-mlflow's ``MlFlow`` opens one MLflow run per Dagster run (found again by the
``dagster_run_id`` tag from every step process) but leaves ending it to a job hook, which
``dg.materialize``, UI launches of the implicit asset job and automation runs never call. This
resource ends the run when Dagster tears it down, as FAILED if a step of the run failed.
Assets log under it in nested runs of their own (``with mlflow.start_run(nested=True)``).
"""

import os
from pathlib import Path

import dagster as dg

from ml_assets.home import ml_assets_home

TRACKING_URI_ENV_VAR = "MLFLOW_TRACKING_URI"


def mlflow_dir() -> Path:
    return ml_assets_home() / "mlflow"


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, or a SQLite store under ``$ML_ASSETS_HOME/mlflow``."""
    return os.environ.get(TRACKING_URI_ENV_VAR) or f"sqlite:///{mlflow_dir() / 'mlflow.db'}"


def use_platform_store() -> None:
    """Point this process's MLflow client at the platform's tracking store and registry (a
    step process that did not start an MLflow run through the resource would use MLflow's
    own default store)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())


def ensure_experiment(uri: str, name: str) -> str:
    """Create ``name`` with its artifacts under ``$ML_ASSETS_HOME`` (local stores) if missing."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = (mlflow_dir() / "artifacts").as_uri() if uri.startswith("sqlite") else None
    if location:
        mlflow_dir().mkdir(parents=True, exist_ok=True)
    return mlflow.create_experiment(name, artifact_location=location)


@dg.resource(
    config_schema={
        "experiment_name": dg.Field(str, description="MLflow experiment of the runs."),
        "mlflow_tracking_uri": dg.Field(
            dg.Noneable(str), default_value=None, description="Defaults to tracking_uri()."
        ),
    },
    description="MLflow tracking (dagster-mlflow) whose run always ends with the Dagster run.",
)
def mlflow_tracking(init_context: dg.InitResourceContext):
    import mlflow
    from dagster_mlflow.resources import MlFlow
    from mlflow.entities import RunStatus

    config = dict(init_context.resource_config)
    uri = config["mlflow_tracking_uri"] or tracking_uri()
    ensure_experiment(uri, config["experiment_name"])
    context = init_context.replace_config(
        {
            **config,
            "mlflow_tracking_uri": uri,
            "parent_run_id": None,
            "mlflow_run_id": None,
            "env": {},
            "env_to_tag": None,
            "extra_tags": {},
        }
    )
    tracker = MlFlow(context)
    try:
        yield tracker
    finally:
        status = RunStatus.FAILED if _run_failed(context) else RunStatus.FINISHED
        mlflow.end_run(RunStatus.to_string(status))


def _run_failed(context: dg.InitResourceContext) -> bool:
    if context.instance is None or context.run is None:
        return False
    failures = context.instance.get_records_for_run(
        context.run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE
    )
    return bool(failures.records)
