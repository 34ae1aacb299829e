"""Pandera schemas accept real cleaned data and reject broken frames; check outcome metadata."""

import functools
import io
from collections.abc import Callable
from datetime import date

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest
from pandera.errors import SchemaErrors

from ml_assets.data.checks import row_conservation_outcome, schema_outcome, whole_file_outcome
from ml_assets.data.cleaning import parse_landed_csv
from ml_assets.pipelines.flights import config, schemas
from ml_assets.pipelines.flights.cleaning import clean_flights, clean_weather
from ml_assets.pipelines.flights.features import CARRIER, ROUTE, build_features, trailing_stats
from ml_assets.pipelines.flights.publish import reference_tables, source_table

pytestmark = pytest.mark.unit

REFERENCES = reference_tables()

DAY = date(2013, 1, 2)


def landed(source: str, day: date, damaged: bool = False) -> pd.DataFrame:
    """One day of ``source`` as landed; ``damaged`` adds 3 duplicated lines and a corrupt one."""
    table = source_table(source)
    rows = table[
        (table["year"] == str(day.year))
        & (table["month"] == str(day.month))
        & (table["day"] == str(day.day))
    ]
    text = rows.to_csv(index=False)
    if damaged:
        text += rows.head(3).to_csv(index=False, header=False) + "broken,line\n"
    return parse_landed_csv(text.encode())


@functools.cache
def raw(source: str) -> pd.DataFrame:
    """2013-01-02 as landed, damaged so that rejected rows are not empty."""
    return landed(source, DAY, damaged=True)


@functools.cache
def reference(name: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(source_table(name).to_csv(index=False).encode()))


@functools.cache
def features() -> pd.DataFrame:
    flights = clean_flights(raw("flights"), DAY, REFERENCES).clean
    history = clean_flights(landed("flights", date(2013, 1, 1)), date(2013, 1, 1), REFERENCES).clean
    return build_features(
        flights,
        clean_weather(raw("weather"), DAY, REFERENCES).clean,
        reference("planes"),
        trailing_stats(history, ROUTE, "route"),
        trailing_stats(history, CARRIER, "carrier"),
    )


def _set(column: str, value: object, row: int = 0) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def damage(frame: pd.DataFrame) -> pd.DataFrame:
        damaged = frame.copy()
        damaged.loc[row, column] = value
        return damaged

    return damage


def _drop(column: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda frame: frame.drop(columns=column)


def _duplicate(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([frame, frame.head(1)], ignore_index=True)


def _extra_column(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(unexpected=1)


CASES: dict[str, tuple[pa.DataFrameSchema, Callable[[], pd.DataFrame], Callable, str]] = {
    "raw_flights missing column": (
        schemas.RAW_FLIGHTS, lambda: raw("flights"), _drop("arr_delay"), "column_in_dataframe",
    ),
    "raw_weather parsed as numbers": (
        schemas.RAW_WEATHER, lambda: raw("weather"),
        lambda f: f.assign(temp=pd.to_numeric(f["temp"])), "dtype('string",
    ),
    "flights_clean bad origin": (
        schemas.FLIGHTS_CLEAN, lambda: clean_flights(raw("flights"), DAY, REFERENCES).clean,
        _set("origin", "BOS"), "isin",
    ),
    "flights_clean out of range": (
        schemas.FLIGHTS_CLEAN, lambda: clean_flights(raw("flights"), DAY, REFERENCES).clean,
        _set("distance", 9000), "in_range",
    ),
    "flights_clean duplicate flight": (
        schemas.FLIGHTS_CLEAN, lambda: clean_flights(raw("flights"), DAY, REFERENCES).clean,
        _duplicate, "multiple_fields_uniqueness",
    ),
    "flights_clean extra column": (
        schemas.FLIGHTS_CLEAN, lambda: clean_flights(raw("flights"), DAY, REFERENCES).clean,
        _extra_column, "column_in_schema",
    ),
    "weather_clean out of range": (
        schemas.WEATHER_CLEAN, lambda: clean_weather(raw("weather"), DAY, REFERENCES).clean,
        _set("humid", 250.0), "in_range",
    ),
    "weather_clean duplicate hour": (
        schemas.WEATHER_CLEAN, lambda: clean_weather(raw("weather"), DAY, REFERENCES).clean,
        _duplicate, "multiple_fields_uniqueness",
    ),
    "flights_rejected without rule": (
        schemas.FLIGHTS_REJECTED, lambda: clean_flights(raw("flights"), DAY, REFERENCES).rejected,
        _set("rejection_rule", None), "not_nullable",
    ),
    "weather_rejected extra column": (
        schemas.WEATHER_REJECTED, lambda: clean_weather(raw("weather"), DAY, REFERENCES).rejected,
        _extra_column, "column_in_schema",
    ),
    "flight_features share above 1": (
        schemas.FLIGHT_FEATURES, features, _set("route_delayed_share_7d", 1.5), "in_range",
    ),
    "flight_features duplicate id": (
        schemas.FLIGHT_FEATURES, features, _duplicate, "field_uniqueness",
    ),
    "flight_features missing stats count": (
        schemas.FLIGHT_FEATURES, features, _set("route_flights_7d", np.nan), "not_nullable",
    ),
    "planes duplicate tailnum": (
        schemas.PLANES, lambda: reference("planes"), _duplicate, "field_uniqueness",
    ),
    "planes negative seats": (
        schemas.PLANES, lambda: reference("planes"), _set("seats", -3), "greater_than_or_equal",
    ),
    "airports latitude": (
        schemas.AIRPORTS, lambda: reference("airports"), _set("lat", 123.0), "in_range",
    ),
    "airlines missing name": (
        schemas.AIRLINES, lambda: reference("airlines"), _drop("name"), "column_in_dataframe",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_schema_accepts_real_data_and_rejects_a_broken_frame(case: str) -> None:
    schema, valid, damage, expected_check = CASES[case]
    frame = valid()

    assert len(frame) > 0
    schema.validate(frame, lazy=True)
    with pytest.raises(SchemaErrors) as errors:
        schema.validate(damage(frame), lazy=True)
    checks = errors.value.failure_cases["check"].astype(str)
    assert checks.str.contains(expected_check, regex=False).any(), checks.tolist()


def test_every_column_of_every_schema_has_a_description() -> None:
    """The Dagster UI shows these descriptions as the column schema of each asset."""
    for schema in (
        schemas.RAW_FLIGHTS, schemas.RAW_WEATHER, schemas.FLIGHTS_CLEAN, schemas.WEATHER_CLEAN,
        schemas.FLIGHTS_REJECTED, schemas.WEATHER_REJECTED, schemas.FLIGHT_FEATURES,
        schemas.PLANES, schemas.AIRPORTS, schemas.AIRLINES,
    ):  # fmt: skip
        undocumented = [n for n, c in schema.columns.items() if not c.description]
        assert not undocumented, (schema.name, undocumented)


def test_clean_schemas_cover_exactly_what_cleaning_produces() -> None:
    """Strict schemas: every produced column is declared and every declared one produced."""
    flights = clean_flights(raw("flights"), DAY, REFERENCES)
    weather = clean_weather(raw("weather"), DAY, REFERENCES)

    assert set(flights.clean.columns) == set(schemas.FLIGHTS_CLEAN.columns)
    assert set(flights.rejected.columns) == set(schemas.FLIGHTS_REJECTED.columns)
    assert set(weather.clean.columns) == set(schemas.WEATHER_CLEAN.columns)
    assert set(features().columns) == set(schemas.FLIGHT_FEATURES.columns)
    assert not flights.rejected.empty
    schemas.FLIGHTS_REJECTED.validate(flights.rejected)
    schemas.WEATHER_REJECTED.validate(weather.rejected)


def test_empty_partitions_conform() -> None:
    """A header-only export (2013-12-31 has no weather) cleans to tables that still conform."""
    empty_day = date(2013, 12, 31)
    weather = clean_weather(landed("weather", empty_day), empty_day, REFERENCES)
    flights = clean_flights(parse_landed_csv(b""), DAY, REFERENCES)

    assert schema_outcome(schemas.WEATHER_CLEAN, weather.clean).passed
    assert weather.clean[list(config.WEATHER_MEASURES)].isna().all().all()
    assert schema_outcome(schemas.FLIGHTS_CLEAN, flights.clean).passed
    assert schema_outcome(schemas.FLIGHTS_REJECTED, flights.rejected).passed


# check outcomes


def test_schema_outcome_passes_with_counts() -> None:
    clean = clean_flights(raw("flights"), DAY, REFERENCES).clean
    outcome = schema_outcome(schemas.FLIGHTS_CLEAN, clean)

    assert outcome.passed
    assert outcome.metadata == {"rows_checked": len(clean), "failure_count": 0}
    assert "flights_clean" in outcome.description


def test_schema_outcome_names_failing_rules_and_sample_rows() -> None:
    clean = clean_flights(raw("flights"), DAY, REFERENCES).clean.copy()
    clean.loc[[3, 7], "distance"] = 9000
    clean.loc[5, "origin"] = "BOS"
    outcome = schema_outcome(schemas.FLIGHTS_CLEAN, clean)

    assert not outcome.passed
    assert outcome.metadata["failure_count"] == 3
    assert outcome.metadata["rows_checked"] == len(clean)
    rules = outcome.metadata["failing_rules"].value
    assert "distance" in rules
    assert "in_range(17, 5000)" in rules
    assert "origin" in rules
    assert "isin" in rules
    sample = outcome.metadata["sample_failing_rows"].value
    assert sample.count("9000") == 2
    assert "BOS" in sample
    assert len(sample.strip().splitlines()) == 2 + 3  # header, rule line, three rows
    assert outcome.description == "3 failures of 2 rule(s) of flights_clean"


def test_schema_outcome_for_a_missing_column_has_no_rows_to_sample() -> None:
    outcome = schema_outcome(schemas.RAW_FLIGHTS, parse_landed_csv(b""))

    assert not outcome.passed
    assert outcome.metadata["failure_count"] == len(config.FLIGHT_COLUMNS)
    rules = outcome.metadata["failing_rules"].value
    assert rules.count("column_in_dataframe") == len(config.FLIGHT_COLUMNS)
    named = {line.split("|")[1].strip() for line in rules.splitlines()[2:]}
    assert named == set(config.FLIGHT_COLUMNS)  # the missing columns, not the schema's name
    assert outcome.metadata["sample_failing_rows"].value == "(no rows)"


def test_schema_outcome_names_an_undeclared_column() -> None:
    clean = clean_weather(raw("weather"), DAY, REFERENCES).clean.assign(surprise=1.0)
    outcome = schema_outcome(schemas.WEATHER_CLEAN, clean)

    assert not outcome.passed
    assert "| surprise | column_in_schema" in outcome.metadata["failing_rules"].value


def test_schema_outcome_sample_hides_internal_columns() -> None:
    rejected = clean_flights(raw("flights"), DAY, REFERENCES).rejected.copy()
    corrupt = rejected.index[rejected["rejection_rule"] == "corrupt_line"]
    rejected.loc[corrupt, "rejection_rule"] = None
    outcome = schema_outcome(schemas.FLIGHTS_REJECTED, rejected)

    assert not outcome.passed
    assert outcome.metadata["failure_count"] == 1
    sample = outcome.metadata["sample_failing_rows"].value
    assert "rejection_rule" in sample
    assert "_raw_text" not in sample
    assert "broken,line" not in sample


@pytest.mark.parametrize(
    ("raw_rows", "kept", "rejected", "passed"),
    [(10, 7, 3, True), (0, 0, 0, True), (10, 7, 2, False), (10, 8, 3, False)],
)
def test_row_conservation_outcome(raw_rows: int, kept: int, rejected: int, passed: bool) -> None:
    outcome = row_conservation_outcome(raw_rows, kept, rejected)

    assert outcome.passed is passed
    assert outcome.metadata == {"raw_rows": raw_rows, "kept_rows": kept, "rejected_rows": rejected}
    if not passed:
        assert f"{raw_rows - kept - rejected} unaccounted for" in outcome.description


@pytest.mark.parametrize(
    ("raw_rows", "rules", "passed"),
    [
        (100, {"unparseable:distance": 95}, False),
        (100, {"unparseable:distance": 94, "duplicate": 6}, True),  # no one rule reaches 95%
        (20, {"corrupt_line": 20}, False),  # a rule about whole rows: another encoding
        (19, {"missing_column:tip": 19}, True),  # too few rows to tell
        (0, {}, True),
    ],
)
def test_whole_file_outcome(raw_rows: int, rules: dict[str, int], passed: bool) -> None:
    outcome = whole_file_outcome(
        raw_rows, pd.Series([r for r, n in rules.items() for _ in range(n)]), 0.95, 20
    )

    assert outcome.passed is passed
    if not passed:
        rule, n = next(iter(rules.items()))
        name, _, column = rule.partition(":")
        assert f"| {name} " in outcome.metadata["whole_file_rules"].value
        named = f"column {column}: {name}" if column else name
        assert outcome.description.startswith(f"{named} rejected {n} of {raw_rows} raw rows")
