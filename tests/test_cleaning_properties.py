"""Property-based tests of parse and clean for every pipeline, on damaged real files.

A real day of flights and of weather (CSV) and a real month of taxi trips (Parquet) are damaged
the way exports break: truncated, byte noise, another encoding, columns shuffled, repeated or
dropped, rows repeated or from another partition or source, extreme and non-finite numbers,
and, for Parquet, wrong column types and extra columns. Whatever the damage, parsing and
cleaning never raise, every raw row is kept or rejected with a known rule, and the clean table
conforms to the pipeline's clean schema. The budgets are fixed and derandomized so the module
stays fast and repeatable; each bug the properties found is a plain regression test below.
"""

import functools
import io
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

import dagster as dg
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_assets.data import cleaning
from ml_assets.data.cleaning import (
    PARSE_ERROR,
    RAW_TEXT,
    REJECTION_RULE,
    Cleaned,
    parse_landed,
    parse_landed_csv,
    parse_landed_parquet,
)
from ml_assets.pipelines.flights import config
from ml_assets.pipelines.flights.cleaning import (
    FLIGHT_NUMBERS,
    WEATHER_NUMBERS,
    clean_flights,
    clean_weather,
)
from ml_assets.pipelines.flights.publish import _daily_csv, reference_tables, source_table
from ml_assets.pipelines.flights.schemas import (
    FLIGHTS_CLEAN,
    FLIGHTS_REJECTED,
    WEATHER_CLEAN,
    WEATHER_REJECTED,
)
from ml_assets.pipelines.taxi.cleaning import TRIPS, clean_trips
from ml_assets.pipelines.taxi.publish import _parquet, trips
from ml_assets.pipelines.taxi.schemas import TRIPS_CLEAN, TRIPS_REJECTED
from resources.parquet_io_manager import ParquetIOManager
from resources.paths import to_upath

pytestmark = pytest.mark.unit

BASE_ROWS = 50
"""Rows of each real file the properties damage: small, so an example runs in milliseconds."""
DAY, OTHER_DAY = date(2013, 1, 2), date(2013, 1, 3)
MONTH = date(2022, 1, 1)
REFERENCES = reference_tables()

COLUMN_RULES = {
    "missing_column", "control_character", "too_long", "whitespace", "malformed_id",
    "missing_value", "unparseable", "out_of_range", "malformed_code", "unknown_code",
    "invalid_clock", "inconsistent", "off_grid", "not_whole",
}  # fmt: skip
"""Rules that name the column they read, as ``rule:column``."""
ROW_RULES = {"corrupt_line", "wrong_partition", "duplicate"}
"""Rules about the whole row, named alone."""

EXTREMES = (
    "1e308", "-1e308", "1e309", "inf", "-inf", "Infinity", "nan", "NaN", "-0",
    "99999999999999999999999", "-9223372036854775809", "1.5", "0x10", "1_000", " 7 ",
)  # fmt: skip
"""Numbers, or what an export may write in a numeric field, at the edges of float64 and int64."""
INVALID_UTF8 = (
    b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xc0\xaf", b"\xe2\x82", b"\xed\xa0\x80",
    b"\xf8\x88\x80\x80\x80", b"\x80",
)  # fmt: skip
"""Invalid UTF-8: stray, overlong, truncated and surrogate sequences."""


def csv_lines(source: str, day: date, rows: int = BASE_ROWS) -> list[str]:
    """The header and the first ``rows`` lines of the day's export, as the publisher lands it."""
    text = _daily_csv(source_table(source), day, None).decode()
    return text.rstrip("\n").split("\n")[: rows + 1]


@dataclass(frozen=True)
class Pipeline:
    """One source of one pipeline: its clean function, schemas and a real landed file."""

    name: str
    clean: Callable[..., Cleaned]
    partition: date
    columns: Sequence[str]
    clean_schema: pa.DataFrameSchema
    rejected_schema: pa.DataFrameSchema
    file_format: str = "csv"

    def run(self, data: bytes) -> tuple[pd.DataFrame, Cleaned]:
        raw = parse_landed(data, self.file_format)
        return raw, self.clean(raw, self.partition, REFERENCES)


FLIGHTS = Pipeline(
    "flights", clean_flights, DAY, config.FLIGHT_COLUMNS, FLIGHTS_CLEAN, FLIGHTS_REJECTED
)
WEATHER = Pipeline(
    "weather", clean_weather, DAY, config.WEATHER_COLUMNS, WEATHER_CLEAN, WEATHER_REJECTED
)
TAXI = Pipeline(
    "trips", clean_trips, MONTH, TRIPS.columns, TRIPS_CLEAN, TRIPS_REJECTED, file_format="parquet"
)
PIPELINES = {pipeline.name: pipeline for pipeline in (FLIGHTS, WEATHER, TAXI)}


@functools.cache
def undamaged(name: str, data: bytes) -> Cleaned:
    """A pipeline's result on an undamaged file, computed once: what damage is compared to."""
    return PIPELINES[name].run(data)[1]


CSV_BASES = {
    "flights": (csv_lines("flights", DAY), csv_lines("flights", OTHER_DAY, 10), FLIGHT_NUMBERS),
    "weather": (csv_lines("weather", DAY), csv_lines("weather", OTHER_DAY, 10), WEATHER_NUMBERS),
}
"""Per CSV source: the real day, a real other day, the numeric columns."""


@pytest.fixture(scope="module")
def taxi_months() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A real month of trips (its first rows) and real trips of the next month."""
    table = trips()
    return (
        table[table["month"] == "Jan"].head(BASE_ROWS).reset_index(drop=True),
        table[table["month"] == "Feb"].head(10).reset_index(drop=True),
    )


# the properties


def assert_triaged(pipeline: Pipeline, raw: pd.DataFrame, result: Cleaned) -> None:
    """Every raw row kept or rejected with one known rule; clean and rejected conform."""
    assert len(raw) == result.kept_raw_rows + len(result.rejected)
    rules = result.rejected[REJECTION_RULE]
    assert rules.notna().all() and (rules.str.len() > 0).all()
    for rule in rules.unique():
        name, _, column = rule.partition(":")
        if name in COLUMN_RULES:
            assert column in pipeline.columns, rule
        else:
            assert name in ROW_RULES and not column, rule
    pipeline.clean_schema.validate(result.clean, lazy=True)
    pipeline.rejected_schema.validate(result.rejected, lazy=True)
    numbers = result.clean.select_dtypes("number").to_numpy(dtype="float64")
    assert not np.isinf(numbers).any(), "a non-finite number reached the clean table"


def data_lines(data: bytes) -> int:
    """The lines after the header, as a reader without quoting sees them."""
    lines = [line for line in data.split(b"\n") if line]
    return max(len(lines) - 1, 0) if data.strip() else 0


# damage to CSV exports


def _fields(line: str) -> list[str]:
    return line.split(",")  # the daily exports hold no quoted commas


def often(usual: object, *others: object) -> st.SearchStrategy:
    """``usual`` half the time, else one of ``others``: damage that spoils a whole file is
    drawn less often, so most examples also have rows that must stay clean."""
    return st.one_of(st.just(usual), st.sampled_from(others))


@st.composite
def damaged_lines(draw: st.DrawFn, source: str) -> list[str]:
    """The day's export with line-level damage: extreme numbers, repeated rows, rows of
    another day or source, columns shuffled, repeated or dropped."""
    base, other_day, numbers = CSV_BASES[source]
    header, *rows = base
    names = _fields(header)
    rows = [_fields(row) for row in rows]
    for _ in range(draw(st.integers(0, 4), label="extreme values")):
        row = draw(st.integers(0, len(rows) - 1))
        column = names.index(draw(st.sampled_from(numbers)))
        rows[row][column] = draw(st.sampled_from(EXTREMES))
    if draw(st.booleans(), label="repeat rows"):
        rows += [rows[i] for i in draw(st.lists(st.integers(0, len(rows) - 1), max_size=5))]
    if draw(st.booleans(), label="rows of another day"):
        rows += [_fields(line) for line in other_day[1:]][: draw(st.integers(1, 10))]
    table = [names, *rows]
    order = list(range(len(names)))
    column_damage = draw(often("none", "shuffle", "repeat", "drop"), label="columns")
    if column_damage == "shuffle":
        order = draw(st.permutations(order))
    elif column_damage == "repeat":
        order.insert(draw(st.integers(0, len(order))), draw(st.sampled_from(order)))
    elif column_damage == "drop":
        order.remove(draw(st.sampled_from(order)))
    lines = [",".join(fields[i] for i in order) for fields in table]
    if draw(st.booleans(), label="rows of the other source"):
        other = CSV_BASES["weather" if source == "flights" else "flights"][0]
        for line in other[: draw(st.integers(1, 4))]:
            lines.insert(draw(st.integers(1, len(lines))), line)
    return lines


@st.composite
def damaged_bytes(draw: st.DrawFn, lines: list[str]) -> bytes:
    """``lines`` as a file, then damaged byte-wise: another encoding, invalid UTF-8, flipped,
    inserted or deleted bytes, truncation at any byte."""
    text = "\n".join(lines) + "\n"
    encoding = draw(often("utf-8", "utf-8-sig", "latin-1", "utf-16"), label="encoding")
    if encoding == "latin-1":  # as ASCII the same bytes: put in what latin-1 spells otherwise
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["é", "Zürich", "°F", "\xa0"])) + text[at:]
    data = bytearray(text.encode(encoding))
    for _ in range(draw(st.integers(0, 3), label="byte edits")):
        at = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(["flip", "insert", "invalid", "delete"]))
        if edit == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif edit == "insert":
            data[at:at] = draw(st.sampled_from([b"\x00", b",", b"\n", b"\r", b'"', b" ", b"-"]))
        elif edit == "invalid":
            data[at:at] = draw(st.sampled_from(INVALID_UTF8))
        elif edit == "delete":
            del data[at : at + draw(st.integers(1, 40))]
    if draw(st.booleans(), label="truncate"):
        del data[draw(st.integers(0, len(data))) :]
    return bytes(data)


@st.composite
def damaged_csv(draw: st.DrawFn, source: str) -> bytes:
    return draw(damaged_bytes(draw(damaged_lines(source))))


BUDGET = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
)
"""Fixed, derandomized budgets: an example parses, cleans and validates a whole file."""
METAMORPHIC = settings(BUDGET, max_examples=8)


@pytest.mark.parametrize("pipeline", [FLIGHTS, WEATHER], ids=lambda p: p.name)
@BUDGET
@given(data=st.data())
def test_any_damage_to_a_csv_export_is_triaged(pipeline: Pipeline, data: st.DataObject) -> None:
    damaged = data.draw(damaged_csv(pipeline.name), label="file")
    raw, result = pipeline.run(damaged)
    assert_triaged(pipeline, raw, result)
    if b'"' not in damaged and b"\r" not in damaged:  # no quoting or line end to merge lines
        assert len(raw) == data_lines(damaged), "a line of the file is not a raw row"


def _reordered(frame: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    return frame[list(like.columns)].reset_index(drop=True)


@pytest.mark.parametrize("pipeline", [FLIGHTS, WEATHER], ids=lambda p: p.name)
@METAMORPHIC
@given(data=st.data())
def test_shuffled_columns_and_extra_rows_clean_the_same(
    pipeline: Pipeline, data: st.DataObject
) -> None:
    """Columns are matched by name; repeated rows, rows of another day and of another source
    are rejected and change nothing in the clean table."""
    base, other_day, _ = CSV_BASES[pipeline.name]
    other_source = CSV_BASES["weather" if pipeline is FLIGHTS else "flights"][0]
    order = data.draw(st.permutations(range(len(_fields(base[0])))), label="columns")
    extra = data.draw(
        st.lists(st.sampled_from([*base[1:], *other_day[1:], *other_source[1:4]]), max_size=8),
        label="extra rows",
    )
    damaged = "\n".join(_csv_in_order(line, order) for line in [*base, *extra]) + "\n"
    expected = undamaged(pipeline.name, ("\n".join(base) + "\n").encode())
    raw, result = pipeline.run(damaged.encode())
    assert_triaged(pipeline, raw, result)
    pd.testing.assert_frame_equal(_reordered(result.clean, expected.clean), expected.clean)
    assert len(result.rejected) == len(expected.rejected) + len(extra)


def _csv_in_order(line: str, order: Sequence[int]) -> str:
    """A row in the shuffled column order (rows of the other source, with another field count,
    stay as they are)."""
    fields = _fields(line)
    return ",".join(fields[i] for i in order) if len(fields) == len(order) else line


# damage to the taxi Parquet export

TAXI_NUMBERS = ("distance", "hour")
NON_FINITE = (np.inf, -np.inf, np.nan, 1e308, -1e308, 5e-324, -0.0)


@st.composite
def damaged_trips(draw: st.DrawFn, months: tuple[pd.DataFrame, pd.DataFrame]) -> bytes:
    """The month's export with frame-level damage (extreme numbers, wrong column types, rows
    repeated or of another month, columns shuffled, repeated, dropped or added), then
    byte-level damage (noise, truncation)."""
    month, other_month = months
    frame = month.copy()
    for _ in range(draw(st.integers(0, 3), label="extreme values")):
        column = draw(st.sampled_from(TAXI_NUMBERS))
        rows = draw(st.lists(st.integers(0, len(frame) - 1), min_size=1, max_size=5))
        if column == "hour" and draw(st.booleans()):  # int64's edges, as integers
            frame.loc[rows, column] = draw(st.sampled_from([2**63 - 1, -(2**63), 24, -1]))
        else:
            frame[column] = frame[column].astype("float64")
            frame.loc[rows, column] = draw(st.sampled_from(NON_FINITE))
    if draw(st.booleans(), label="repeat rows"):
        frame = pd.concat([frame, frame.sample(5, random_state=draw(st.integers(0, 9)))])
    if draw(st.booleans(), label="rows of another month"):
        frame = pd.concat([frame, other_month.head(draw(st.integers(1, 10)))])
    frame = frame.reset_index(drop=True)
    kind = draw(often(None, "text", "bool", "float", "bytes", "category", "null"), label="type")
    if kind is not None:
        column = draw(st.sampled_from(list(frame.columns)))
        frame[column] = _retyped(frame[column], kind)
    columns = list(frame.columns)
    column_damage = draw(often("none", "shuffle", "repeat", "drop", "add"), label="columns")
    if column_damage == "shuffle":
        columns = draw(st.permutations(columns))
    elif column_damage == "drop":
        columns.remove(draw(st.sampled_from(columns)))
    table = pyarrow.Table.from_pandas(frame[columns], preserve_index=False)
    if column_damage == "repeat":
        name = draw(st.sampled_from(columns))
        table = table.append_column(name, table.column(name))
    elif column_damage == "add":
        table = table.append_column("extra", pyarrow.array(range(len(frame))))
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    data = bytearray(buffer.getvalue())
    byte_damage = draw(often("none", "flip", "truncate", "both"), label="bytes")
    if byte_damage in ("flip", "both"):
        for at in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=3)):
            data[at] ^= draw(st.integers(1, 255))
    if byte_damage in ("truncate", "both"):
        del data[draw(st.integers(0, len(data))) :]
    return bytes(data)


def _retyped(values: pd.Series, kind: str) -> pd.Series:
    """``values`` as another column type than the export's."""
    if kind == "text":
        return values.astype(str)
    if kind == "bool":
        return values.astype(str).str.len() > 2
    if kind == "float":
        return pd.to_numeric(values, errors="coerce").astype("float64")
    if kind == "bytes":
        return values.astype(str).str.encode("utf-8")
    if kind == "category":
        return values.astype("category")
    return pd.Series(None, index=values.index, dtype=object)


@BUDGET
@given(data=st.data())
def test_any_damage_to_a_parquet_export_is_triaged(
    taxi_months: tuple[pd.DataFrame, pd.DataFrame], data: st.DataObject
) -> None:
    raw, result = TAXI.run(data.draw(damaged_trips(taxi_months), label="file"))
    assert_triaged(TAXI, raw, result)


@METAMORPHIC
@given(data=st.data())
def test_trips_in_any_column_order_with_extra_rows_clean_the_same(
    taxi_months: tuple[pd.DataFrame, pd.DataFrame], data: st.DataObject
) -> None:
    month, other_month = taxi_months
    order = data.draw(st.permutations(list(month.columns)), label="columns")
    extra = data.draw(
        st.lists(st.sampled_from(range(len(month) + len(other_month))), max_size=8), label="rows"
    )
    both = pd.concat([month, other_month], ignore_index=True)
    damaged = pd.concat([month, both.iloc[extra]], ignore_index=True)[order]
    expected = undamaged(TAXI.name, _parquet(month))
    raw, result = TAXI.run(_parquet(damaged))
    assert_triaged(TAXI, raw, result)
    pd.testing.assert_frame_equal(_reordered(result.clean, expected.clean), expected.clean)
    assert len(result.rejected) == len(expected.rejected) + len(extra)


# regressions: each damage the properties found, as a plain example


def _flights_file(lines: list[str] | None = None) -> bytes:
    return ("\n".join(lines or CSV_BASES["flights"][0]) + "\n").encode()


def rules(result: Cleaned) -> dict[str, int]:
    return result.rejected[REJECTION_RULE].value_counts().to_dict()


def test_a_line_that_is_not_utf8_is_rejected_with_the_reason() -> None:
    """Found: invalid UTF-8 anywhere in a CSV raised UnicodeDecodeError."""
    lines = CSV_BASES["flights"][0]
    data = _flights_file([*lines[:3], lines[3].replace("N", "\xe9", 1), *lines[4:]])
    raw = parse_landed_csv(data.decode().encode("latin-1"))

    bad = raw[raw[PARSE_ERROR].notna()]
    assert len(raw) == BASE_ROWS and len(bad) == 1
    assert bad[PARSE_ERROR].iloc[0].startswith("not UTF-8: invalid continuation byte")
    assert "\\xe9" in bad[RAW_TEXT].iloc[0]  # shown, not decoded as something else
    result = clean_flights(raw, DAY, REFERENCES)
    assert rules(result) == {"corrupt_line": 1}
    assert result.kept_raw_rows == BASE_ROWS - 1


def test_a_file_in_another_encoding_is_rejected_whole() -> None:
    """Found: a UTF-16 export raised UnicodeDecodeError; its header cannot be read, so every
    line is a row naming why."""
    data = _flights_file().decode().encode("utf-16")
    raw = parse_landed_csv(data)

    assert len(raw) == data_lines(data)
    assert raw[PARSE_ERROR].str.startswith("the header is not UTF-8").all()
    result = clean_flights(raw, DAY, REFERENCES)
    assert result.clean.empty and set(rules(result)) == {"corrupt_line"}
    assert_triaged(FLIGHTS, raw, result)


@pytest.mark.parametrize("cut", [4, 20, None], ids=["in-first-name", "in-header", "at-end"])
def test_a_header_without_a_final_line_break_is_a_header(cut: int | None) -> None:
    """Found: a file truncated inside its header line, or a header-only file without a final
    line break, raised ArrowInvalid ("Empty CSV file")."""
    header = CSV_BASES["flights"][0][0].encode()[:cut]
    raw = parse_landed_csv(header)

    assert raw.empty and list(raw.columns[:-2]) == header.decode().split(",")
    result = clean_flights(raw, DAY, REFERENCES)
    assert result.clean.empty and result.rejected.empty


def test_a_header_that_repeats_a_column_rejects_every_row() -> None:
    """Found: a repeated column name raised InvalidIndexError in the triage. Which of the two
    values is right cannot be known: every row is rejected, with the name in the reason."""
    lines = [line + "," + _fields(line)[12] for line in CSV_BASES["flights"][0]]
    raw = parse_landed_csv(_flights_file(lines))

    assert raw.columns.is_unique and "origin.1" in raw
    assert (raw[PARSE_ERROR] == "the header repeats origin").all()
    result = clean_flights(raw, DAY, REFERENCES)
    assert rules(result) == {"corrupt_line": BASE_ROWS}
    assert result.rejected["origin"].notna().all()  # the values as landed are kept


def test_a_header_that_cannot_be_read_rejects_every_line() -> None:
    """Found: an unbalanced quote in the header raised ArrowInvalid."""
    data = b'year,"month,day\n2013,1,2\n2013,1,2\n'
    raw = parse_landed_csv(data)

    assert len(raw) == 2
    assert raw[PARSE_ERROR].str.startswith("the header is unreadable CSV").all()
    assert raw[RAW_TEXT].tolist() == ["2013,1,2", "2013,1,2"]


@pytest.mark.parametrize(
    ("value", "rule"),
    [("inf", "out_of_range:flight"), ("-inf", "out_of_range:flight"),
     ("1e308", "out_of_range:flight"), ("99999999999999999999999", "out_of_range:flight"),
     ("1.5", "not_whole:flight")],
)  # fmt: skip
def test_a_flight_number_that_is_not_a_whole_number_is_rejected(value: str, rule: str) -> None:
    """Found when ``flight`` had no declared range: inf raised IntCastingNaNError when cast to
    int64, 1e308 became -9223372036854775808 and 1.5 became 1. Now the declared range (the
    service's too) rejects the huge ones, and a fraction is not a whole number."""
    lines = CSV_BASES["flights"][0]
    row = _fields(lines[1])
    row[config.FLIGHT_COLUMNS.index("flight")] = value
    raw, result = FLIGHTS.run(_flights_file([lines[0], ",".join(row), *lines[2:]]))

    assert rules(result) == {rule: 1}
    assert_triaged(FLIGHTS, raw, result)


def test_parquet_text_stored_as_bytes_is_read_as_utf8() -> None:
    """Found: a text column stored as Parquet binary landed as "b'Sun Taxi'" and was kept."""
    table = pyarrow.table({"company": pyarrow.array([b"Sun Taxi", b"\xff\xfe"], pyarrow.binary())})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    raw = parse_landed_parquet(buffer.getvalue())

    assert raw["company"].tolist() == ["Sun Taxi", pd.NA]
    assert raw[PARSE_ERROR].tolist() == [pd.NA, "company is not UTF-8 text"]


# one bad line among good ones

OVERSIZED = (2**20 + 1, 3_000_000)
"""Field sizes past Arrow's default block (1 MiB), which made it refuse the whole file."""
CONTROL_CHARACTERS = [chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c not in (10, 13)]
"""Control characters that do not end a line."""


@st.composite
def bad_line(draw: st.DrawFn, rows: list[str]) -> tuple[bytes, int | None]:
    """A line no rule can accept, and the index of the real row it replaces (None: it is added):
    arbitrary bytes, or a real row with an oversized field, a field too many or too few, invalid
    UTF-8, a control character or a stray quote."""
    kind = draw(
        st.sampled_from(["bytes", "oversized", "fields", "not UTF-8", "control", "quote"]),
        label="damage",
    )
    if kind == "bytes":
        return draw(st.binary(min_size=1, max_size=300)), None
    at = draw(st.integers(0, len(rows) - 1))
    fields = [field.encode() for field in _fields(rows[at])]
    column = draw(st.integers(0, len(fields) - 1))
    if kind == "oversized":
        fields[column] = b"z" * draw(st.sampled_from(OVERSIZED))
    elif kind == "fields":
        fields = fields[:-1] if draw(st.booleans()) else [*fields, b"x"]
    else:
        insert = {
            "not UTF-8": draw(st.sampled_from(INVALID_UTF8)),
            "control": draw(st.sampled_from(CONTROL_CHARACTERS)).encode(),
            "quote": b'"',
        }[kind]
        cut = draw(st.integers(0, len(fields[column])))
        fields[column] = fields[column][:cut] + insert + fields[column][cut:]
    return b",".join(fields), at


@pytest.mark.parametrize("pipeline", [FLIGHTS, WEATHER], ids=lambda p: p.name)
@BUDGET
@given(data=st.data())
def test_one_bad_line_holds_back_no_other_row(pipeline: Pipeline, data: st.DataObject) -> None:
    """Whatever one line holds, every other row is read and cleaned as if it were not there."""
    header, *rows = CSV_BASES[pipeline.name][0]
    line, replaced = data.draw(bad_line(rows), label="bad line")
    good = [row.encode() for i, row in enumerate(rows) if i != replaced]
    at = replaced if replaced is not None else data.draw(st.integers(0, len(good)), label="at")
    damaged = b"\n".join([header.encode(), *good[:at], line, *good[at:], b""])
    expected = undamaged(pipeline.name, b"\n".join([header.encode(), *good, b""]))

    raw, result = pipeline.run(damaged)

    assert_triaged(pipeline, raw, result)
    pd.testing.assert_frame_equal(result.clean, expected.clean)


# raw keeps every value as landed

LINE_BREAKS = b"\n\r"


def _stored(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` written and read back by the platform's Parquet IO manager, as a raw partition."""
    base = tempfile.mkdtemp()
    manager = ParquetIOManager(base_url=base).create_io_manager(dg.build_init_resource_context())
    path = to_upath(base) / "raw.parquet"
    manager.dump_to_path(dg.build_output_context(), frame, path)
    return manager.load_from_path(dg.build_input_context(), path)


@BUDGET
@given(
    value=st.one_of(st.text().map(str.encode), st.binary()).filter(
        lambda v: not any(b in v for b in LINE_BREAKS)
    )
)
def test_any_bytes_in_a_csv_field_are_kept_or_the_line_is_rejected_whole(value: bytes) -> None:
    """UTF-8 text, control characters included, is stored exactly as landed; bytes that are not
    UTF-8 make their line a row naming why, with its text (those bytes escaped), and nothing
    else changes. A line break ends a record, quoted or not."""
    field = b'"' + value.replace(b'"', b'""') + b'"'
    line = b"2," + field
    raw = _stored(parse_landed_csv(b"id,text\n1,a\n" + line + b"\n3,b\n"))

    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        assert raw["text"].tolist() == ["a", "b", pd.NA]
        assert raw[PARSE_ERROR].iloc[2].startswith("not UTF-8")
        assert raw[RAW_TEXT].iloc[2] == line.decode("utf-8", "backslashreplace")
    else:
        assert raw["text"].tolist() == ["a", text, "b"]
        assert raw[PARSE_ERROR].isna().all()


@BUDGET
@given(value=st.one_of(st.text(), st.binary()))
def test_any_text_in_a_parquet_field_is_kept_exactly(value: str | bytes) -> None:
    """Text (line breaks too) is stored as landed; a binary value that is not UTF-8 is left
    empty with the reason, its neighbours unchanged."""
    text = pyarrow.string() if isinstance(value, str) else pyarrow.binary()
    table = pyarrow.table({"id": [1, 2, 3], "text": pyarrow.array(["a", value, "b"], text)})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    raw = _stored(parse_landed_parquet(buffer.getvalue()))

    try:
        expected = value if isinstance(value, str) else value.decode("utf-8")
    except UnicodeDecodeError:
        assert raw["text"].tolist() == ["a", pd.NA, "b"]
        assert raw[PARSE_ERROR].tolist() == [pd.NA, "text is not UTF-8 text", pd.NA]
    else:
        assert raw["text"].tolist() == ["a", expected, "b"]
        assert raw[PARSE_ERROR].isna().all()


def test_an_oversized_field_holds_back_no_other_row() -> None:
    """Found: a field longer than Arrow's block (1 MiB) made the reader refuse the whole file,
    so every line of it was rejected as corrupt."""
    raw = parse_landed_csv(b"a,b\n1,x\n2," + b"z" * 3_000_000 + b"\n3,ok\n")

    assert raw["a"].tolist() == ["1", "2", "3"]
    assert raw["b"].str.len().tolist() == [1, 3_000_000, 2]
    assert raw[PARSE_ERROR].isna().all()


def test_a_stray_quote_takes_no_line_along() -> None:
    """Found: a quote that did not close on its line made the rest of the file one value of
    that row, losing every row after it; text after a closing quote was dropped (``"a"b`` read
    as ``ab``)."""
    raw = parse_landed_csv(b'a,b\n1,"x\n2,"y"z\n3,ok\n4,"q""uoted, fine"\n')

    assert raw["a"].tolist() == ["3", "4", pd.NA, pd.NA]
    assert raw["b"].tolist() == ["ok", 'q"uoted, fine', pd.NA, pd.NA]
    assert raw[PARSE_ERROR].tolist()[2:] == [
        "unreadable CSV: unexpected end of data",
        "unreadable CSV: ',' expected after '\"'",
    ]
    assert raw[RAW_TEXT].tolist()[2:] == ['1,"x', '2,"y"z']


def test_a_line_longer_than_the_largest_is_rejected_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``LARGEST_LINE`` (2 GiB - 2 bytes; here 16) a line is a row naming its length, with
    the first ``LONG_LINE_KEPT`` bytes as its text; the file is read in blocks that size and
    every other line still reads."""
    monkeypatch.setattr(cleaning, "LARGEST_LINE", 16)
    monkeypatch.setattr(cleaning, "LONG_LINE_KEPT", 8)
    lines = [b"a,b", *(f"{n},row {n}".encode() for n in range(20)), b"99," + b"z" * 20]

    raw = parse_landed_csv(b"\n".join(lines))

    assert raw["a"].tolist() == [*(str(n) for n in range(20)), pd.NA]
    assert raw[PARSE_ERROR].iloc[-1] == "longer than 16 bytes (23 bytes)"
    assert raw[RAW_TEXT].iloc[-1] == "99,zzzzz"


def test_a_control_character_in_one_code_rejects_that_row_alone() -> None:
    """Found: a NUL after one flight's carrier (``B6\\x00``) rejected all 162 B6 flights of the
    day as ``malformed_code:carrier``: pandas' ``unique()`` takes ``"B6\\x00"`` and ``"B6"``
    for one value, so the well-formed ``B6`` was never matched."""
    header, *rows = CSV_BASES["flights"][0]
    fields = _fields(rows[0])
    carrier = config.FLIGHT_COLUMNS.index("carrier")
    fields[carrier] += "\x00"
    raw, result = FLIGHTS.run(_flights_file([header, ",".join(fields), *rows[1:]]))

    assert rules(result) == {"control_character:carrier": 1}
    assert result.kept_raw_rows == BASE_ROWS - 1
    assert result.rejected["carrier"].tolist() == [fields[carrier]]  # as landed
    assert_triaged(FLIGHTS, raw, result)


@pytest.mark.parametrize(
    "note", [b"\xff{", b"{not json", b'{"columns": [{}]}'], ids=["not UTF-8", "not JSON", "no type"]
)
def test_a_damaged_pandas_note_in_a_parquet_footer_leaves_the_rows_readable(note: bytes) -> None:
    """Found: a flipped byte in the footer's ``pandas`` note (how pandas wrote the columns)
    raised UnicodeDecodeError, JSONDecodeError or KeyError from ``to_pandas``; the values
    themselves were intact. The note is not needed to read them as text."""
    table = pyarrow.table({"trip_id": [1, 2], "company": ["Sun Taxi", "Flash Cab"]})
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata({b"pandas": note}), buffer)

    raw = parse_landed_parquet(buffer.getvalue())

    assert raw["trip_id"].tolist() == ["1", "2"]
    assert raw["company"].tolist() == ["Sun Taxi", "Flash Cab"]
    assert raw[PARSE_ERROR].isna().all()
