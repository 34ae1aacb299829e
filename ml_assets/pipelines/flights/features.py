"""Flight features: what is known about a flight when it is scheduled.

One implementation shared by the ``flight_features`` asset and the serving app, so a flight
gets the same features in training and in production. ``FeatureLookups`` indexes the tables a
flight's features are looked up in (weather, planes, recent delays) once; its ``columns`` is
plain numpy, as fast for one flight in a request as for a day of flights in an asset.
Recent-delay statistics come only from flights of earlier days (``trailing_stats``), never from
the flight's own day.
"""

import functools
from collections.abc import Hashable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from ml_assets.pipelines.flights import config

SCHEDULE_COLUMNS = (
    "year", "month", "day", "sched_dep_time", "sched_arr_time", "carrier", "flight",
    "tailnum", "origin", "dest", "distance",
)  # fmt: skip
"""What a scheduler knows before departure: the inputs of ``build_features``."""
TARGET = "arr_delay"
"""Arrival delay in minutes; missing for cancelled and diverted flights."""
ROUTE = ("origin", "dest")
CARRIER = ("carrier",)
WEATHER_FEATURES = config.WEATHER_MEASURES
STAT_NAMES = ("flights_7d", "arr_delay_mean_7d", "delayed_share_7d", "cancelled_share_7d")

CATEGORICAL_FEATURES = ("carrier", "origin", "dest")
NUMERIC_FEATURES = (
    "dep_hour", "dep_minute_of_day", "arr_hour", "scheduled_minutes", "weekday", "month",
    "day_of_year", "is_holiday", "days_to_holiday", "distance", "plane_age", "plane_seats",
    "plane_engines", *WEATHER_FEATURES, "weather_imputed",
    *(f"route_{s}" for s in STAT_NAMES), *(f"carrier_{s}" for s in STAT_NAMES),
)  # fmt: skip
MODEL_FEATURES = (*CATEGORICAL_FEATURES, *NUMERIC_FEATURES)


def trailing_stats(history: pd.DataFrame, keys: Sequence[str], prefix: str) -> pd.DataFrame:
    """Delay statistics per ``keys`` over ``history`` (the previous days' clean flights)."""
    columns = [f"{prefix}_{s}" for s in STAT_NAMES]
    if history.empty:
        return pd.DataFrame(
            {**{k: pd.Series(dtype="string") for k in keys},
             **{c: pd.Series(dtype="float64") for c in columns}}
        )  # fmt: skip
    frame = history.assign(
        _delayed=(history[TARGET] > config.DELAYED_MINUTES).astype(float),
        _cancelled=history["cancelled"].astype(float),
    )
    grouped = frame.groupby(list(keys), observed=True)
    stats = pd.DataFrame(
        {
            columns[0]: grouped.size(),
            columns[1]: grouped[TARGET].mean(),
            columns[2]: grouped["_delayed"].mean(),
            columns[3]: grouped["_cancelled"].mean(),
        }
    )
    return stats.reset_index()


NAT = np.iinfo(np.int64).min
"""Missing timestamp, as nanoseconds (numpy's ``NaT``)."""
HOUR_NS = 3_600_000_000_000
IDENTITY_COLUMNS = ("flight_id", "scheduled_departure", "time_hour", "tailnum", "flight")
FEATURE_COLUMNS = (*IDENTITY_COLUMNS, *MODEL_FEATURES, TARGET)
"""The columns of ``flight_features``, in order."""


NO_HOLIDAY_DAYS = 366
"""``days_to_holiday`` where the calendar knows no holiday near the date (years outside the
holidays package's range): as far as a holiday gets within a year."""


@functools.lru_cache(maxsize=64)  # bounded: request dates are the caller's choice
def _holidays(years: tuple[int, ...]) -> np.ndarray:
    import holidays

    return np.array(
        sorted(holidays.country_holidays(config.HOLIDAY_COUNTRY, years=years)),
        dtype="datetime64[D]",
    )


def _days_to_holiday(days: np.ndarray) -> np.ndarray:
    """Days from each date (``datetime64[D]``) to the nearest public holiday."""
    if not len(days):
        return np.zeros(0, dtype=int)
    years = days.astype("datetime64[Y]").astype(int) + 1970
    known = _holidays(tuple(range(int(years.min()) - 1, int(years.max()) + 2)))
    if not len(known):
        return np.full(len(days), NO_HOLIDAY_DAYS, dtype=int)
    position = np.searchsorted(known, days)
    after = known[np.minimum(position, len(known) - 1)]
    before = known[np.maximum(position - 1, 0)]
    nearest = np.minimum(np.abs(after - days), np.abs(days - before)).astype(int)
    return np.minimum(nearest, NO_HOLIDAY_DAYS)


@functools.lru_cache(maxsize=1 << 16)
def _local_to_utc_ns(year: int, month: int, day: int, hour: int, minute: int) -> int:
    """Nanoseconds since the epoch of a local wall time at the airports.

    A wall time that happens twice (the autumn DST change) is ambiguous: missing (``NAT``). One
    that never happens (the spring gap) moves forward to the end of the gap.
    """
    zone = ZoneInfo(config.TIMEZONE)
    wall = datetime(year, month, day, hour, minute)
    first, second = wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1)
    instant = first.astimezone(UTC)
    if first.utcoffset() != second.utcoffset():
        if instant.astimezone(zone).replace(tzinfo=None) == wall:
            return NAT
        instant = _end_of_gap(second.astimezone(UTC), instant, zone)
    return (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def _end_of_gap(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The first instant with ``after``'s offset (the DST switch), by bisection."""
    target = after.astimezone(zone).utcoffset()
    while after - before > timedelta(minutes=1):
        middle = before + (after - before) / 2
        if middle.astimezone(zone).utcoffset() == target:
            after = middle
        else:
            before = middle
    return after.replace(second=0, microsecond=0)


class _Table:
    """Rows of a frame by key, with a row of missing values for keys it does not hold."""

    def __init__(self, frame: pd.DataFrame, keys: Sequence[str], columns: Sequence[str]) -> None:
        unique = frame.drop_duplicates(list(keys))
        key_values = [unique[k].to_numpy(dtype=object) for k in keys]
        self.index = {k: i for i, k in enumerate(zip(*key_values, strict=True))}
        values = unique.loc[:, list(columns)].to_numpy(dtype="float64", na_value=np.nan)
        self.values = np.vstack([values, np.full((1, len(columns)), np.nan)])
        self.columns = tuple(columns)

    def lookup(self, keys: Iterable[tuple[Hashable, ...]], n: int) -> dict[str, np.ndarray]:
        rows = np.fromiter((self.index.get(k, -1) for k in keys), dtype=np.intp, count=n)
        found = self.values[rows]
        return {column: found[:, i] for i, column in enumerate(self.columns)}


def _flight_ids(year, month, day, carrier, number, origin, dep) -> np.ndarray:
    """``date/carrier+number/origin/scheduled time``, e.g. ``2013-03-10/B6727/JFK/2359``."""
    rows = zip(
        year.tolist(), month.tolist(), day.tolist(), carrier.tolist(),
        np.asarray(number).tolist(), origin.tolist(), dep.tolist(), strict=True,
    )  # fmt: skip
    return np.array(
        [f"{y}-{m:02d}-{d:02d}/{c}{f}/{o}/{t:04d}" for y, m, d, c, f, o, t in rows], dtype=object
    )


def _stat_columns(prefix: str) -> list[str]:
    return [f"{prefix}_{s}" for s in STAT_NAMES]


class FeatureLookups:
    """The tables a flight's features are looked up in, indexed once.

    ``weather`` is clean hourly weather (``origin``, ``time_hour`` UTC, measures, ``imputed``);
    ``planes`` the reference table; the stats come from ``trailing_stats`` over the days before.
    Unknown planes, weather hours, routes or carriers give missing values (and 0 recent
    flights), which the model handles; a lookup never fails.
    """

    def __init__(
        self,
        weather: pd.DataFrame,
        planes: pd.DataFrame,
        route_stats: pd.DataFrame,
        carrier_stats: pd.DataFrame,
    ) -> None:
        hourly = weather.assign(
            time_hour=pd.DatetimeIndex(weather["time_hour"]).tz_convert("UTC").asi8,
            weather_imputed=weather["imputed"].astype("float64"),
        )
        self.weather = _Table(
            hourly, ("origin", "time_hour"), (*WEATHER_FEATURES, "weather_imputed")
        )
        self.planes = _Table(planes, ("tailnum",), ("year", "seats", "engines"))
        self.routes = _Table(route_stats, ROUTE, _stat_columns("route"))
        self.carriers = _Table(carrier_stats, CARRIER, _stat_columns("carrier"))

    def columns(self, flights: Mapping[str, Sequence]) -> dict[str, np.ndarray]:
        """Feature columns of ``flights`` (``SCHEDULE_COLUMNS``, as a frame or a dict of
        sequences): identity columns, then ``MODEL_FEATURES`` as float64 (categoricals as
        objects), then the target when ``flights`` carries it."""
        n = len(flights["year"])
        year, month, day, dep, arr = (
            np.asarray(flights[c], dtype=np.int64)
            for c in ("year", "month", "day", "sched_dep_time", "sched_arr_time")
        )
        carrier, origin, dest, tailnum = (
            np.asarray(flights[c], dtype=object) for c in ("carrier", "origin", "dest", "tailnum")
        )
        dep_hour, dep_minute = dep // 100, dep % 100
        departure = np.fromiter(
            map(_local_to_utc_ns, year.tolist(), month.tolist(), day.tolist(),
                dep_hour.tolist(), dep_minute.tolist()),
            dtype=np.int64, count=n,
        )  # fmt: skip
        missing = departure == NAT
        time_hour = np.where(missing, NAT, departure - departure % HOUR_NS)
        dates = (
            (year - 1970).astype("datetime64[Y]").astype("datetime64[M]")
            + (month - 1).astype("timedelta64[M]")
        ).astype("datetime64[D]") + (day - 1).astype("timedelta64[D]")
        year_start = (year - 1970).astype("datetime64[Y]").astype("datetime64[D]")
        days_to_holiday = _days_to_holiday(dates)
        arr_minute_of_day = (arr // 100) * 60 + arr % 100

        out: dict[str, np.ndarray] = {
            "flight_id": _flight_ids(year, month, day, carrier, flights["flight"], origin, dep),
            "scheduled_departure": departure,
            "time_hour": time_hour,
            "tailnum": tailnum,
            "flight": np.asarray(flights["flight"]),
            "carrier": carrier,
            "origin": origin,
            "dest": dest,
            "dep_hour": dep_hour,
            "dep_minute_of_day": dep_hour * 60 + dep_minute,
            "arr_hour": arr // 100,
            "scheduled_minutes": (arr_minute_of_day - (dep_hour * 60 + dep_minute)) % (24 * 60),
            "weekday": (dates.astype(np.int64) + 3) % 7,  # 1970-01-01 was a Thursday
            "month": month,
            "day_of_year": (dates - year_start).astype(np.int64) + 1,
            "is_holiday": (days_to_holiday == 0).astype(int),
            "days_to_holiday": days_to_holiday,
            "distance": np.asarray(flights["distance"], dtype="float64"),
        }
        plane = self.planes.lookup(zip(tailnum, strict=True), n)
        out["plane_age"] = year - plane["year"]
        out["plane_seats"], out["plane_engines"] = plane["seats"], plane["engines"]
        out.update(self.weather.lookup(zip(origin, time_hour.tolist(), strict=True), n))
        out.update(self.routes.lookup(zip(origin, dest, strict=True), n))
        out.update(self.carriers.lookup(zip(carrier, strict=True), n))
        for prefix in ("route", "carrier"):
            flights_7d = out[f"{prefix}_flights_7d"]
            out[f"{prefix}_flights_7d"] = np.where(np.isnan(flights_7d), 0.0, flights_7d)
        for column in NUMERIC_FEATURES:
            # Rounded to float32 precision (kept as float64): tree models and their ONNX
            # exports then compare exactly the same numbers, so both predict the same.
            out[column] = np.asarray(out[column], dtype="float32").astype("float64")
        target = flights[TARGET] if TARGET in flights else np.full(n, np.nan)
        out[TARGET] = np.asarray(target, dtype="float64")
        return {column: out[column] for column in FEATURE_COLUMNS}

    def frame(self, flights: Mapping[str, Sequence]) -> pd.DataFrame:
        """``columns`` as the ``flight_features`` frame, one row per flight in order."""
        columns = self.columns(flights)
        frame = pd.DataFrame(columns)
        frame["scheduled_departure"] = pd.to_datetime(
            columns["scheduled_departure"], utc=True
        ).tz_convert(config.TIMEZONE)
        frame["time_hour"] = pd.to_datetime(columns["time_hour"], utc=True)
        return frame.astype({c: "string" for c in ("tailnum", *CATEGORICAL_FEATURES)})


def lookup_tables(
    history: pd.DataFrame, weather_clean: pd.DataFrame, planes: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """What ``FeatureLookups`` indexes for a day: that day's clean weather, the plane table, and
    the recent-delay statistics of ``history`` (the clean flights of the days before). The
    ``online_features`` snapshot of the day, which the platform builds from the declared
    history and reads (``features:`` in ``pipeline.yaml``)."""
    return {
        "weather": weather_clean.loc[:, ["origin", "time_hour", *WEATHER_FEATURES, "imputed"]],
        "planes": planes.loc[:, ["tailnum", "year", "seats", "engines"]],
        "route_stats": trailing_stats(history, ROUTE, "route"),
        "carrier_stats": trailing_stats(history, CARRIER, "carrier"),
    }


def feature_frame(
    rows: pd.DataFrame, history: pd.DataFrame, weather_clean: pd.DataFrame, planes: pd.DataFrame
) -> pd.DataFrame:
    """The ``flight_features`` rows of a day's clean flights (``rows``), looked up in that day's
    ``lookup_tables``: the platform hands it the declared history and reads."""
    return FeatureLookups(**lookup_tables(history, weather_clean, planes)).frame(rows)


def build_features(
    flights: pd.DataFrame,
    weather: pd.DataFrame,
    planes: pd.DataFrame,
    route_stats: pd.DataFrame,
    carrier_stats: pd.DataFrame,
) -> pd.DataFrame:
    """One feature row per flight of ``flights``, in order (see ``FeatureLookups``)."""
    return FeatureLookups(weather, planes, route_stats, carrier_stats).frame(flights)
