"""The code location: every pipeline's definitions plus the platform's shared resources."""

import warnings

import dagster as dg

# Deliberate uses of Dagster's beta/preview surface: per-partition asset checks, single-run
# backfill policies and history mappings that reach before the first partition.
for message in (
    r".*partitions_def on an AssetCheckSpec.*",
    r".*`backfill_policy`.*",
    r".*`allow_nonexistent_upstream_partitions`.*",
):
    warnings.filterwarnings("ignore", message=message)

from ml_assets.executor import forkserver_or_in_process_executor  # noqa: E402
from ml_assets.home import online_store_url, warehouse_url  # noqa: E402
from ml_assets.pipelines.flights import definitions as flights  # noqa: E402
from resources.json_io_manager import JsonIOManager  # noqa: E402
from resources.landing_zone import default_landing_zone  # noqa: E402
from resources.parquet_io_manager import ParquetIOManager  # noqa: E402
from resources.table_snapshots import TableSnapshotStore  # noqa: E402


def _platform() -> dg.Definitions:
    """Resources, executor and sensors every pipeline shares."""
    return dg.Definitions(
        # Steps in parallel processes forked from one per-run forkserver by default (a year-long
        # backfill runs its two clean steps side by side); a run may choose in_process, as the
        # landing-zone sensor's one-step runs do.
        executor=forkserver_or_in_process_executor,
        resources={
            "io_manager": ParquetIOManager(base_url=warehouse_url()),
            "json_io_manager": JsonIOManager(base_url=warehouse_url()),
            "landing_zone": default_landing_zone(),
            "online_store": TableSnapshotStore(base_url=online_store_url()),
        },
        sensors=[
            dg.AutomationConditionSensorDefinition(
                "automation",
                target=dg.AssetSelection.all(),
                default_status=dg.DefaultSensorStatus.RUNNING,
                minimum_interval_seconds=30,
            )
        ],
    )


defs = dg.Definitions.merge(_platform(), flights.defs)
