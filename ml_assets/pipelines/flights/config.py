"""The flights pipeline's settings: its declaration (``pipeline.yaml``) and the few constants
that only its own cleaning and feature code reads."""

from ml_assets.pipelines import declaration

DECLARATION = declaration("flights")
KEY_PREFIX = DECLARATION.prefix
TIMEZONE = DECLARATION.partitions.timezone
"""Local time of the NYC airports: ``year``/``month``/``day``/``hour`` columns are local."""

FLIGHTS = DECLARATION.source("flights")
WEATHER = DECLARATION.source("weather")
FLIGHTS_SOURCE, WEATHER_SOURCE = FLIGHTS.name, WEATHER.name
REFERENCE_TABLES = tuple(s.name for s in DECLARATION.sources if not s.partitioned)

ORIGINS = tuple(FLIGHTS.codes["origin"].domain or ())
"""The New York airports the flights leave from (and whose weather is recorded)."""

FLIGHT_COLUMNS = tuple(FLIGHTS.columns)
FLIGHT_KEY = tuple(FLIGHTS.key)
FLIGHT_REQUIRED = tuple(FLIGHTS.required)
FLIGHT_RANGES = FLIGHTS.ranges

WEATHER_COLUMNS = tuple(WEATHER.columns)
WEATHER_KEY = tuple(WEATHER.key)
WEATHER_REQUIRED = tuple(WEATHER.required)
WEATHER_RANGES = WEATHER.ranges
WEATHER_MEASURES = (
    "temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib",
)  # fmt: skip
WEATHER_MAX_GAP_HOURS = 3
"""Gap rule: a missing or blanked hourly reading is interpolated in time from the same
station's readings of that day when the gap is at most this many hours; longer gaps stay
empty (models see missing weather, which HistGradientBoosting handles natively)."""

TRAILING_DAYS = DECLARATION.features.history_partitions(
    DECLARATION.features.input, DECLARATION.partitions.kind
)
"""Recent-delay features summarise the flights of the previous ``TRAILING_DAYS`` days only (the
declared history of the features input, ``flights_clean``)."""
DELAYED_MINUTES = 15
"""A flight counts as delayed when it arrives more than this many minutes late (FAA definition)."""
HOLIDAY_COUNTRY = "US"
WEATHER_INTERPOLATED = tuple(m for m in WEATHER_MEASURES if m != "wind_gust")
"""Measures the gap rule interpolates. ``wind_gust`` is only reported when there is a gust:
a missing gust means gusts no stronger than the sustained wind, so it takes ``wind_speed``."""
