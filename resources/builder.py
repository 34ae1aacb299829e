"""The platform's resources, built in one place from the environment (``ml_assets.home``).

The code location and the tests use this same builder, so a test runs against exactly the
wiring a user gets, pointed at the test's own ``$ML_ASSETS_HOME``.
"""

from collections.abc import Sequence
from typing import Any

from ml_assets.contract.declaration import (
    PipelineDeclaration,
    RestSource,
    SqlSource,
    StreamSource,
)
from ml_assets.home import online_store_url, prediction_log_url, tracking_uri, warehouse_url
from resources import rest_connection, sql_connection, stream_connection
from resources.alert_webhook import AlertWebhook, alert_webhook_url
from resources.json_io_manager import JsonIOManager
from resources.landing_zone import default_landing_zone
from resources.mlflow_tracking import MlflowTracking
from resources.optuna_storage import default_optuna_storage
from resources.parquet_io_manager import ParquetIOManager
from resources.prediction_log_store import PredictionLogStore
from resources.prediction_services import prediction_services
from resources.table_snapshot_store import TableSnapshotStore
from resources.warehouse import Warehouse


def platform_resources(pipelines: Sequence[PipelineDeclaration]) -> dict[str, Any]:
    """Every resource the platform's assets, sensors and jobs use, for ``pipelines``: one
    connection per database their sql sources name, per API their rest sources name and per
    broker their stream sources name, shared by every source that names it."""
    return {
        **{
            sql_connection.resource_key(name): sql_connection.sql_connection(name)
            for name in _connections(pipelines, SqlSource)
        },
        **{
            rest_connection.resource_key(name): rest_connection.rest_connection(name)
            for name in _connections(pipelines, RestSource)
        },
        **{
            stream_connection.resource_key(name): stream_connection.stream_connection(name)
            for name in _connections(pipelines, StreamSource)
        },
        "io_manager": ParquetIOManager(base_url=warehouse_url()),
        "json_io_manager": JsonIOManager(base_url=warehouse_url()),
        "landing_zone": default_landing_zone(),
        "online_store": TableSnapshotStore(base_url=online_store_url()),
        "mlflow": MlflowTracking(tracking_uri=tracking_uri()),
        "optuna_storage": default_optuna_storage(),
        "prediction_services": prediction_services(pipelines),
        "prediction_log": PredictionLogStore(base_url=prediction_log_url()),
        "alert_webhook": AlertWebhook(url=alert_webhook_url()),
        "warehouse": Warehouse(base_url=warehouse_url()),
    }


def _connections(pipelines: Sequence[PipelineDeclaration], kind: type) -> list[str]:
    """The connections the sources of ``kind`` name."""
    return sorted({s.connection for p in pipelines for s in p.sources if isinstance(s, kind)})
