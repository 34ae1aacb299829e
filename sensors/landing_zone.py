"""A sensor that turns newly landed or changed files into runs of the assets that read them.

One run per new or changed file: the run key is the file's identity (source, name) plus how
many distinct contents it has had, so the same file never runs twice (Dagster skips a run key it
has seen, also across daemon restarts) while a corrected re-export does run again. The JSON
cursor remembers each file's listing signature and content hash, so unchanged files are not
re-read on every tick.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from resources.landing_zone import LandingZone


@dataclass(frozen=True)
class LandedSource:
    """A landing-zone folder and the asset that reads its files."""

    folder: str
    asset_key: dg.AssetKey
    partitions_def: dg.PartitionsDefinition | None = None
    """When set, each file is one partition and its name is the partition key."""


def build_landing_zone_sensor(
    name: str,
    sources: Sequence[LandedSource],
    max_runs_per_tick: int = 50,
    minimum_interval_seconds: int = 30,
    run_config: Mapping[str, Any] | None = None,
) -> dg.SensorDefinition:
    """A sensor requesting one run per new or changed file in ``sources``' folders.

    ``run_config`` is given to every run it requests (e.g. an in-process executor for these
    one-step runs).
    """

    @dg.sensor(
        name=name,
        asset_selection=[s.asset_key for s in sources],
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests one run per new or changed file in the landing zone.",
    )
    def landing_zone_sensor(
        context: dg.SensorEvaluationContext, landing_zone: LandingZone
    ) -> dg.SensorResult:
        seen: dict[str, dict] = json.loads(context.cursor) if context.cursor else {}
        requests: list[dg.RunRequest] = []
        skipped: list[str] = []
        for source in sources:
            partition_keys = (
                set(source.partitions_def.get_partition_keys()) if source.partitions_def else None
            )
            for landed in landing_zone.list_files(source.folder):
                file_id = f"{source.folder}/{landed.name}"
                known = seen.get(file_id, {})
                if known.get("signature") == landed.stat_signature:
                    continue
                if len(requests) >= max_runs_per_tick:
                    break  # the rest waits for the next tick; its cursor entry is untouched
                if partition_keys is not None and landed.name not in partition_keys:
                    skipped.append(file_id)
                    seen[file_id] = {**known, "signature": landed.stat_signature}
                    continue
                content = landing_zone.content_hash(source.folder, landed.name)
                version = known.get("version", 0)
                if content != known.get("content"):
                    version += 1
                    requests.append(
                        dg.RunRequest(
                            run_key=f"{file_id}@{version}:{content}",
                            asset_selection=[source.asset_key],
                            partition_key=landed.name if partition_keys is not None else None,
                            tags={"landing_zone/file": landed.path},
                            run_config=dict(run_config or {}),
                        )
                    )
                seen[file_id] = {
                    "signature": landed.stat_signature,
                    "content": content,
                    "version": version,
                }
        if skipped:
            context.log.warning(f"Ignored files that name no partition: {', '.join(skipped)}")
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))

    return landing_zone_sensor
