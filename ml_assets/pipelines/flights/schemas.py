"""Pandera schemas of the flights pipeline's tables, with a description for every column.

The descriptions are what the Dagster UI shows as each asset's column schema.
"""

import pandera.pandas as pa

from ml_assets.data.schemas import flag_columns, range_checks, raw_schema, rejected_schema
from ml_assets.pipelines.flights import config
from ml_assets.pipelines.flights.features import CATEGORICAL_FEATURES, STAT_NAMES, TARGET

FLIGHT_DESCRIPTIONS = {
    "year": "Scheduled departure year (local time).",
    "month": "Scheduled departure month (local time).",
    "day": "Scheduled departure day of month (local time).",
    "dep_time": "Actual departure time, HHMM local; empty when the flight was cancelled.",
    "sched_dep_time": "Scheduled departure time, HHMM local.",
    "dep_delay": "Departure delay in minutes; negative means early.",
    "arr_time": "Actual arrival time, HHMM local at the destination.",
    "sched_arr_time": "Scheduled arrival time, HHMM local at the destination.",
    "arr_delay": "Arrival delay in minutes; negative means early. The model's target.",
    "carrier": "Two-letter carrier code (see airlines).",
    "flight": "Flight number.",
    "tailnum": "Plane tail number (see planes); may be empty.",
    "origin": "Origin airport: EWR, JFK or LGA.",
    "dest": "Destination airport FAA code.",
    "air_time": "Minutes in the air.",
    "distance": "Distance between the airports in miles.",
    "hour": "Scheduled departure hour, local.",
    "minute": "Scheduled departure minute, local.",
    "time_hour": "Scheduled departure hour as a UTC timestamp (joins to weather).",
}
WEATHER_DESCRIPTIONS = {
    "origin": "Weather station: the origin airport.",
    "year": "Local year of the reading.",
    "month": "Local month of the reading.",
    "day": "Local day of the reading.",
    "hour": "Local hour of the reading.",
    "temp": "Temperature in °F.",
    "dewp": "Dew point in °F.",
    "humid": "Relative humidity in %.",
    "wind_dir": "Wind direction in degrees.",
    "wind_speed": "Wind speed in mph.",
    "wind_gust": "Gust speed in mph (equals wind_speed when no gust was reported).",
    "precip": "Precipitation in inches.",
    "pressure": "Sea level pressure in millibars.",
    "visib": "Visibility in miles.",
    "time_hour": "Hour of the reading as a UTC timestamp.",
}


RAW_FLIGHTS = raw_schema("raw_flights", FLIGHT_DESCRIPTIONS)
RAW_WEATHER = raw_schema("raw_weather", WEATHER_DESCRIPTIONS)


def _typed(column: str, dtype: str, descriptions: dict, ranges: dict, nullable: bool = False):
    return pa.Column(
        dtype,
        checks=range_checks(column, ranges),
        nullable=nullable,
        description=descriptions[column],
    )


_FLIGHT_NULLABLE = {"dep_time", "dep_delay", "arr_time", "arr_delay", "air_time", "tailnum"}
_FLIGHT_FLOATS = {"dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"}
_FLIGHT_STRINGS = {"carrier", "tailnum", "origin", "dest"}

FLIGHTS_CLEAN = pa.DataFrameSchema(
    {
        **{
            column: _typed(
                column,
                "float64"
                if column in _FLIGHT_FLOATS
                else "string"
                if column in _FLIGHT_STRINGS
                else "int64",
                FLIGHT_DESCRIPTIONS,
                config.FLIGHT_RANGES,
                nullable=column in _FLIGHT_NULLABLE,
            )
            for column in config.FLIGHT_COLUMNS
            if column != "time_hour"
        },
        "origin": pa.Column(
            "string", pa.Check.isin(config.ORIGINS), description=FLIGHT_DESCRIPTIONS["origin"]
        ),
        "time_hour": pa.Column("datetime64[ns, UTC]", description=FLIGHT_DESCRIPTIONS["time_hour"]),
        "cancelled": pa.Column(bool, description="The flight never departed (no departure time)."),
        "diverted": pa.Column(bool, description="Departed but has no arrival delay (diverted)."),
        **flag_columns(config.FLIGHTS),
        "scheduled_departure": pa.Column(
            f"datetime64[ns, {config.TIMEZONE}]",
            nullable=True,
            description="Scheduled departure as a local timestamp.",
        ),
    },
    unique=list(config.FLIGHT_KEY),
    name="flights_clean",
    strict=True,
)

WEATHER_CLEAN = pa.DataFrameSchema(
    {
        "origin": pa.Column(
            "string", pa.Check.isin(config.ORIGINS), description=WEATHER_DESCRIPTIONS["origin"]
        ),
        "time_hour": pa.Column(
            "datetime64[ns, UTC]", description=WEATHER_DESCRIPTIONS["time_hour"]
        ),
        **{
            column: _typed(
                column, "float64", WEATHER_DESCRIPTIONS, config.WEATHER_RANGES, nullable=True
            )
            for column in config.WEATHER_MEASURES
        },
        "imputed": pa.Column(
            bool,
            description="The hour was missing from the raw file and was filled by the gap rule.",
        ),
        "hour": pa.Column(
            "int64", pa.Check.in_range(0, 23), description=WEATHER_DESCRIPTIONS["hour"]
        ),
    },
    unique=list(config.WEATHER_KEY),
    name="weather_clean",
    strict=True,
)


FLIGHTS_REJECTED = rejected_schema("flights_rejected", FLIGHT_DESCRIPTIONS)
WEATHER_REJECTED = rejected_schema("weather_rejected", WEATHER_DESCRIPTIONS)

_STAT_TEXT = {
    "flights_7d": "Number of {} flights in the {} days before the flight's day.",
    "arr_delay_mean_7d": "Mean arrival delay (minutes) of {} flights in the {} previous days.",
    "delayed_share_7d": "Share of {} flights in the {} previous days arriving >15 min late.",
    "cancelled_share_7d": "Share of {} flights in the {} previous days that were cancelled.",
}
FEATURE_DESCRIPTIONS = {
    "flight_id": "Flight identity: date/carrier+number/origin/scheduled time.",
    "scheduled_departure": "Scheduled departure, local timestamp.",
    "time_hour": "Scheduled departure hour in UTC (the weather join key).",
    "tailnum": "Plane tail number; may be empty.",
    "flight": "Flight number.",
    "carrier": FLIGHT_DESCRIPTIONS["carrier"],
    "origin": FLIGHT_DESCRIPTIONS["origin"],
    "dest": FLIGHT_DESCRIPTIONS["dest"],
    "dep_hour": "Scheduled departure hour, local.",
    "dep_minute_of_day": "Scheduled departure as minutes after local midnight.",
    "arr_hour": "Scheduled arrival hour, local at the destination.",
    "scheduled_minutes": "Scheduled block time: arrival minus departure clock time, in minutes.",
    "weekday": "Day of week of the scheduled departure, Monday = 0.",
    "month": "Month of the scheduled departure.",
    "day_of_year": "Day of year of the scheduled departure.",
    "is_holiday": "1 if the departure date is a US public holiday.",
    "days_to_holiday": "Days to the nearest US public holiday.",
    "distance": FLIGHT_DESCRIPTIONS["distance"],
    "plane_age": "Plane age in years at the flight (flight year - year built); empty if unknown.",
    "plane_seats": "Seats on the plane; empty if the plane is unknown.",
    "plane_engines": "Engines on the plane; empty if the plane is unknown.",
    **{
        measure: f"At the origin at the departure hour: {WEATHER_DESCRIPTIONS[measure]}"
        for measure in config.WEATHER_MEASURES
    },
    "weather_imputed": "1 if that hour's origin weather was filled by the gap rule; empty if none.",
    **{
        f"{who}_{s}": _STAT_TEXT[s].format(f"same-{who}", config.TRAILING_DAYS)
        for who in ("route", "carrier")
        for s in STAT_NAMES
    },
    TARGET: "Target: arrival delay in minutes; empty for cancelled and diverted flights.",
}

FLIGHT_FEATURES = pa.DataFrameSchema(
    {
        "flight_id": pa.Column(
            "string", unique=True, description=FEATURE_DESCRIPTIONS["flight_id"]
        ),
        "scheduled_departure": pa.Column(
            f"datetime64[ns, {config.TIMEZONE}]",
            nullable=True,
            description=FEATURE_DESCRIPTIONS["scheduled_departure"],
        ),
        "time_hour": pa.Column(
            "datetime64[ns, UTC]", nullable=True, description=FEATURE_DESCRIPTIONS["time_hour"]
        ),
        "tailnum": pa.Column("string", nullable=True, description=FEATURE_DESCRIPTIONS["tailnum"]),
        "flight": pa.Column("int64", description=FEATURE_DESCRIPTIONS["flight"]),
        **{
            c: pa.Column("string", description=FEATURE_DESCRIPTIONS[c])
            for c in CATEGORICAL_FEATURES
        },
        **{
            c: pa.Column("float64", nullable=True, description=text)
            for c, text in FEATURE_DESCRIPTIONS.items()
            if c
            not in {
                "flight_id",
                "scheduled_departure",
                "time_hour",
                "tailnum",
                "flight",
                *CATEGORICAL_FEATURES,
            }
        },
        "dep_hour": pa.Column(
            "float64", pa.Check.in_range(0, 23), description=FEATURE_DESCRIPTIONS["dep_hour"]
        ),
        "route_flights_7d": pa.Column(
            "float64", pa.Check.ge(0), description=FEATURE_DESCRIPTIONS["route_flights_7d"]
        ),
        "route_delayed_share_7d": pa.Column(
            "float64",
            pa.Check.in_range(0, 1),
            nullable=True,
            description=FEATURE_DESCRIPTIONS["route_delayed_share_7d"],
        ),
    },
    name="flight_features",
    strict=True,
)

PLANES = pa.DataFrameSchema(
    {
        "tailnum": pa.Column(str, unique=True, description="Plane tail number."),
        "year": pa.Column(float, nullable=True, description="Year the plane was built."),
        "type": pa.Column(str, description="Type of plane."),
        "manufacturer": pa.Column(str, description="Manufacturer."),
        "model": pa.Column(str, description="Model."),
        "engines": pa.Column(int, pa.Check.ge(0), description="Number of engines."),
        "seats": pa.Column(int, pa.Check.ge(0), description="Number of seats."),
        "speed": pa.Column(float, nullable=True, description="Average cruising speed in mph."),
        "engine": pa.Column(str, description="Type of engine."),
    },
    name="planes",
)
AIRPORTS = pa.DataFrameSchema(
    {
        "faa": pa.Column(str, unique=True, description="FAA airport code."),
        "name": pa.Column(str, description="Airport name."),
        "lat": pa.Column(float, pa.Check.in_range(-90, 90), description="Latitude."),
        "lon": pa.Column(float, pa.Check.in_range(-180, 180), description="Longitude."),
        "alt": pa.Column(int, description="Altitude in feet."),
        "tz": pa.Column(int, description="Offset from UTC in hours."),
        "dst": pa.Column(str, description="Daylight saving time zone code (A, U or N)."),
        "tzone": pa.Column(str, nullable=True, description="IANA time zone."),
    },
    name="airports",
)
AIRLINES = pa.DataFrameSchema(
    {
        "carrier": pa.Column(str, unique=True, description="Two-letter carrier code."),
        "name": pa.Column(str, description="Airline name."),
    },
    name="airlines",
)
