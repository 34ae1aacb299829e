"""Cleaning rules for flights and weather: typed, deduplicated, outliers and gaps handled.

Plain functions of data frames (no Dagster), applying the rules declared in ``config``.
"""

from collections.abc import Mapping
from datetime import date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from ml_assets.data.cleaning import Cleaned, Triage
from ml_assets.data.plausibility import NO_HISTORY, Accepted
from ml_assets.pipelines.flights import config

FLIGHT_NUMBERS = (
    "year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time",
    "sched_arr_time", "arr_delay", "flight", "air_time", "distance", "hour", "minute",
)  # fmt: skip
WEATHER_NUMBERS = ("year", "month", "day", "hour", *config.WEATHER_MEASURES)
FLIGHT_INTEGERS = (
    "year", "month", "day", "sched_dep_time", "sched_arr_time", "flight", "distance", "hour",
    "minute",
)  # fmt: skip
"""Columns the clean table holds as ``int64``."""
LARGEST_WHOLE = 2**53
"""Beyond this a float64 no longer holds every whole number (and may not fit an int64)."""


MINUTES_PER_DAY = 24 * 60


def _is_on(triage: Triage, day: date) -> pd.Series:
    parsed = triage.parsed
    return (
        (parsed["year"] == day.year) & (parsed["month"] == day.month) & (parsed["day"] == day.day)
    )


def _minutes(hhmm: pd.Series) -> pd.Series:
    """Minutes after local midnight of an HHMM clock time."""
    return (hhmm // 100) * 60 + hhmm % 100


def _utc_offset(zone: str, day: date) -> float:
    """A time zone's UTC offset in minutes at noon of ``day`` (NaN: unknown zone)."""
    try:
        offset = datetime.combine(day, time(12), tzinfo=ZoneInfo(zone)).utcoffset()
    except (ZoneInfoNotFoundError, ValueError):
        return np.nan
    return offset.total_seconds() / 60


def _cross_check_flights(triage: Triage, day: date, airports: pd.DataFrame) -> None:
    """Reject rows whose columns contradict each other (``inconsistent:<column>``).

    Delays are the actual minus the scheduled clock time, across midnight; a departure delay is
    recorded exactly when the departure time is, an arrival delay only with an arrival time,
    and the air time exactly with the arrival delay (not for cancelled or diverted flights);
    nothing arrives that did not depart; the scheduled ``hour`` and
    ``minute`` spell ``sched_dep_time`` and ``time_hour`` is that local hour in UTC; and the
    time in the air fits between departure and arrival (arrival is local at the destination,
    so where the destination's time zone is unknown this last rule is not applied).
    """
    p = triage.parsed
    for actual, scheduled, delay in (
        ("dep_time", "sched_dep_time", "dep_delay"),
        ("arr_time", "sched_arr_time", "arr_delay"),
    ):
        gap = (_minutes(p[actual]) - _minutes(p[scheduled]) - p[delay]) % MINUTES_PER_DAY
        triage.reject(gap.notna() & (gap != 0), f"inconsistent:{delay}")
    triage.reject(p["dep_time"].isna() != p["dep_delay"].isna(), "inconsistent:dep_delay")
    triage.reject(p["arr_delay"].notna() & p["arr_time"].isna(), "inconsistent:arr_delay")
    triage.reject(p["arr_time"].notna() & p["dep_time"].isna(), "inconsistent:arr_time")
    triage.reject(p["air_time"].notna() != p["arr_delay"].notna(), "inconsistent:air_time")
    triage.reject(p["hour"] * 100 + p["minute"] != p["sched_dep_time"], "inconsistent:hour")
    # rows of other days are rejected already: the local hours are the partition day's; the
    # repeated hour when clocks go back may be either of its two UTC hours
    hours = pd.date_range(pd.Timestamp(day), periods=24, freq="h")
    utc = [
        pd.Series(
            hours.tz_localize(
                config.TIMEZONE, ambiguous=dst, nonexistent="shift_forward"
            ).tz_convert("UTC"),
            index=range(24),
        )
        for dst in (np.ones(24, bool), np.zeros(24, bool))
    ]
    on_time = (p["hour"].map(utc[0]) == p["time_hour"]) | (p["hour"].map(utc[1]) == p["time_hour"])
    triage.reject(p["hour"].notna() & ~on_time, "inconsistent:time_hour")
    zones = triage.values["dest"].map(airports.set_index("faa")["tzone"])
    offsets = {zone: _utc_offset(zone, day) for zone in zones.dropna().unique()}
    arrival = _minutes(p["arr_time"]) - zones.map(offsets).astype("float64")
    departure = _minutes(p["dep_time"]) - _utc_offset(config.TIMEZONE, day)
    elapsed = (arrival - departure) % MINUTES_PER_DAY
    triage.reject(p["air_time"] > elapsed, "inconsistent:air_time")


def clean_flights(
    raw: pd.DataFrame,
    day: date,
    references: Mapping[str, pd.DataFrame],
    history: Accepted = NO_HISTORY,
) -> Cleaned:
    """Split one day's raw flights into clean and rejected rows, the plausibility rules judged
    against ``history`` (the accepted days before).

    Cancelled flights (no departure time) are kept and flagged ``cancelled``; flights that
    departed but have no arrival delay (diverted) are kept and flagged ``diverted``; a
    destination or tail number that the reference tables lack is kept and flagged
    (``dest_known``, ``tailnum_known``).
    """
    triage = Triage(raw, config.FLIGHT_COLUMNS)
    notes = triage.declared(config.FLIGHTS, FLIGHT_NUMBERS, ["time_hour"], references)
    for column in FLIGHT_INTEGERS:  # 1.5, inf or 1e308 flights would not cast to int64
        value = triage.parsed[column]
        whole = (value % 1 == 0) & (value.abs() <= LARGEST_WHOLE)
        triage.reject(value.notna() & ~whole, f"not_whole:{column}")
    triage.reject(~_is_on(triage, day), "wrong_partition")
    _cross_check_flights(triage, day, references["airports"])
    notes |= triage.plausible(config.FLIGHTS, history)
    triage.duplicates(config.FLIGHT_KEY)

    kept = triage.kept()
    for column in FLIGHT_INTEGERS:
        kept[column] = kept[column].astype("int64")
    kept["tailnum"] = kept["tailnum"].astype("string")
    kept["cancelled"] = kept["dep_time"].isna()
    kept["diverted"] = ~kept["cancelled"] & kept["arr_delay"].isna()
    kept["scheduled_departure"] = pd.to_datetime(
        kept[["year", "month", "day", "hour", "minute"]]
    ).dt.tz_localize(config.TIMEZONE, ambiguous="NaT", nonexistent="shift_forward")
    notes |= {"cancelled": int(kept["cancelled"].sum()), "diverted": int(kept["diverted"].sum())}
    return Cleaned(kept, triage.rejected(), len(kept), notes, tuple(triage.judgements))


def _missing_run_lengths(missing: np.ndarray) -> np.ndarray:
    """For each position, the length of the run of equal ``missing`` flags it is in (0 where
    the value is present)."""
    run = np.cumsum(np.r_[True, missing[1:] != missing[:-1]])
    return np.bincount(run, weights=missing)[run]


def _fill_short_gaps(station: pd.DataFrame) -> pd.DataFrame:
    """Linearly interpolate each column's runs of at most ``WEATHER_MAX_GAP_HOURS`` missing
    hours (edges take the nearest reading); longer runs stay missing as a whole
    (``interpolate(limit=...)`` would fill part of a long gap)."""
    values = station.to_numpy(dtype="float64", copy=True)
    hours = np.arange(len(values))
    for column in values.T:  # views: filling them fills ``values``
        missing = np.isnan(column)
        if missing.any() and not missing.all():
            short = missing & (_missing_run_lengths(missing) <= config.WEATHER_MAX_GAP_HOURS)
            column[short] = np.interp(hours[short], hours[~missing], column[~missing])
    return pd.DataFrame(values, index=station.index, columns=station.columns)


def clean_weather(
    raw: pd.DataFrame,
    day: date,
    references: Mapping[str, pd.DataFrame],
    history: Accepted = NO_HISTORY,
) -> Cleaned:
    """Split one day's raw hourly weather into clean and rejected rows, the plausibility rules
    judged against ``history`` (the accepted days before).

    The clean table has one row per origin airport and local hour of ``day``: blanked outliers
    and missing hours are interpolated within ``WEATHER_MAX_GAP_HOURS``; rows that were not in
    the raw file are flagged ``imputed``. A dew point above the temperature is a broken
    reading (``inconsistent:dewp``).
    """
    triage = Triage(raw, config.WEATHER_COLUMNS)
    notes = triage.declared(config.WEATHER, WEATHER_NUMBERS, ["time_hour"], references)
    triage.reject(triage.parsed["dewp"] > triage.parsed["temp"], "inconsistent:dewp")
    triage.reject(~_is_on(triage, day), "wrong_partition")
    hours = pd.date_range(pd.Timestamp(day), periods=25, freq="h", tz=config.TIMEZONE)
    hours = hours[hours.date == day].tz_convert("UTC")  # 23, 24 or 25 hours across DST
    triage.reject(~triage.parsed["time_hour"].isin(hours), "off_grid:time_hour")
    notes |= triage.plausible(config.WEATHER, history)
    triage.duplicates(config.WEATHER_KEY)
    readings = triage.kept()

    grid = pd.MultiIndex.from_product([config.ORIGINS, hours], names=["origin", "time_hour"])
    measured = readings.set_index(["origin", "time_hour"])[list(config.WEATHER_MEASURES)]
    clean = measured.reindex(grid).reset_index()
    clean["imputed"] = ~clean.set_index(["origin", "time_hour"]).index.isin(measured.index)

    missing_before = int(clean[list(config.WEATHER_INTERPOLATED)].isna().sum().sum())
    filled = clean.groupby("origin", group_keys=False)[list(config.WEATHER_INTERPOLATED)].apply(
        _fill_short_gaps
    )
    clean[list(config.WEATHER_INTERPOLATED)] = filled
    clean["wind_gust"] = clean["wind_gust"].fillna(clean["wind_speed"])
    local = clean["time_hour"].dt.tz_convert(config.TIMEZONE)
    clean["hour"] = local.dt.hour.astype("int64")
    clean["origin"] = clean["origin"].astype("string")
    notes |= {
        "outliers_blanked": sum(n for rule, n in notes.items() if rule.startswith("blanked:")),
        "hours_imputed": int(clean["imputed"].sum()),
        "values_interpolated": missing_before
        - int(clean[list(config.WEATHER_INTERPOLATED)].isna().sum().sum()),
    }
    return Cleaned(clean, triage.rejected(), len(readings), notes, tuple(triage.judgements))
