"""Unit tests of the cleaning rules: landed CSV parsing, flights and weather triage."""

import io
from collections import Counter
from collections.abc import Callable
from datetime import date

import numpy as np
import pandas as pd
import pytest

from ml_assets.contract.declaration import Source
from ml_assets.data.cleaning import (
    PARSE_ERROR,
    RAW_TEXT,
    REJECTION_RULE,
    Triage,
    parse_landed,
    parse_landed_csv,
)
from ml_assets.pipelines.flights import config
from ml_assets.pipelines.flights.cleaning import Cleaned, clean_flights, clean_weather
from ml_assets.pipelines.flights.publish import reference_tables, source_table

pytestmark = pytest.mark.unit

REFERENCES = reference_tables()

DAY = date(2013, 1, 2)


def day_rows(source: str, day: date) -> pd.DataFrame:
    """The real rows of one day of ``source``, as text, the way the publisher slices them."""
    table = source_table(source)
    on_day = (
        (table["year"] == str(day.year))
        & (table["month"] == str(day.month))
        & (table["day"] == str(day.day))
    )
    return table[on_day].reset_index(drop=True)


def landed(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` written as a landed CSV and read back the way ``raw_*`` assets read it."""
    return parse_landed_csv(rows.to_csv(index=False).encode())


def assert_conserved(raw: pd.DataFrame, result: Cleaned) -> None:
    assert len(raw) == result.kept_raw_rows + len(result.rejected)


def rules(result: Cleaned) -> dict[str, int]:
    return result.rejected[REJECTION_RULE].value_counts().to_dict()


# parse_landed_csv


def test_parse_good_csv_keeps_every_value_as_text() -> None:
    """Values stay text exactly as landed (leading zeros, empty fields and null tokens too):
    which of them mean "missing" is the source's declared policy, applied when cleaning."""
    frame = parse_landed_csv(b"a,b,c\n0042,x,1.50\n7,,NA\n")

    assert list(frame.columns) == ["a", "b", "c", PARSE_ERROR, RAW_TEXT]
    assert all(dtype == "string" for dtype in frame.dtypes)
    assert frame["a"].tolist() == ["0042", "7"]
    assert frame["c"].iloc[0] == "1.50"
    assert frame["b"].tolist() == ["x", ""]
    assert frame["c"].tolist() == ["1.50", "NA"]
    assert frame[PARSE_ERROR].isna().all()
    assert frame[RAW_TEXT].isna().all()


def test_parse_keeps_corrupt_lines_as_rows() -> None:
    """A line with the wrong field count is a row with empty fields, its text and the reason."""
    frame = parse_landed_csv(b"a,b\n1,x\n1,2,3\nlonely\n5,y\n")

    assert len(frame) == 4
    good = frame[frame[PARSE_ERROR].isna()]
    assert good["a"].tolist() == ["1", "5"]
    assert good["b"].tolist() == ["x", "y"]
    bad = frame[frame[PARSE_ERROR].notna()].set_index(RAW_TEXT)
    assert sorted(bad.index) == ["1,2,3", "lonely"]
    assert bad.loc["1,2,3", PARSE_ERROR] == "expected 2 fields, found 3"
    assert bad.loc["lonely", PARSE_ERROR] == "expected 2 fields, found 1"
    assert bad[["a", "b"]].isna().all().all()


@pytest.mark.parametrize("data", [b"", b"\n", b"  \n\n"])
def test_parse_empty_file_has_no_data_columns(data: bytes) -> None:
    frame = parse_landed_csv(data)

    assert list(frame.columns) == [PARSE_ERROR, RAW_TEXT]
    assert frame.empty


def test_parse_header_only_file_has_columns_but_no_rows() -> None:
    """An export of an empty day (header only) is not an empty file: its columns are known."""
    frame = parse_landed_csv(b"a,b\n")

    assert list(frame.columns) == ["a", "b", PARSE_ERROR, RAW_TEXT]
    assert frame.empty


def test_parse_real_daily_export_keeps_every_line() -> None:
    rows = day_rows("flights", DAY)
    frame = landed(rows)

    assert len(frame) == len(rows) == 943
    assert frame["tailnum"].fillna("NA").tolist() == rows["tailnum"].tolist()
    assert frame[PARSE_ERROR].isna().all()


# values as landed and identifiers, whatever the export's format

ORDERS = Source(
    name="orders",
    description="A generic source: an integer id, a text code, a note.",
    columns=["order_id", "code", "note"],
    key=["order_id", "code"],
    integer_ids=["order_id"],
    required=["order_id"],
    max_length=20,
)


def triaged(frame: pd.DataFrame, file_format: str) -> Triage:
    """``frame`` exported as ``file_format`` by pandas, landed, parsed and triaged by ORDERS."""
    buffer = io.BytesIO()
    if file_format == "csv":
        frame.to_csv(buffer, index=False)
    else:
        frame.to_parquet(buffer, index=False)
    triage = Triage(parse_landed(buffer.getvalue(), file_format), ORDERS.columns)
    triage.declared(ORDERS)
    return triage


BIG = 9_007_199_254_740_993
"""2**53 + 1: no float64 holds it."""
ID_EXPORTS = {
    "int64": [8, 42, BIG],
    "text, padded with zeros and signed": ["08", "042", f"+{BIG}"],
    # one id missing: the export stores the column as float64, the others as 8.0 and 42.0
    "float64": [8.0, 42.0, np.nan],
}


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
@pytest.mark.parametrize("export", sorted(ID_EXPORTS))
def test_an_integer_id_is_its_digits_whatever_dtype_the_export_used(
    file_format: str, export: str
) -> None:
    frame = pd.DataFrame({"order_id": ID_EXPORTS[export], "code": "A", "note": ["x", "y", "z"]})

    triage = triaged(frame, file_format)

    ids = triage.kept()["order_id"].tolist()
    if export == "float64":
        assert ids == ["8", "42"]
        assert triage.rejected()[REJECTION_RULE].tolist() == ["missing_value:order_id"]
    else:
        assert ids == ["8", "42", str(BIG)]  # read as text: not one digit lost


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_values_are_kept_as_landed_or_rejected_with_their_rule(file_format: str) -> None:
    """A text key keeps its leading zeros; whitespace around an id is never trimmed, a control
    character never skipped, a value never cut: each rejects its row, with the rule."""
    frame = pd.DataFrame(
        {
            "order_id": ["1", "2", "3", " 4", "5", "6", "7", "8", "9.5", "1e1"],
            "code": ["007", "7", "7 ", "8", "A\tB", "9", "10", "11", "12", "13"],
            "note": ["", "", "", "", "", "a\x00", "z" * 21, "fine", "", ""],
        }
    )

    triage = triaged(frame, file_format)

    kept = triage.kept()
    assert kept["order_id"].tolist() == ["1", "2", "8"]
    assert kept["code"].tolist() == ["007", "7", "11"]
    assert triage.rejected()[REJECTION_RULE].tolist() == [
        "whitespace:code",
        "whitespace:order_id",
        "control_character:code",
        "control_character:note",
        "too_long:note",
        "malformed_id:order_id",
        "malformed_id:order_id",
    ]
    assert triage.rejected()["code"].tolist()[:3] == ["7 ", "8", "A\tB"]  # as landed


# clean_flights


@pytest.fixture(scope="module")
def flights_day() -> pd.DataFrame:
    """A sample of the real flights of 2013-01-02 including cancelled and diverted ones."""
    rows = day_rows("flights", DAY)
    cancelled = rows[rows["dep_time"] == "NA"].head(2)
    diverted = rows[(rows["dep_time"] != "NA") & (rows["arr_delay"] == "NA")].head(2)
    normal = rows[(rows["dep_time"] != "NA") & (rows["arr_delay"] != "NA")].head(16)
    return pd.concat([normal, cancelled, diverted], ignore_index=True)


def test_clean_flights_types_and_flags_real_day() -> None:
    """A real day: nothing rejected, cancelled and diverted flights kept and flagged."""
    rows = day_rows("flights", DAY)
    raw = landed(rows)
    result = clean_flights(raw, DAY, REFERENCES)

    assert result.rejected.empty
    assert_conserved(raw, result)
    assert len(result.clean) == 943
    # 26 flights to airports the airports table lacks, 148 unknown tail numbers: kept, flagged
    assert result.notes == {
        "cancelled": 8, "diverted": 7, "unreferenced:dest": 26, "unreferenced:tailnum": 148
    }  # fmt: skip
    assert (~result.clean["dest_known"]).sum() == 26
    assert result.clean["cancelled"].sum() == (rows["dep_time"] == "NA").sum()
    assert result.clean["distance"].dtype == "int64"
    assert result.clean["arr_delay"].dtype == "float64"
    assert str(result.clean["time_hour"].dt.tz) == "UTC"


def test_cancelled_and_diverted_flights_are_kept_and_flagged(flights_day: pd.DataFrame) -> None:
    raw = landed(flights_day)
    result = clean_flights(raw, DAY, REFERENCES)

    assert result.rejected.empty
    assert_conserved(raw, result)
    clean = result.clean
    assert clean["cancelled"].tolist() == [False] * 16 + [True, True, False, False]
    assert clean["diverted"].tolist() == [False] * 16 + [False, False, True, True]
    assert clean.loc[clean["cancelled"], "dep_time"].isna().all()
    assert clean.loc[clean["diverted"], "dep_time"].notna().all()
    assert clean.loc[clean["diverted"], "arr_delay"].isna().all()
    assert result.notes == {
        "cancelled": 2, "diverted": 2, "unreferenced:dest": 2, "unreferenced:tailnum": 1
    }  # fmt: skip


def test_scheduled_departure_is_local_time(flights_day: pd.DataFrame) -> None:
    clean = clean_flights(landed(flights_day), DAY, REFERENCES).clean
    first = clean.iloc[0]

    assert first["scheduled_departure"] == pd.Timestamp(
        2013, 1, 2, first["hour"], first["minute"], tz=config.TIMEZONE
    )
    # The UTC hour as landed is the local scheduled hour, floored.
    local_hours = clean["scheduled_departure"].dt.floor("h").dt.tz_convert("UTC")
    assert (local_hours == clean["time_hour"]).all()


def _duplicate_first_three(rows: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([rows, rows.head(3)], ignore_index=True)


def _set(row: int, column: str, value: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def damage(rows: pd.DataFrame) -> pd.DataFrame:
        damaged = rows.copy()
        damaged.loc[row, column] = value
        return damaged

    return damage


FLIGHT_DAMAGE = {
    "duplicate": (_duplicate_first_three, {"duplicate": 3}),
    "distance out of range": (_set(4, "distance", "-500"), {"out_of_range:distance": 1}),
    "arr_delay out of range": (_set(5, "arr_delay", "2000"), {"out_of_range:arr_delay": 1}),
    "hour out of range": (_set(6, "hour", "24"), {"out_of_range:hour": 1}),
    "unparseable number": (_set(7, "dep_delay", "12 min"), {"unparseable:dep_delay": 1}),
    "unparseable timestamp": (_set(8, "time_hour", "yesterday"), {"unparseable:time_hour": 1}),
    "another day": (_set(9, "day", "3"), {"wrong_partition": 1}),
    "missing required value": (_set(10, "carrier", "NA"), {"missing_value:carrier": 1}),
    "other null token": (_set(10, "carrier", "N/A"), {"missing_value:carrier": 1}),
    "padded null token": (_set(10, "dep_delay", " NA"), {"unparseable:dep_delay": 1}),
    "malformed code": (_set(11, "dest", "lax"), {"malformed_code:dest": 1}),
    "origin outside the domain": (_set(12, "origin", "BOS"), {"unknown_code:origin": 1}),
    "carrier the airlines lack": (_set(13, "carrier", "ZZ"), {"unknown_code:carrier": 1}),
    "minutes past 59": (_set(14, "sched_arr_time", "1275"), {"invalid_clock:sched_arr_time": 1}),
    "fractional clock": (_set(14, "dep_time", "517.5"), {"invalid_clock:dep_time": 1}),
    "delay not the clock difference": (_set(15, "dep_delay", "7"), {"inconsistent:dep_delay": 1}),
    "delay without a time": (_set(15, "dep_time", "NA"), {"inconsistent:dep_delay": 1}),
    "arrival delay off": (_set(1, "arr_delay", "-3"), {"inconsistent:arr_delay": 1}),
    "longer in the air than between the clocks": (
        _set(2, "air_time", "690"),
        {"inconsistent:air_time": 1},
    ),
    "in the air but never departed": (_set(16, "air_time", "60"), {"inconsistent:air_time": 1}),
    "hour not the scheduled hour": (_set(3, "hour", "23"), {"inconsistent:hour": 1}),
    "time_hour not the local hour": (
        _set(4, "time_hour", "2013-01-02T03:00:00Z"),
        {"inconsistent:time_hour": 1},
    ),
}


@pytest.mark.parametrize("case", FLIGHT_DAMAGE, ids=list(FLIGHT_DAMAGE))
def test_bad_flight_rows_are_rejected_with_their_rule(flights_day: pd.DataFrame, case: str) -> None:
    damage, expected = FLIGHT_DAMAGE[case]
    raw = landed(damage(flights_day))
    result = clean_flights(raw, DAY, REFERENCES)

    assert rules(result) == expected
    assert_conserved(raw, result)
    assert len(result.clean) == len(flights_day) - (0 if case == "duplicate" else 1)
    # The rejected rows are the values as landed, not parsed or blanked.
    assert set(result.rejected.columns) == {*config.FLIGHT_COLUMNS, RAW_TEXT, REJECTION_RULE}


def test_duplicates_keep_the_first_copy(flights_day: pd.DataFrame) -> None:
    """Same key, different values: the first landed copy is kept, the later one rejected."""
    later = flights_day.head(1).assign(tailnum="N999ZZ")
    raw = landed(pd.concat([flights_day, later], ignore_index=True))
    result = clean_flights(raw, DAY, REFERENCES)

    assert rules(result) == {"duplicate": 1}
    assert result.rejected["tailnum"].tolist() == ["N999ZZ"]
    kept = result.clean.iloc[0]
    assert kept["tailnum"] == flights_day.loc[0, "tailnum"]
    assert_conserved(raw, result)


def test_a_row_breaking_two_rules_is_rejected_once_by_the_first(
    flights_day: pd.DataFrame,
) -> None:
    damaged = _set(3, "distance", "abc")(flights_day)
    damaged.loc[3, "day"] = "5"
    raw = landed(pd.concat([damaged, damaged.iloc[[3]]], ignore_index=True))
    result = clean_flights(raw, DAY, REFERENCES)

    assert rules(result) == {"unparseable:distance": 2}
    assert_conserved(raw, result)


def test_missing_column_rejects_every_row(flights_day: pd.DataFrame) -> None:
    raw = landed(flights_day.drop(columns="arr_delay"))
    result = clean_flights(raw, DAY, REFERENCES)

    assert rules(result) == {"missing_column:arr_delay": len(flights_day)}
    assert result.clean.empty
    assert result.kept_raw_rows == 0
    assert_conserved(raw, result)


def test_corrupt_lines_are_rejected_with_their_text(flights_day: pd.DataFrame) -> None:
    text = flights_day.to_csv(index=False) + "2013,1,2,42\n"
    raw = parse_landed_csv(text.encode())
    result = clean_flights(raw, DAY, REFERENCES)

    assert rules(result) == {"corrupt_line": 1}
    assert result.rejected[RAW_TEXT].tolist() == ["2013,1,2,42"]
    assert len(result.clean) == len(flights_day)
    assert_conserved(raw, result)


def test_empty_file_gives_empty_tables() -> None:
    raw = parse_landed_csv(b"")
    result = clean_flights(raw, DAY, REFERENCES)

    assert result.clean.empty
    assert result.rejected.empty
    assert_conserved(raw, result)
    assert set(config.FLIGHT_COLUMNS) <= set(result.clean.columns)


# clean_weather


def by_station_hour(clean: pd.DataFrame) -> pd.DataFrame:
    return clean.set_index(["origin", "time_hour"]).sort_index()


def utc_hour(day: date, local_hour: int) -> pd.Timestamp:
    return pd.Timestamp(day.year, day.month, day.day, local_hour, tz=config.TIMEZONE).tz_convert(
        "UTC"
    )


@pytest.mark.parametrize(
    ("day", "hours"),
    [(date(2013, 1, 2), 24), (date(2013, 3, 10), 23), (date(2013, 11, 3), 25)],
    ids=["standard", "spring-forward", "fall-back"],
)
def test_one_weather_row_per_origin_and_local_hour(day: date, hours: int) -> None:
    raw = landed(day_rows("weather", day))
    result = clean_weather(raw, day, REFERENCES)
    clean = result.clean

    assert_conserved(raw, result)
    assert len(clean) == len(config.ORIGINS) * hours
    assert not clean.duplicated(["origin", "time_hour"]).any()
    for _, station in clean.groupby("origin"):
        assert len(station) == hours
        steps = station["time_hour"].sort_values().diff().dropna()
        assert (steps == pd.Timedelta(hours=1)).all()
        local = station["time_hour"].dt.tz_convert(config.TIMEZONE)
        assert (local.dt.date == day).all()
        assert (station["hour"].to_numpy() == local.dt.hour.to_numpy()).all()
    if hours == 23:
        assert 2 not in set(clean["hour"])
    if hours == 25:
        assert (clean["hour"] == 1).sum() == 2 * len(config.ORIGINS)


def test_fall_back_day_imputes_the_hour_missing_from_the_export() -> None:
    """The 2013-11-03 export has 24 readings per station; the repeated 1 am hour is imputed."""
    day = date(2013, 11, 3)
    raw = landed(day_rows("weather", day))
    result = clean_weather(raw, day, REFERENCES)

    assert result.kept_raw_rows == len(raw) == 72
    assert result.notes["hours_imputed"] == 3
    assert (~result.clean["imputed"]).sum() == result.kept_raw_rows
    imputed = result.clean[result.clean["imputed"]]
    assert imputed[list(config.WEATHER_INTERPOLATED)].notna().all().all()


@pytest.fixture(scope="module")
def weather_day() -> pd.DataFrame:
    return day_rows("weather", DAY)


def _row_of(rows: pd.DataFrame, origin: str, hour: int) -> int:
    match = rows.index[(rows["origin"] == origin) & (rows["hour"] == str(hour))]
    assert len(match) == 1
    return int(match[0])


def test_out_of_range_weather_value_is_blanked_then_interpolated(
    weather_day: pd.DataFrame,
) -> None:
    damaged = weather_day.copy()
    damaged.loc[_row_of(damaged, "EWR", 10), "humid"] = "250"
    raw = landed(damaged)
    result = clean_weather(raw, DAY, REFERENCES)

    assert result.rejected.empty
    assert_conserved(raw, result)
    assert result.notes["outliers_blanked"] == 1
    clean = by_station_hour(result.clean)
    before = float(weather_day.loc[_row_of(weather_day, "EWR", 9), "humid"])
    after = float(weather_day.loc[_row_of(weather_day, "EWR", 11), "humid"])
    value = clean.loc[("EWR", utc_hour(DAY, 10)), "humid"]
    assert value == pytest.approx((before + after) / 2)
    assert not clean.loc[("EWR", utc_hour(DAY, 10)), "imputed"]


@pytest.mark.parametrize("gap", [1, config.WEATHER_MAX_GAP_HOURS])
def test_short_gap_is_interpolated_and_flagged_imputed(weather_day: pd.DataFrame, gap: int) -> None:
    missing = range(10, 10 + gap)
    drop = [_row_of(weather_day, "JFK", h) for h in missing]
    raw = landed(weather_day.drop(index=drop))
    result = clean_weather(raw, DAY, REFERENCES)

    assert_conserved(raw, result)
    assert result.notes["hours_imputed"] == gap
    clean = by_station_hour(result.clean)
    before = float(weather_day.loc[_row_of(weather_day, "JFK", 9), "temp"])
    after = float(weather_day.loc[_row_of(weather_day, "JFK", 10 + gap), "temp"])
    for i, hour in enumerate(missing, start=1):
        row = clean.loc[("JFK", utc_hour(DAY, hour))]
        assert row["imputed"]
        assert row["temp"] == pytest.approx(before + (after - before) * i / (gap + 1))
    assert result.clean["imputed"].sum() == gap


@pytest.mark.parametrize("gap", [config.WEATHER_MAX_GAP_HOURS + 1, 8])
def test_gap_longer_than_the_limit_stays_missing(weather_day: pd.DataFrame, gap: int) -> None:
    missing = range(10, 10 + gap)
    drop = [_row_of(weather_day, "LGA", h) for h in missing]
    raw = landed(weather_day.drop(index=drop))
    result = clean_weather(raw, DAY, REFERENCES)

    assert_conserved(raw, result)
    clean = by_station_hour(result.clean)
    for hour in missing:
        row = clean.loc[("LGA", utc_hour(DAY, hour))]
        assert row["imputed"]
        assert row[list(config.WEATHER_INTERPOLATED)].isna().all(), hour
    others = result.clean[result.clean["origin"] != "LGA"]
    assert others[list(config.WEATHER_INTERPOLATED)].notna().all().all()


def test_missing_wind_gust_takes_wind_speed(weather_day: pd.DataFrame) -> None:
    """No gust reported means gusts no stronger than the wind: the gust takes wind_speed."""
    damaged = weather_day.copy()
    damaged.loc[_row_of(damaged, "EWR", 12), "wind_gust"] = "31.5"
    clean = by_station_hour(clean_weather(landed(damaged), DAY, REFERENCES).clean)
    landed_gust = damaged.assign(
        time_hour=pd.to_datetime(damaged["time_hour"], utc=True),
        wind_gust=pd.to_numeric(damaged["wind_gust"], errors="coerce"),
    ).set_index(["origin", "time_hour"])["wind_gust"]
    reported = landed_gust.reindex(clean.index).notna()

    assert clean.loc[("EWR", utc_hour(DAY, 12)), "wind_gust"] == 31.5
    assert (~reported).sum() > 40
    assert clean["wind_gust"].notna().all()
    calm = clean[~reported]
    assert (calm["wind_gust"] == calm["wind_speed"]).all()
    gusty = clean[reported]
    assert (gusty["wind_gust"] == landed_gust.reindex(gusty.index)).all()


def test_weather_rows_of_another_day_or_off_the_hour_are_rejected(
    weather_day: pd.DataFrame,
) -> None:
    """Readings that cannot sit on the day's hourly grid are rejected, never silently dropped."""
    damaged = weather_day.copy()
    damaged.loc[_row_of(damaged, "EWR", 3), "day"] = "3"
    damaged.loc[_row_of(damaged, "JFK", 5), "time_hour"] = "2013-01-02T10:30:00Z"
    damaged.loc[_row_of(damaged, "LGA", 7), "time_hour"] = "2013-01-05T10:00:00Z"
    raw = landed(pd.concat([damaged, damaged.head(2)], ignore_index=True))
    result = clean_weather(raw, DAY, REFERENCES)

    assert rules(result) == {"wrong_partition": 1, "off_grid:time_hour": 2, "duplicate": 2}
    assert_conserved(raw, result)
    assert result.kept_raw_rows == (~result.clean["imputed"]).sum() == 72 - 3
    assert result.notes["hours_imputed"] == 3


def test_weather_missing_column_and_unknown_origin(weather_day: pd.DataFrame) -> None:
    raw = landed(weather_day.drop(columns="temp"))
    result = clean_weather(raw, DAY, REFERENCES)
    assert rules(result) == {"missing_column:temp": 72}
    assert_conserved(raw, result)
    assert result.clean["imputed"].all()

    damaged = weather_day.copy()
    damaged.loc[0, "origin"] = "BOS"
    raw = landed(damaged)
    result = clean_weather(raw, DAY, REFERENCES)
    assert rules(result) == {"unknown_code:origin": 1}
    assert_conserved(raw, result)
    assert set(result.clean["origin"]) == set(config.ORIGINS)


@pytest.mark.slow
def test_the_real_year_loses_no_flight_to_the_rules_on_meaning() -> None:
    """Every rule holds on the real 2013: no row rejected, and the flights that go to the four
    airports the airports table lacks (BQN, PSE, SJU, STT) or have no tail number the planes
    table knows are kept and flagged."""
    rejected, dest_unknown, tailnum_unknown, kept = Counter(), Counter(), 0, 0
    for (year, month, day_of_month), rows in source_table("flights").groupby(
        ["year", "month", "day"]
    ):
        day = date(int(year), int(month), int(day_of_month))
        raw = rows.astype("string").assign(**{PARSE_ERROR: pd.NA, RAW_TEXT: pd.NA})  # as parsed
        result = clean_flights(raw, day, REFERENCES)
        rejected.update(result.rejected[REJECTION_RULE])
        clean = result.clean
        dest_unknown.update(clean.loc[~clean["dest_known"], "dest"])
        tailnum_unknown += int((~clean["tailnum_known"]).sum())
        kept += len(clean)
    assert rejected == Counter()
    assert kept == 336_776
    assert dest_unknown == {"SJU": 5819, "BQN": 896, "STT": 522, "PSE": 365}  # 7,602 flights
    assert tailnum_unknown == 52_606
