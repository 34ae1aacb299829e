"""A sensor that re-ingests ``served_predictions`` where the prediction log has grown.

Each tick lists the pipeline's log folders (one per partition) and compares each folder's
signature (how many files, the newest name) with the cursor's; the partitions whose folder
changed become the fewest contiguous single-run ranges, each a run keyed by the range and the
folders' signatures, so the same files are never ingested twice (also across daemon restarts)
while a folder that grows again is. Files that land during a tick are seen by the next one.
"""

import hashlib
import json

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG as RANGE_END
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG as RANGE_START

from ml_assets.contract.dagster_terms import asset_key, partitions_definition
from ml_assets.contract.declaration import PipelineDeclaration
from resources.prediction_log_store import PredictionLogStore
from sensors.partition_runs import contiguous_ranges

INTERVAL_SECONDS = 30


def build_prediction_log_sensor(
    declaration: PipelineDeclaration, run_config: dict | None = None
) -> dg.SensorDefinition:
    asset = asset_key(declaration, "served_predictions")
    keys = partitions_definition(declaration.partitions).get_partition_keys()
    order = {key: i for i, key in enumerate(keys)}

    @dg.sensor(
        name=f"{declaration.prefix}_prediction_log_sensor",
        asset_selection=dg.AssetSelection.assets(asset),
        minimum_interval_seconds=INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Ingest what the {declaration.name} service logged since the last run.",
    )
    def prediction_log_sensor(
        context: dg.SensorEvaluationContext, prediction_log: PredictionLogStore
    ) -> dg.SensorResult:
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        now = prediction_log.signatures(declaration.name, set(order))
        changed = [p for p, signature in now.items() if seen.get(p) != signature]
        requests = []
        for run in contiguous_ranges(changed, order):
            digest = hashlib.sha256("|".join(now[p] for p in run).encode()).hexdigest()[:16]
            requests.append(
                dg.RunRequest(
                    run_key=f"served:{run[0]}:{run[-1]}:{digest}",
                    asset_selection=[asset],
                    tags={RANGE_START: run[0], RANGE_END: run[-1]},
                    run_config=run_config or {},
                )
            )
        return dg.SensorResult(run_requests=requests, cursor=json.dumps({**seen, **now}))

    return prediction_log_sensor
