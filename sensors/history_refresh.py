"""A sensor that refreshes the partitions reading a rewritten partition as history, as soon as
the rewrite is done.

A corrected day (or month) rewrites that partition's clean and feature layers in one run; the
later partitions whose data-layer assets read it as history (a 7-day window, the month before)
are then stale. Automation would request them as a backfill, which Dagster's backfill daemon
turns into a run only on its next 30-second loop; this sensor, evaluated on every daemon loop,
requests them itself as one range run per contiguous range of stale partitions, with the
feature-layer assets below them that the same run can write. It owns exactly those partitions of
the data layers (``StaleReads.history`` in ``ml_assets/automation.py``; ``layer_automation``
leaves them out): automation refreshes the others, so the two never request the same partition.

A stale partition waits, as automation would, while it or an input it reads is being written
or targeted by an unfinished run or backfill, and while a blocking check of an input partition
it reads has not passed. The cursor keeps the newest materialization of every asset it watches,
so a tick with nothing new written reads only the asset records. The run key names the range
and the newest rewritten input, so the same rewrite is never refreshed twice.
"""

import json
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG as RANGE_END
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG as RANGE_START

from ml_assets.automation import UnfinishedWork, read_partitions, stale_reads
from ml_assets.contract.dagster_terms import partitions_definition
from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.data.data_layers import CLEAN, FEATURES, INGEST, group
from sensors.partition_runs import downstream_closure, ready, runnable_downstream, shared_ranges


def history_readers(
    asset_graph: Any, partitions_def: dg.PartitionsDefinition, groups: Collection[str]
) -> list[dg.AssetKey]:
    """The assets of ``groups`` partitioned by ``partitions_def`` that read other partitions than
    their own of an input partitioned the same way (a window of history), in topological
    order."""
    readers = []
    for key in asset_graph.toposorted_asset_keys:
        node = asset_graph.get(key)
        if (
            not node.is_executable
            or node.partitions_def != partitions_def
            or node.group_name not in groups
        ):
            continue
        if any(
            asset_graph.get(parent).partitions_def == partitions_def
            and not _identity(asset_graph.get_partition_mapping(key, parent))
            for parent in node.parent_keys
        ):
            readers.append(key)
    return readers


def _identity(mapping: dg.PartitionMapping) -> bool:
    if isinstance(mapping, dg.TimeWindowPartitionMapping):
        return mapping.start_offset == 0 and mapping.end_offset == 0
    return isinstance(mapping, dg.IdentityPartitionMapping)


def _below(asset_graph: Any, readers: Sequence[dg.AssetKey]) -> list[dg.AssetKey]:
    """The feature-layer assets a refresh of ``readers`` can write in the same run: below them,
    partitioned the same way, reading only them, what they read, and each other (not the batch
    predictions, which also read the deployed model)."""
    partitions_def = asset_graph.get(readers[0]).partitions_def
    known = set(readers)
    for key in readers:
        known |= asset_graph.get_ancestor_asset_keys(key)
    below: set[dg.AssetKey] = set(readers)
    for key in asset_graph.toposorted_asset_keys:
        if asset_graph.get(key).parent_keys & below:
            below.add(key)
    return [k for k in downstream_closure(asset_graph, known, partitions_def) if k in below]


def build_history_refresh_sensor(
    declarations: Sequence[PipelineDeclaration], run_config: Mapping[str, Any] | None = None
) -> dg.SensorDefinition:
    """The code location's history-refresh sensor, over the data layers of ``declarations``;
    its runs get ``run_config`` (e.g. in-process: a range of history readers is a few partitions
    of one or two assets). One sensor for every pipeline, as ``automation`` is: a tick's cost is
    mostly Dagster's own, paid once per daemon loop."""
    layers = [
        (
            partitions_definition(d.partitions),
            [group(d, layer) for layer in (INGEST, CLEAN, FEATURES)],
        )
        for d in declarations
    ]

    @dg.sensor(
        name="history_refresh",
        asset_selection=dg.AssetSelection.groups(*(g for _, groups in layers for g in groups)),
        minimum_interval_seconds=1,  # every daemon loop
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Refreshes the data-layer partitions that read a rewritten partition as history (a "
            "corrected day, late rows), one range run per contiguous range, once the rewrite is "
            "done and its blocking checks passed."
        ),
    )
    def history_refresh(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        began = datetime.now(UTC)
        instance, asset_graph = context.instance, context.repository_def.asset_graph
        readers = {
            id(partitions_def): (
                partitions_def,
                history_readers(asset_graph, partitions_def, groups),
            )
            for partitions_def, groups in layers
        }
        every = [r for _, keys in readers.values() for r in keys]
        watched = sorted({*every, *(p for r in every for p in asset_graph.get(r).parent_keys)})
        newest = {
            record.asset_entry.asset_key.to_user_string(): (
                record.asset_entry.last_materialization_storage_id
            )
            for record in instance.get_asset_records(watched)
        }
        before = json.loads(context.cursor) if context.cursor else {}
        if before.get("newest") == newest and not before.get("pending"):
            return dg.SensorResult(skip_reason="Nothing written since the last tick.")

        # what unfinished runs target is read before what was written: a run that ends in
        # between has then written its partitions, and they are not stale
        work = UnfinishedWork.read(instance, began)
        requests: list[dg.RunRequest] = []
        pending = False
        for partitions_def, keys in readers.values():
            pending |= _refresh(context, partitions_def, keys, work, run_config, requests)
        cursor = json.dumps({"newest": newest, "pending": pending}, sort_keys=True)
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return history_refresh


def _refresh(
    context: dg.SensorEvaluationContext,
    partitions_def: dg.PartitionsDefinition,
    readers: Sequence[dg.AssetKey],
    work: UnfinishedWork,
    run_config: Mapping[str, Any] | None,
    requests: list[dg.RunRequest],
) -> bool:
    """Adds to ``requests`` a range run per contiguous range of the ``readers``' partitions that
    are stale only through their history and free to run; whether some must wait."""
    instance, asset_graph = context.instance, context.repository_def.asset_graph
    targeted = {r: work.targeted(r, partitions_def) for r in readers}
    all_keys = partitions_def.get_partition_keys()
    stale: dict[str, list[str]] = {}
    newest_read: dict[str, int] = {}
    pending = False
    for reader in readers:
        found = stale_reads(instance, asset_graph, reader, all_keys)
        free = [
            p
            for p in found.history
            if p not in targeted[reader]
            and None not in targeted[reader]
            and _inputs_ready(instance, asset_graph, reader, p)
        ]
        pending |= len(free) < len(found.history)
        if free:
            stale[reader.to_user_string()] = free
            newest_read[reader.to_user_string()] = found.newest_read

    order = {k: i for i, k in enumerate(all_keys)}
    for names, keys in shared_ranges(stale, order):
        in_run = [dg.AssetKey.from_user_string(name) for name in names]
        below = _below(asset_graph, in_run)
        downstream = runnable_downstream(context, below, set(in_run), keys, partitions_def)
        first, last = keys[0], keys[-1]
        read = max(newest_read[name] for name in names)
        requests.append(
            dg.RunRequest(
                run_key=f"{'+'.join(names)}/{first}...{last}@{read}",
                asset_selection=[*in_run, *downstream],
                partition_key=first if len(keys) == 1 else None,
                tags={RANGE_START: first, RANGE_END: last} if len(keys) > 1 else {},
                run_config=dict(run_config or {}),
            )
        )
    return pending


def _inputs_ready(
    instance: dg.DagsterInstance, asset_graph: Any, key: dg.AssetKey, partition: str
) -> bool:
    """Every input partition that ``partition`` of ``key`` reads is materialized, not being
    written, and passed its blocking checks."""
    for parent in asset_graph.get(key).parent_keys:
        read = read_partitions(asset_graph, key, parent, partition)
        needed = None if asset_graph.get(parent).partitions_def is None else set(read)
        if not ready(instance, asset_graph, parent, needed):
            return False
    return True
