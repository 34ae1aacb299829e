"""A sensor that turns newly landed or changed files into runs of the assets that read them.

The files a tick finds new or changed become as few runs as the assets' single-run backfill
policy allows: for each partitioned source, one run per contiguous range of new partitions
(a year landed at once is one run per source), and one run per changed reference table. The run
key names the source, the range and a digest of the files' identities and contents, so the same
files never run twice (Dagster skips a run key it has seen, also across daemon restarts) while
a corrected re-export does run again. The JSON cursor remembers each file's listing signature,
content hash and how many distinct contents it has had, so unchanged files are not re-read on
every tick; a file that lands while a tick runs is seen by the next one.
"""

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from ml_assets.contract.declaration import PipelineDeclaration
from resources.landing_zone import LandingZone

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


@dataclass(frozen=True)
class LandedSource:
    """A landing-zone folder and the asset that reads its files."""

    folder: str
    asset_key: dg.AssetKey
    partitions_def: dg.PartitionsDefinition | None = None
    """When set, each file is one partition and its name is the partition key."""
    extension: str = ".csv"


def landed_sources(declaration: PipelineDeclaration) -> list[LandedSource]:
    """Every declared source of a pipeline and the asset that reads it."""
    partitions = declaration.partitions.definition()
    return [
        LandedSource(
            folder=source.name,
            asset_key=declaration.key(f"raw_{source.name}" if source.partitioned else source.name),
            partitions_def=partitions if source.partitioned else None,
            extension=source.extension,
        )
        for source in declaration.sources
    ]


def contiguous_ranges(keys: Sequence[str], order: Mapping[str, int]) -> list[list[str]]:
    """``keys`` grouped into runs of consecutive partitions (by their index in ``order``)."""
    ranges: list[list[str]] = []
    for key in sorted(keys, key=order.__getitem__):
        if ranges and order[key] == order[ranges[-1][-1]] + 1:
            ranges[-1].append(key)
        else:
            ranges.append([key])
    return ranges


def _request(
    source: LandedSource,
    group: Sequence[str],
    identities: Mapping[str, str],
    partitioned: bool,
    run_config: Mapping[str, Any] | None,
) -> dg.RunRequest:
    """One run reading the files of ``group`` (consecutive partitions, or one table)."""
    first, last = group[0], group[-1]
    digest = hashlib.sha256("\n".join(identities[n] for n in group).encode()).hexdigest()[:16]
    tags = {"landing_zone/files": str(len(group))}
    if partitioned and len(group) > 1:
        tags.update({RANGE_START: first, RANGE_END: last})
    return dg.RunRequest(
        run_key=f"{source.folder}/{first}...{last}:{digest}",
        asset_selection=[source.asset_key],
        partition_key=first if partitioned and len(group) == 1 else None,
        tags=tags,
        run_config=dict(run_config or {}),
    )


def build_landing_zone_sensor(
    name: str,
    sources: Sequence[LandedSource],
    max_runs_per_tick: int = 50,
    minimum_interval_seconds: int = 5,
    run_config: Mapping[str, Any] | None = None,
) -> dg.SensorDefinition:
    """A sensor requesting the fewest runs that read the new or changed files of ``sources``.

    ``run_config`` is given to every run it requests (e.g. an in-process executor for these
    one-step runs).
    """

    @dg.sensor(
        name=name,
        asset_selection=[s.asset_key for s in sources],
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Requests a run for each range of new or changed files in the landing zone (one "
            "single-run range per source)."
        ),
    )
    def landing_zone_sensor(
        context: dg.SensorEvaluationContext, landing_zone: LandingZone
    ) -> dg.SensorResult:
        before: dict[str, dict] = json.loads(context.cursor) if context.cursor else {}
        seen = dict(before)
        planned: list[tuple[dg.RunRequest, list[str]]] = []  # each request and its files
        skipped: list[str] = []
        for source in sources:
            order = (
                {k: i for i, k in enumerate(source.partitions_def.get_partition_keys())}
                if source.partitions_def
                else None
            )
            changed: dict[str, str] = {}  # partition or table name -> its identity
            for landed in landing_zone.list_files(source.folder, source.extension):
                file_id = f"{source.folder}/{landed.name}"
                known = seen.get(file_id, {})
                if known.get("signature") == landed.stat_signature:
                    continue
                if order is not None and landed.name not in order:
                    skipped.append(file_id)
                    seen[file_id] = {**known, "signature": landed.stat_signature}
                    continue
                content = landing_zone.content_hash(source.folder, landed.name, source.extension)
                version = known.get("version", 0)
                if content != known.get("content"):
                    version += 1
                    changed[landed.name] = f"{file_id}@{version}:{content}"
                seen[file_id] = {
                    "signature": landed.stat_signature,
                    "content": content,
                    "version": version,
                }
            groups = contiguous_ranges(list(changed), order) if order else [[n] for n in changed]
            for group in groups:
                request = _request(source, group, changed, order is not None, run_config)
                planned.append((request, [f"{source.folder}/{n}" for n in group]))
        for _, files in planned[max_runs_per_tick:]:
            # Waits for the next tick, which sees these files as new or changed again.
            for file_id in files:
                if file_id in before:
                    seen[file_id] = before[file_id]
                else:
                    seen.pop(file_id)
        requests = [request for request, _ in planned[:max_runs_per_tick]]
        if skipped:
            context.log.warning(f"Ignored files that name no partition: {', '.join(skipped)}")
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))

    return landing_zone_sensor
