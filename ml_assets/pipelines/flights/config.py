"""The flights pipeline's declared configuration: sources, partitions, cleaning rules, features.

Everything specific to NYC flights 2013 that the generic platform code consumes is declared
here as data, so a second pipeline is a new module with its own configuration, not a fork.
"""

from dataclasses import dataclass

import dagster as dg

KEY_PREFIX = "flights"
OWNERS = ["team:ml-platform"]
TIMEZONE = "America/New_York"
"""Local time of the NYC airports: ``year``/``month``/``day``/``hour`` columns are local."""

DAILY = dg.DailyPartitionsDefinition(start_date="2013-01-01", end_date="2014-01-01")
"""One partition per scheduled local departure date, 2013-01-01 … 2013-12-31."""

FLIGHTS_SOURCE = "flights"
WEATHER_SOURCE = "weather"
REFERENCE_TABLES = ("planes", "airports", "airlines")

ORIGINS = ("EWR", "JFK", "LGA")


@dataclass(frozen=True)
class Range:
    """A plausible range for a numeric column and what to do with a value outside it."""

    low: float
    high: float
    action: str
    """``reject`` sends the row to the rejected rows; ``null`` blanks the value (gap-filled)."""


FLIGHT_COLUMNS = (
    "year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time",
    "sched_arr_time", "arr_delay", "carrier", "flight", "tailnum", "origin", "dest",
    "air_time", "distance", "hour", "minute", "time_hour",
)  # fmt: skip
FLIGHT_KEY = ("year", "month", "day", "carrier", "flight", "origin", "sched_dep_time")
"""A scheduled flight is unique by date, carrier, flight number, origin and scheduled time."""
FLIGHT_REQUIRED = (
    "year", "month", "day", "sched_dep_time", "sched_arr_time", "carrier", "flight",
    "origin", "dest", "distance", "hour", "minute", "time_hour",
)  # fmt: skip
FLIGHT_RANGES = {
    "month": Range(1, 12, "reject"),
    "day": Range(1, 31, "reject"),
    "sched_dep_time": Range(0, 2359, "reject"),
    "sched_arr_time": Range(0, 2359, "reject"),
    "dep_time": Range(1, 2400, "reject"),
    "arr_time": Range(1, 2400, "reject"),
    "hour": Range(0, 23, "reject"),
    "minute": Range(0, 59, "reject"),
    "distance": Range(17, 5000, "reject"),
    "air_time": Range(10, 700, "reject"),
    "dep_delay": Range(-120, 1440, "reject"),
    "arr_delay": Range(-120, 1440, "reject"),
}
"""Delays beyond a day or ahead of schedule by two hours are recording errors, not flights."""

WEATHER_COLUMNS = (
    "origin", "year", "month", "day", "hour", "temp", "dewp", "humid", "wind_dir",
    "wind_speed", "wind_gust", "precip", "pressure", "visib", "time_hour",
)  # fmt: skip
WEATHER_KEY = ("origin", "time_hour")
WEATHER_REQUIRED = ("origin", "year", "month", "day", "hour", "time_hour")
WEATHER_MEASURES = (
    "temp",
    "dewp",
    "humid",
    "wind_dir",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
)
WEATHER_RANGES = {
    "month": Range(1, 12, "reject"),
    "day": Range(1, 31, "reject"),
    "hour": Range(0, 23, "reject"),
    "temp": Range(-40, 130, "null"),
    "dewp": Range(-60, 100, "null"),
    "humid": Range(0, 100, "null"),
    "wind_dir": Range(0, 360, "null"),
    "wind_speed": Range(0, 100, "null"),
    "wind_gust": Range(0, 150, "null"),
    "precip": Range(0, 5, "null"),
    "pressure": Range(900, 1100, "null"),
    "visib": Range(0, 10, "null"),
}
"""Sensor glitches (the 2013 data has a 1048 mph wind speed) are blanked, then gap-filled."""
WEATHER_MAX_GAP_HOURS = 3
"""Gap rule: a missing or blanked hourly reading is interpolated in time from the same
station's readings of that day when the gap is at most this many hours; longer gaps stay
empty (models see missing weather, which HistGradientBoosting handles natively)."""

TRAILING_DAYS = 7
"""Recent-delay features summarise the flights of the previous ``TRAILING_DAYS`` days only."""
DELAYED_MINUTES = 15
"""A flight counts as delayed when it arrives more than this many minutes late (FAA definition)."""
HOLIDAY_COUNTRY = "US"
WEATHER_INTERPOLATED = tuple(m for m in WEATHER_MEASURES if m != "wind_gust")
"""Measures the gap rule interpolates. ``wind_gust`` is only reported when there is a gust:
a missing gust means gusts no stronger than the sustained wind, so it takes ``wind_speed``."""
