"""The code location: every pipeline's definitions plus the platform's shared resources."""

import os
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

from ml_assets.home import warehouse_url  # noqa: E402
from ml_assets.pipelines.flights import definitions as flights  # noqa: E402
from resources.json_io_manager import JsonIOManager  # noqa: E402
from resources.landing_zone import default_landing_zone  # noqa: E402
from resources.parquet_io_manager import ParquetIOManager  # noqa: E402

EXECUTORS = {"in_process": dg.in_process_executor, "multiprocess": dg.multiprocess_executor}


def _executor() -> dg.ExecutorDefinition:
    """How a run executes its steps, from ``$ML_ASSETS_EXECUTOR`` (default ``in_process``).

    A separate process per step re-imports the code location (about 1.5 s here), which is most
    of the cost of a one-partition run, so locally steps run inside the run's process;
    ``multiprocess`` runs independent steps in parallel processes.
    """
    name = os.environ.get("ML_ASSETS_EXECUTOR", "in_process")
    if name not in EXECUTORS:
        raise ValueError(f"ML_ASSETS_EXECUTOR={name!r}: choose one of {', '.join(EXECUTORS)}")
    return EXECUTORS[name]


def _platform() -> dg.Definitions:
    """Resources, executor and sensors every pipeline shares."""
    return dg.Definitions(
        executor=_executor(),
        resources={
            "io_manager": ParquetIOManager(base_url=warehouse_url()),
            "json_io_manager": JsonIOManager(base_url=warehouse_url()),
            "landing_zone": default_landing_zone(),
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
