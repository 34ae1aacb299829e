"""The ``stream`` kind: events on a RabbitMQ stream queue, each a JSON object, placed in the
pipeline's time partitions by their declared ``event_time``.

A run of a partition (or a range of them) reads the stream's high watermark when it starts and
consumes from the partition's committed offset up to it (at most ``batch_size`` events, at most
``prefetch`` unacknowledged). Each partition's raw is its earlier raw plus its new events,
deduplicated by the declared key (a later event with a key replaces the earlier one; a replayed
event changes nothing). Only once every partition of the run is written does Dagster record
their materializations, and the offsets are in those: ``stream/next_offset``, the offset up to
which the partition holds every event of the stream, and ``stream/closed_at``. So the commit is
the partition's latest materialization: a run that dies after writing and before that record
replays the same events into the same rows. A run of a partition never written by this queue
starts at the stream's first offset, or at the offset its ``STREAM_FROM_TAG`` gives (the
sensor's, which saw where the partition's first event is).

A partition *closes* when it is written after the stream carried an event of a later partition;
an event for it that comes after is late: ``reopen`` adds it (the partition is written again),
``reject`` leaves the partition as it was and lists the event (offset, key, event time, reason)
in the run's metadata. An event that cannot be placed (not a JSON object, no readable event
time, a time outside the partitions) belongs to no partition: it is counted and listed, and
never written. Consumers of one stream take turns (``StreamConnection.consumer_lock``): their
read-merge-write of a partition must not interleave.
"""

import json
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from ml_assets.contract.dagster_terms import asset_key, partitions_definition
from ml_assets.contract.declaration import Partitions, PipelineDeclaration, StreamSource
from ml_assets.data.checks import SchemaCheck
from ml_assets.data.cleaning import text_frame
from ml_assets.data.data_layers import partitioned
from ml_assets.data.sources.ingest import (
    ROWS_IN_RAW,
    ingest_args,
    report_landed_rows,
    rows_check,
)
from resources.partition_frames import PartitionStream
from resources.stream_connection import StreamConnection, resource_key
from resources.warehouse import Warehouse

NEXT_OFFSET = "stream/next_offset"
CLOSED_AT = "stream/closed_at"
QUEUE = "source/queue"
STREAM_FROM_TAG = "ml_assets/stream_from"
"""A run tag: the offset a run starts at for the partitions this queue never wrote."""
SAMPLE = 20
"""Late or unplaced events listed in the metadata (all are counted)."""


@dataclass(frozen=True)
class Event:
    """One event of the stream: its fields and partition, or why it has none."""

    offset: int
    fields: dict[str, Any] | None
    partition: str | None
    reason: str | None = None


def read_event(offset: int, body: bytes, source: StreamSource, partitions: Partitions) -> Event:
    """The event at ``offset`` placed in its partition by its ``event_time``."""
    try:
        fields = json.loads(body)
    except ValueError:
        return Event(offset, None, None, "unreadable: not JSON")
    if not isinstance(fields, dict):
        return Event(offset, None, None, "unreadable: not a JSON object")
    stamp = fields.get(source.event_time)
    when = _event_time(stamp, ZoneInfo(partitions.timezone))
    if when is None:
        return Event(offset, fields, None, f"no_event_time: {source.event_time}={stamp!r}")
    partition = partitions.key_of(when.date())
    if partition is None:
        return Event(offset, fields, None, f"outside_partitions: {when.isoformat()}")
    return Event(offset, fields, partition)


def _event_time(value: Any, zone: ZoneInfo) -> datetime | None:
    """``value`` (ISO 8601 text, naive in ``zone``; or seconds since the epoch) in ``zone``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).astimezone(zone)
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when.replace(tzinfo=zone) if when.tzinfo is None else when.astimezone(zone)


@dataclass(frozen=True)
class Committed:
    """What a partition's latest materialization recorded of this queue."""

    written: bool
    next_offset: int = 0
    closed_at: int | None = None


def committed(
    instance: dg.DagsterInstance, key: dg.AssetKey, partition: str, queue: str
) -> Committed:
    """The offsets recorded with the latest materialization of ``partition`` (one written from
    another queue or kind counts as never written)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    if not records:
        return Committed(False)
    metadata = records[0].asset_materialization.metadata
    recorded_queue = metadata.get(QUEUE)
    if NEXT_OFFSET not in metadata or recorded_queue is None or recorded_queue.value != queue:
        return Committed(False)
    closed = metadata[CLOSED_AT].value.get(partition) if CLOSED_AT in metadata else None
    return Committed(True, int(metadata[NEXT_OFFSET].value), closed)


@dataclass
class Batch:
    """What one run consumed: the offsets ``[first, last]`` and where each event went."""

    first: int
    last: int
    events_read: int = 0
    new: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    late: dict[str, list[Event]] = field(default_factory=lambda: defaultdict(list))
    unplaced: list[Event] = field(default_factory=list)
    closed_at: dict[str, int | None] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)
    """Each field seen and its JSON type (the schema seen)."""
    retries: int = 0


def consume(
    connection: StreamConnection,
    source: StreamSource,
    partitions: Partitions,
    state: dict[str, Committed],
    start: int | None,
) -> Batch:
    """Consume the events of the partitions ``state`` (what each recorded) holds, from the
    earliest offset one of them needs (``start`` for those never written, else the stream's
    first) up to the watermark read now, at most ``batch_size`` of them."""
    order = {k: i for i, k in enumerate(partitions_definition(partitions).get_partition_keys())}
    watermark = connection.watermark(source.queue)
    first = min(s.next_offset if s.written else (start or 0) for s in state.values())
    batch = Batch(first, min(watermark, first + source.batch_size - 1))
    if batch.last < first:
        batch.closed_at = {p: s.closed_at for p, s in state.items()}
        return batch
    later_at: dict[str, int] = {}  # where the stream first carried a later partition's event
    highest = -1  # the latest partition (its index) the read has seen
    read = connection.read(source.queue, first, batch.last, source.prefetch)
    for offset, body in read:
        event = read_event(offset, body, source, partitions)
        batch.events_read += 1
        for name, value in (event.fields or {}).items():
            batch.fields.setdefault(name, type(value).__name__)
        if event.partition is None:
            batch.unplaced.append(event)
            continue
        if order[event.partition] > highest:
            highest = order[event.partition]
            for p in state:
                if order[p] < highest:
                    later_at.setdefault(p, offset)
        if event.partition not in state:
            continue
        own = state[event.partition]
        if own.written and offset < own.next_offset:
            continue  # in raw already: a run over several partitions starts at the earliest
        if own.closed_at is not None:
            batch.late[event.partition].append(event)
            if source.late_events == "reject":
                continue
        batch.new[event.partition].append(event.fields)
    batch.retries = read.retries
    batch.closed_at = {
        p: s.closed_at if s.closed_at is not None else later_at.get(p) for p, s in state.items()
    }
    return batch


def events_table(events: list[Event], source: StreamSource, reason: str | None) -> str:
    """The first ``SAMPLE`` events as a table: offset, key, event time and ``reason`` (None:
    each event's own)."""
    rows = [
        {
            "offset": e.offset,
            **{k: (e.fields or {}).get(k) for k in source.key},
            source.event_time: (e.fields or {}).get(source.event_time),
            "reason": reason or e.reason,
        }
        for e in events[:SAMPLE]
    ]
    more = f"\n\n… and {len(events) - SAMPLE} more" if len(events) > SAMPLE else ""
    return pd.DataFrame(rows).to_markdown(index=False) + more


def asset(
    declaration: PipelineDeclaration, source: StreamSource, schema: pa.DataFrameSchema
) -> dg.AssetsDefinition:
    """``raw_<source>``: every event of each partition the stream carried so far, once."""
    name = f"raw_{source.name}"
    key = asset_key(declaration, name)
    connection_key = resource_key(source.connection)

    @dg.asset(
        **ingest_args(declaration, name, source, schema, {"rabbitmq"}),
        check_specs=[rows_check(declaration, source)],
        required_resource_keys={connection_key, "warehouse"},
        pool=connection_key,
        **partitioned(declaration),
    )
    def raw(context: dg.AssetExecutionContext) -> Iterator:
        connection: StreamConnection = getattr(context.resources, connection_key)
        warehouse: Warehouse = context.resources.warehouse
        keys = context.partition_keys
        started = time.perf_counter()
        landed_schema = SchemaCheck(schema)
        reads: dict[str, dict[str, Any]] = {}
        start = context.run.tags.get(STREAM_FROM_TAG)
        with connection.consumer_lock(source.queue) as still_held:
            state = {p: committed(context.instance, key, p, source.queue) for p in keys}
            batch = consume(
                connection, source, declaration.partitions, state, int(start) if start else None
            )
            shown = {
                "source/kind": "stream",
                "source/connection": connection.name,
                QUEUE: source.queue,
                "source/offset_range": f"[{batch.first}, {batch.last}]",
                "source/events_read": batch.events_read,
                "source/unplaced_events": len(batch.unplaced),
                "source/retries": batch.retries,
                "source/schema": dg.MetadataValue.json(batch.fields),
                NEXT_OFFSET: max(batch.last + 1, batch.first),
                CLOSED_AT: dg.MetadataValue.json(batch.closed_at),
            }
            if batch.unplaced:
                shown["source/unplaced"] = dg.MetadataValue.md(
                    events_table(batch.unplaced, source, None)
                )

            def write(partition: str) -> pd.DataFrame:
                earlier = warehouse.read(key, partition) if state[partition].written else None
                events = batch.new.get(partition, [])
                frame = _merged(earlier, events, source)
                landed_schema.add(partition, frame)
                late = batch.late.get(partition, [])
                reads[partition] = {
                    "source/events_new": len(events),
                    ROWS_IN_RAW: len(frame),
                    "source/late_events": len(late),
                    "source/late_policy": source.late_events,
                }
                if late:
                    action = "reopened" if source.late_events == "reopen" else "rejected"
                    reads[partition]["source/late"] = dg.MetadataValue.md(
                        events_table(late, source, f"late_event ({action}): {partition} closed")
                    )
                return frame

            def summary() -> dict[str, Any]:
                totals = {"source/seconds": round(time.perf_counter() - started, 3)}
                if len(reads) == 1:
                    return {**shown, **next(iter(reads.values())), **totals}
                return {
                    **shown,
                    **totals,
                    "source/events_new": sum(r["source/events_new"] for r in reads.values()),
                    ROWS_IN_RAW: sum(r[ROWS_IN_RAW] for r in reads.values()),
                    "source/late_events": sum(r["source/late_events"] for r in reads.values()),
                    "source/late_policy": source.late_events,
                }

            still_held()  # a consumer that lost its turn writes nothing: the next one replays
            yield dg.Output(PartitionStream(keys, write, metadata=summary))
        yield from report_landed_rows(context, key, landed_schema, reads, source)

    return raw


def _merged(
    earlier: pd.DataFrame | None, events: list[dict[str, Any]], source: StreamSource
) -> pd.DataFrame:
    """A partition's raw: its ``earlier`` raw and its new ``events`` as text, one row per key
    (the later one), the declared columns first."""
    frames = [] if earlier is None else [earlier]
    if events:
        frames.append(text_frame(pd.DataFrame.from_records(events)).astype("string"))
    if not frames:
        empty = {c: pd.Series(dtype="string") for c in source.columns}
        return text_frame(pd.DataFrame(empty)).astype("string")
    frame = pd.concat(frames, ignore_index=True)
    if set(source.key) <= set(frame.columns):
        frame = frame.drop_duplicates(subset=source.key, keep="last", ignore_index=True)
    declared = [c for c in source.columns if c in frame.columns]
    return frame[[*declared, *(c for c in frame.columns if c not in declared)]]
