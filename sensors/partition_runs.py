"""How the sensors turn the partitions they find changed into the fewest runs: contiguous
ranges, the downstream assets a run can include, and whether an input is ready (what
automation waits for)."""

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

import dagster as dg


def contiguous_ranges(keys: Sequence[str], order: Mapping[str, int]) -> list[list[str]]:
    """``keys`` grouped into runs of consecutive partitions (by their index in ``order``)."""
    ranges: list[list[str]] = []
    for key in sorted(keys, key=order.__getitem__):
        if ranges and order[key] == order[ranges[-1][-1]] + 1:
            ranges[-1].append(key)
        else:
            ranges.append([key])
    return ranges


def shared_ranges(
    changed: Mapping[str, Sequence[str]], order: Mapping[str, int]
) -> list[tuple[list[str], list[str]]]:
    """The changed partitions of several names (``changed``: a source or an asset -> keys) as the
    fewest single-run ranges: maximal runs of consecutive partitions in which the same names
    changed. Each item: (the names, the range's keys in order)."""
    sources_at: dict[str, list[str]] = {}
    for source, keys in changed.items():
        for key in keys:
            sources_at.setdefault(key, []).append(source)
    segments: list[tuple[list[str], list[str]]] = []
    for run in contiguous_ranges(list(sources_at), order):
        for key in run:
            names = sorted(sources_at[key])
            if (
                segments
                and segments[-1][0] == names
                and order[segments[-1][1][-1]] + 1 == order[key]
            ):
                segments[-1][1].append(key)
            else:
                segments.append((names, [key]))
    return segments


def downstream_closure(
    asset_graph: Any, written: AbstractSet[dg.AssetKey], partitions_def: dg.PartitionsDefinition
) -> list[dg.AssetKey]:
    """The assets that what ``written`` holds alone determines, in topological order: those
    with the same partitions whose every parent is in ``written`` or another such asset (below
    the landed sources: the clean and feature layers; not the batch predictions, which also read
    the deployed model)."""
    known = set(written)
    closure = []
    for key in asset_graph.toposorted_asset_keys:
        node = asset_graph.get(key)
        if (
            key not in known
            and node.is_executable
            and node.partitions_def == partitions_def
            and node.parent_keys
            and node.parent_keys <= known
        ):
            known.add(key)
            closure.append(key)
    return closure


def ready(
    instance: dg.DagsterInstance,
    asset_graph: Any,
    parent: dg.AssetKey,
    partitions: AbstractSet[str] | None,
) -> bool:
    """``parent`` (its ``partitions``; None: unpartitioned) is materialized, not being written,
    and its blocking checks passed on its latest materialization: what automation waits for."""
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus,
    )
    from dagster._core.storage.partition_status_cache import (
        get_and_update_asset_status_cache_value,
    )

    partitions_def = asset_graph.get(parent).partitions_def
    if partitions is None:
        if instance.get_latest_materialization_event(parent) is None:
            return False
    else:
        status = get_and_update_asset_status_cache_value(instance, parent, partitions_def)
        if status is None:
            return False
        materialized = status.deserialize_materialized_partition_subsets(partitions_def)
        in_progress = status.deserialize_in_progress_partition_subsets(partitions_def)
        if any(k not in materialized or k in in_progress for k in partitions):
            return False
    checks = [
        check
        for check in asset_graph.get_check_keys_for_assets({parent})
        if asset_graph.get(check).blocking
    ]
    if not checks:
        return True
    passed = {
        (info.check_key, info.partition_key)
        for info in instance.event_log_storage.get_asset_check_partition_info(
            checks, partition_keys=sorted(partitions) if partitions is not None else None
        )
        if info.latest_execution_status == AssetCheckExecutionRecordStatus.SUCCEEDED
        and info.is_current
    }
    return all((c, k) in passed for c in checks for k in (partitions or [None]))


def runnable_downstream(
    context: dg.SensorEvaluationContext,
    closure: Sequence[dg.AssetKey],
    in_run: AbstractSet[dg.AssetKey],
    keys: Sequence[str],
    partitions_def: dg.PartitionsDefinition,
) -> list[dg.AssetKey]:
    """The assets of ``closure`` that a run of ``in_run`` over ``keys`` can also materialize:
    each partition they read is written by the same run, or is ready (materialized, not in
    progress, blocking checks passed) before it starts. An asset that cannot run keeps its
    descendants out too; automation refreshes them once their inputs are ready."""
    asset_graph = context.repository_def.asset_graph
    subset = partitions_def.subset_with_partition_keys(keys)
    selected, chosen = set(in_run), []
    for key in closure:
        runnable = True
        for parent in asset_graph.get(key).parent_keys:
            parent_def = asset_graph.get(parent).partitions_def
            if parent_def is None:
                runnable = parent in selected or ready(context.instance, asset_graph, parent, None)
            else:
                mapped = asset_graph.get_partition_mapping(key, parent)
                result = mapped.get_upstream_mapped_partitions_result_for_partitions(
                    subset, partitions_def, parent_def
                )
                needed = set(result.partitions_subset.get_partition_keys())
                if parent in selected:
                    needed -= set(keys)
                runnable = not result.required_but_nonexistent_partition_keys and (
                    not needed or ready(context.instance, asset_graph, parent, needed)
                )
            if not runnable:
                break
        if runnable:
            selected.add(key)
            chosen.append(key)
    return chosen
