"""Pandera schemas of the ridership pipeline's tables, with a description for every column.

The descriptions are what the Dagster UI shows as each asset's column schema.
"""

import pandera.pandas as pa

from ml_assets.data.schemas import range_checks, raw_schema, rejected_schema
from ml_assets.pipelines.ridership.cleaning import DAYS, GAMES
from ml_assets.pipelines.ridership.features import ID_COLUMN, TARGET, WEEKDAYS

DAY_DESCRIPTIONS = {
    "date": "The local date, YYYY-MM-DD.",
    "rides": "Thousands of riders entering Clark/Lake that day. The model's target.",
    "temp": "Mean temperature at O'Hare, °F.",
    "precip_max": "Largest hourly precipitation, inches.",
    "rain": "Share of the day's hourly weather reports with rain.",
    "snow": "Share of the day's hourly weather reports with snow.",
    "bulls_home": "1 on a Bulls home game day.",
    "bears_home": "1 on a Bears home game day.",
    "blackhawks_home": "1 on a Blackhawks home game day.",
    "cubs_home": "1 in the baseball season (the data set marks every day of it alike).",
}
WEATHER = ("temp", "precip_max", "rain", "snow")

RAW_DAYS = raw_schema("raw_boardings", DAY_DESCRIPTIONS)
"""A landed monthly export as text: every declared column present, one row per day."""

DAYS_CLEAN = pa.DataFrameSchema(
    {
        "date": pa.Column("datetime64[ns]", unique=True, description=DAY_DESCRIPTIONS["date"]),
        **{
            column: pa.Column(
                "float64", range_checks(column, DAYS.ranges), description=DAY_DESCRIPTIONS[column]
            )
            for column in ("rides", *WEATHER)
        },
        **{flag: pa.Column(bool, description=DAY_DESCRIPTIONS[flag]) for flag in GAMES},
    },
    name="boardings_clean",
    strict=True,
)

DAYS_REJECTED = rejected_schema("boardings_rejected", DAY_DESCRIPTIONS)
"""Days a cleaning rule rejected: the values as landed and the rule that rejected them."""

FEATURE_DESCRIPTIONS = {
    ID_COLUMN: "The day, YYYY-MM-DD: the row's identity.",
    "weekday": "Day of the week, Mon … Sun.",
    "rides_lag_1": "Riders (thousands) the day before: the last-value baseline.",
    "rides_lag_7": "Riders (thousands) the same weekday a week before: the seasonal naive.",
    "rides_lag_14": "Riders (thousands) the same weekday two weeks before.",
    "rides_mean_7": "Mean riders (thousands) of the 7 days ending the day before.",
    "month": "Month of the day, 1-12.",
    "dayofyear": "Day of the year, 1-366.",
    "holiday": "1 on an Illinois public holiday.",
    **{column: DAY_DESCRIPTIONS[column] for column in WEATHER},
    **{flag: DAY_DESCRIPTIONS[flag] for flag in GAMES},
    TARGET: "Target: thousands of riders entering Clark/Lake that day.",
}

DAY_FEATURES = pa.DataFrameSchema(
    {
        ID_COLUMN: pa.Column("string", unique=True, description=FEATURE_DESCRIPTIONS[ID_COLUMN]),
        "weekday": pa.Column(
            "string", pa.Check.isin(WEEKDAYS), description=FEATURE_DESCRIPTIONS["weekday"]
        ),
        **{
            column: pa.Column("float64", nullable=True, description=text)
            for column, text in FEATURE_DESCRIPTIONS.items()
            if column not in (ID_COLUMN, "weekday")
        },
    },
    name="day_features",
    strict=True,
)
