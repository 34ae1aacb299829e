"""Where the platform keeps its local state.

Everything the platform writes on the local disk lives under one directory, ``$ML_ASSETS_HOME``
(``<project>/.ml_assets`` when unset), so a user or a test moves the whole platform with one
variable. Each store can still be pointed elsewhere (for example ``s3://...``) by its own
variable; the defaults below are what an embedded, service-free run uses.
"""

import os
from pathlib import Path

HOME_ENV_VAR = "ML_ASSETS_HOME"
LANDING_ENV_VAR = "ML_ASSETS_LANDING_URL"
WAREHOUSE_ENV_VAR = "ML_ASSETS_WAREHOUSE_URL"
ONLINE_STORE_ENV_VAR = "ML_ASSETS_ONLINE_STORE_URL"
PREDICTION_LOG_ENV_VAR = "ML_ASSETS_PREDICTION_LOG_URL"
TRACKING_URI_ENV_VAR = "MLFLOW_TRACKING_URI"

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def ml_assets_home() -> Path:
    """The directory that holds all local state: ``$ML_ASSETS_HOME`` or ``<project>/.ml_assets``."""
    configured = os.environ.get(HOME_ENV_VAR)
    return Path(configured).expanduser().resolve() if configured else PROJECT_ROOT / ".ml_assets"


def landing_zone_url() -> str:
    """Where upstream systems land exports: ``$ML_ASSETS_LANDING_URL`` or ``<home>/landing``."""
    return os.environ.get(LANDING_ENV_VAR) or str(ml_assets_home() / "landing")


def warehouse_url() -> str:
    """Where assets are stored: ``$ML_ASSETS_WAREHOUSE_URL`` or ``<home>/warehouse``."""
    return os.environ.get(WAREHOUSE_ENV_VAR) or str(ml_assets_home() / "warehouse")


def online_store_url() -> str:
    """Where online feature snapshots live: ``$ML_ASSETS_ONLINE_STORE_URL`` or
    ``<warehouse>/online``."""
    return os.environ.get(ONLINE_STORE_ENV_VAR) or f"{warehouse_url().rstrip('/')}/online"


def prediction_log_url() -> str:
    """Where the prediction services append what they served: ``$ML_ASSETS_PREDICTION_LOG_URL``
    or ``<home>/prediction_log``."""
    return os.environ.get(PREDICTION_LOG_ENV_VAR) or str(ml_assets_home() / "prediction_log")


def mlflow_store() -> Path:
    """Where the embedded profile keeps MLflow: ``<home>/mlflow``."""
    return ml_assets_home() / "mlflow"


def tracking_uri() -> str:
    """MLflow's tracking and registry store: ``$MLFLOW_TRACKING_URI``, or a SQLite database under
    ``<home>/mlflow``."""
    return os.environ.get(TRACKING_URI_ENV_VAR) or f"sqlite:///{mlflow_store() / 'mlflow.db'}"


def dagster_home() -> Path:
    """The Dagster instance directory: ``$DAGSTER_HOME`` or ``<home>/dagster``."""
    configured = os.environ.get("DAGSTER_HOME")
    return Path(configured).expanduser().resolve() if configured else ml_assets_home() / "dagster"
