"""A sensor per stream source: it notices events on the stream and requests runs of exactly
the raw partitions they belong to, with the clean and feature partitions those alone determine.

Each tick reads the stream's high watermark and the events up to it that it has not seen (their
event time only: nothing is written), placing each in its partition; a partition whose newest
event is past its committed offset (``stream/next_offset`` of its latest materialization) is
pending, and the pending partitions are requested as runs of contiguous ranges, each also
materializing the downstream partitions whose every input the run writes or is ready before it
(as the landing-zone sensor's runs do: ``sensors/partition_runs.py``). Each run
consumes from its partitions' committed offsets to the watermark it reads when it starts, so a
run that failed leaves its partitions pending and any later run of them replays the events.
While a run it requested is unfinished, it requests nothing more (the next tick does). Late
events of closed partitions under ``late_events: reject`` and events that belong to no
partition are recorded on the raw asset as observations with their reasons, and request
nothing. Automation brings up to date what a run could not include (the partitions that read the
written ones as history: the history-refresh sensor).
"""

import json
from collections import defaultdict
from typing import Any

import dagster as dg
from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG as RANGE_END
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG as RANGE_START

from ml_assets.contract.dagster_terms import asset_key, partitions_definition
from ml_assets.contract.declaration import PipelineDeclaration, StreamSource
from ml_assets.data.sources.stream import (
    STREAM_FROM_TAG,
    Committed,
    Event,
    committed,
    events_table,
    read_event,
)
from resources.stream_connection import StreamConnection, resource_key
from sensors.partition_runs import contiguous_ranges, downstream_closure, runnable_downstream

INTERVAL_SECONDS = 1
"""Every daemon loop (5 s): a tick costs a watermark read (0.2 s) when nothing is new."""
SCAN_LIMIT = 50_000
"""The most events one tick reads (about 10 s of reading); a longer backlog is read by the
ticks after it."""
STREAM_TAG = "ml_assets/stream"
"""Tags the runs the sensor requests: ``<prefix>/<source>``."""


def build_stream_source_sensor(
    declaration: PipelineDeclaration, source: StreamSource, run_config: dict | None = None
) -> dg.SensorDefinition:
    """The sensor of ``source``; ``run_config`` is given to its runs of one partition."""
    connection_key = resource_key(source.connection)
    raw_key = asset_key(declaration, f"raw_{source.name}")
    partitions_def = partitions_definition(declaration.partitions)
    order = {k: i for i, k in enumerate(partitions_def.get_partition_keys())}
    stream_tag = {STREAM_TAG: f"{declaration.prefix}/{source.name}"}

    @dg.sensor(
        name=f"{declaration.prefix}_{source.name}_stream_sensor",
        # what the events determine lies downstream of the raw asset
        asset_selection=dg.AssetSelection.assets(raw_key).downstream(),
        minimum_interval_seconds=INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys={connection_key},
        description=f"Requests runs of the {source.name} partitions that events on the stream "
        f"{source.queue!r} belong to.",
    )
    def stream_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        connection: StreamConnection = getattr(context.resources, connection_key)
        seen: dict[str, Any] = (
            json.loads(context.cursor) if context.cursor else {"next": 0, "first": {}, "newest": {}}
        )
        states: dict[str, Committed] = {}

        def state(partition: str) -> Committed:
            if partition not in states:
                states[partition] = committed(context.instance, raw_key, partition, source.queue)
            return states[partition]

        rejected: dict[str | None, list[Event]] = defaultdict(list)
        last = min(connection.watermark(source.queue), seen["next"] + SCAN_LIMIT - 1)
        if last >= seen["next"]:
            for offset, body in connection.read(source.queue, seen["next"], last, source.prefetch):
                event = read_event(offset, body, source, declaration.partitions)
                partition = event.partition
                if partition is None:
                    rejected[None].append(event)
                    continue
                own = state(partition)
                if own.written and offset < own.next_offset:
                    continue
                if own.closed_at is not None and source.late_events == "reject":
                    rejected[partition].append(event)
                    continue
                seen["first"].setdefault(partition, offset)
                seen["newest"][partition] = offset
            seen["next"] = last + 1
        pending = [
            p for p, newest in seen["newest"].items() if newest >= state(p).next_offset
        ]  # a partition never written has next_offset 0
        seen["newest"] = {p: seen["newest"][p] for p in pending}
        seen["first"] = {p: seen["first"][p] for p in pending}
        busy = context.instance.get_runs(
            filters=dg.RunsFilter(tags=stream_tag, statuses=NOT_FINISHED_STATUSES), limit=1
        )
        requests = []
        closure = downstream_closure(context.repository_def.asset_graph, {raw_key}, partitions_def)
        for group in [] if busy else contiguous_ranges(pending, order):
            tags = dict(stream_tag)
            if len(group) > 1:
                tags |= {RANGE_START: group[0], RANGE_END: group[-1]}
            never_written = [seen["first"][p] for p in group if not state(p).written]
            if never_written:
                tags[STREAM_FROM_TAG] = str(min(never_written))
            newest = max(seen["newest"][p] for p in group)
            start = min(state(p).next_offset for p in group)
            requests.append(
                dg.RunRequest(
                    run_key=f"{source.name}/{group[0]}...{group[-1]}:{start}-{newest}",
                    asset_selection=[
                        raw_key,
                        *runnable_downstream(context, closure, {raw_key}, group, partitions_def),
                    ],
                    partition_key=group[0] if len(group) == 1 else None,
                    # a range's steps run side by side under the code location's executor
                    run_config=(run_config or {}) if len(group) == 1 else {},
                    tags=tags,
                )
            )
        observations = [
            dg.AssetObservation(
                raw_key,
                partition=partition,
                metadata={
                    "source/rejected_events": len(events),
                    "source/rejected": dg.MetadataValue.md(
                        events_table(events, source, _reason(partition))
                    ),
                },
            )
            for partition, events in rejected.items()
        ]
        return dg.SensorResult(
            run_requests=requests, cursor=json.dumps(seen), asset_events=observations
        )

    return stream_sensor


def _reason(partition: str | None) -> str | None:
    """Why the events were rejected: late for a closed ``partition``, or (None) their own."""
    return None if partition is None else f"late_event (rejected): {partition} closed"
