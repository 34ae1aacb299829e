"""A sensor that turns newly landed or changed files into runs of the assets that read them and of
what those files alone determine (the clean and feature layers).

The files a tick finds new or changed become as few runs as the assets' single-run backfill
policy allows: the changed partitions of all sources become the fewest contiguous ranges in
which the same sources changed (a year landed at once, or one day's files of every source, is one
run), and the changed reference tables ride along with the first range (the features read them),
or are one run each when no partition changed. Each run also materializes the downstream
partitions whose every input is written by the same run or is ready before it (materialized,
not in progress, blocking checks passed): a landed day reaches its features in one run, without
waiting for an automation tick and a second run launch. What a run cannot include (the features
of a day whose history is missing or failed a check, the later days that read a changed day) is
left to automation, which requests it once its inputs are ready; it never requests what such a
run targets while the run goes on (``TargetedByUnfinishedRun``), nor, afterwards, what the run
wrote after its inputs.

The run key names the sources, the range and a digest of the files' identities and contents, so
the same files never run twice (Dagster skips a run key it has seen, also across daemon
restarts) while a corrected re-export does run again. The JSON cursor remembers each file's
listing signature, content hash and how many distinct contents it has had, so unchanged files
are not re-read on every tick; a file that lands while a tick runs is seen by the next one.
"""

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG as RANGE_END
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG as RANGE_START

from ml_assets.contract.dagster_terms import asset_key, partitions_definition
from ml_assets.contract.declaration import PipelineDeclaration
from resources.landing_zone import LandingZone
from sensors.partition_runs import downstream_closure, runnable_downstream, shared_ranges


@dataclass(frozen=True)
class LandedSource:
    """A landing-zone folder and the asset that reads its files."""

    folder: str
    asset_key: dg.AssetKey
    partitions_def: dg.PartitionsDefinition | None = None
    """When set, each file is one partition and its name is the partition key."""
    extension: str = ".csv"


def landed_sources(declaration: PipelineDeclaration) -> list[LandedSource]:
    """Every source of a pipeline that lands files, and the asset that reads it."""
    partitions = partitions_definition(declaration.partitions)
    return [
        LandedSource(
            folder=source.name,
            asset_key=asset_key(
                declaration, f"raw_{source.name}" if source.partitioned else source.name
            ),
            partitions_def=partitions if source.partitioned else None,
            extension=source.extension,
        )
        for source in declaration.sources
        if source.kind == "files"
    ]


def _request(
    folders: Sequence[str],
    assets: Sequence[dg.AssetKey],
    group: Sequence[str],
    identities: Sequence[str],
    partitioned: bool,
    run_config: Mapping[str, Any] | None,
) -> dg.RunRequest:
    """One run reading the files ``identities`` of ``folders`` over ``group`` (consecutive
    partitions, or one table) and materializing ``assets``."""
    first, last = group[0], group[-1]
    digest = hashlib.sha256("\n".join(identities).encode()).hexdigest()[:16]
    tags = {"landing_zone/files": str(len(identities))}
    if partitioned and len(group) > 1:
        tags.update({RANGE_START: first, RANGE_END: last})
    return dg.RunRequest(
        run_key=f"{'+'.join(folders)}/{first}...{last}:{digest}",
        asset_selection=list(assets),
        partition_key=first if partitioned and len(group) == 1 else None,
        tags=tags,
        run_config=dict(run_config or {}),
    )


def build_landing_zone_sensor(
    name: str,
    sources: Sequence[LandedSource],
    max_runs_per_tick: int = 50,
    minimum_interval_seconds: int = 1,
    run_config: Mapping[str, Any] | None = None,
    range_run_config: Mapping[str, Any] | None = None,
) -> dg.SensorDefinition:
    """A sensor requesting the fewest runs that read the new or changed files of ``sources``
    and bring what they alone determine (the clean and feature layers) up to date.

    The daemon evaluates sensors once per loop (every 5 s at most), so the default interval of
    1 s means every loop; with 5 s a tick that starts a little early is skipped to the next loop,
    and files wait 10 s. A tick lists each source folder and hashes only new or changed files.

    ``run_config`` is given to the runs of one partition or one table (e.g. an in-process
    executor: a day's steps take a fraction of a second each, less than starting step
    processes); ``range_run_config`` to the runs of a range (default: the code location's
    executor, whose parallel steps pay off over many partitions).
    """

    @dg.sensor(
        name=name,
        # what the landed files determine lies downstream of the assets reading them
        asset_selection=dg.AssetSelection.assets(*(s.asset_key for s in sources)).downstream(),
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Requests a run for each range of new or changed files in the landing zone (one "
            "single-run range for every source that changed over it), with the clean and "
            "feature partitions those files determine."
        ),
    )
    def landing_zone_sensor(
        context: dg.SensorEvaluationContext, landing_zone: LandingZone
    ) -> dg.SensorResult:
        before: dict[str, dict] = json.loads(context.cursor) if context.cursor else {}
        seen = dict(before)
        skipped: list[str] = []
        changed: dict[str, dict[str, str]] = {}  # folder -> partition or table -> identity
        for source in sources:
            names = (
                set(source.partitions_def.get_partition_keys()) if source.partitions_def else None
            )
            changed[source.folder] = {}
            for landed in landing_zone.list_files(source.folder, source.extension):
                file_id = f"{source.folder}/{landed.name}"
                known = seen.get(file_id, {})
                if known.get("signature") == landed.stat_signature:
                    continue
                if names is not None and landed.name not in names:
                    skipped.append(file_id)
                    seen[file_id] = {**known, "signature": landed.stat_signature}
                    continue
                content = landing_zone.content_hash(source.folder, landed.name, source.extension)
                version = known.get("version", 0)
                if content != known.get("content"):
                    version += 1
                    changed[source.folder][landed.name] = f"{file_id}@{version}:{content}"
                seen[file_id] = {
                    "signature": landed.stat_signature,
                    "content": content,
                    "version": version,
                }
        planned = _plan(context, sources, changed, run_config, range_run_config)
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


def _plan(
    context: dg.SensorEvaluationContext,
    sources: Sequence[LandedSource],
    changed: Mapping[str, Mapping[str, str]],
    run_config: Mapping[str, Any] | None,
    range_run_config: Mapping[str, Any] | None,
) -> list[tuple[dg.RunRequest, list[str]]]:
    """Each run request of a tick and the files it reads.

    The changed partitions of all partitioned sources become the fewest ranges in which the
    same sources changed; the changed reference tables join the first range's run (the
    features read them), or, when no partition changed, are one run each.
    """
    tables = [(s, name) for s in sources if s.partitions_def is None for name in changed[s.folder]]
    partitioned = [s for s in sources if s.partitions_def is not None and changed[s.folder]]
    planned: list[tuple[dg.RunRequest, list[str]]] = []
    for partitions_def in list(
        {id(s.partitions_def): s.partitions_def for s in partitioned}.values()
    ):
        group = [s for s in partitioned if s.partitions_def is partitions_def]
        by_folder = {s.folder: s for s in group}
        order = {k: i for i, k in enumerate(partitions_def.get_partition_keys())}
        closure = downstream_closure(
            context.repository_def.asset_graph, {s.asset_key for s in sources}, partitions_def
        )
        segments = shared_ranges({s.folder: list(changed[s.folder]) for s in group}, order)
        for folders, keys in segments:
            riding = tables if not planned else []
            reading = [by_folder[f] for f in folders]
            in_run = [s.asset_key for s in reading] + [s.asset_key for s, _ in riding]
            downstream = runnable_downstream(context, closure, set(in_run), keys, partitions_def)
            identities = [changed[s.folder][k] for s in reading for k in keys] + [
                changed[s.folder][name] for s, name in riding
            ]
            request = _request(
                [*folders, *(s.folder for s, _ in riding)],
                [*in_run, *downstream],
                keys,
                identities,
                partitioned=True,
                run_config=run_config if len(keys) == 1 else range_run_config,
            )
            files = [f"{s.folder}/{k}" for s in reading for k in keys]
            planned.append((request, files + [f"{s.folder}/{name}" for s, name in riding]))
    if not planned:
        for source, name in tables:
            request = _request(
                [source.folder],
                [source.asset_key],
                [name],
                [changed[source.folder][name]],
                False,
                run_config,
            )
            planned.append((request, [f"{source.folder}/{name}"]))
    return planned
