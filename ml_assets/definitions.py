"""The code location: every pipeline's definitions plus the platform's shared resources."""

import dagster as dg

from ml_assets.home import warehouse_url
from ml_assets.pipelines.flights.definitions import defs as flights_defs
from resources.landing_zone import default_landing_zone
from resources.parquet_io_manager import ParquetIOManager

platform_defs = dg.Definitions(
    resources={
        "io_manager": ParquetIOManager(base_url=warehouse_url()),
        "landing_zone": default_landing_zone(),
    },
    sensors=[
        dg.AutomationConditionSensorDefinition(
            "data_automation",
            target=dg.AssetSelection.all(),
            default_status=dg.DefaultSensorStatus.RUNNING,
            minimum_interval_seconds=30,
        )
    ],
)

defs = dg.Definitions.merge(platform_defs, flights_defs)
