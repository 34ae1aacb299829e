"""Generic row triage: walk raw rows through declared rules, keep the good, reject the rest.

Each rule names the rows it rejects; a row's rejection reason is the first rule it breaks, so
every raw row ends up either kept or rejected with exactly one reason, and nothing is lost.
Raw values are strings as landed; rules parse them and never guess a value they cannot read.
"""

import io
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

PARSE_ERROR = "_parse_error"
"""Raw column: why a line could not be split into fields (null for lines that parsed)."""
RAW_TEXT = "_raw_text"
"""Raw column: the text of a line that could not be parsed."""
REJECTION_RULE = "rejection_rule"
"""Rejected-rows column: the rule that rejected the row, as ``rule`` or ``rule:column``."""


class RangeRule(Protocol):
    low: float
    high: float
    action: str


class Cleaned(NamedTuple):
    """One partition after cleaning."""

    clean: pd.DataFrame
    rejected: pd.DataFrame
    kept_raw_rows: int
    """Raw rows that made it into ``clean`` (rows added by a gap rule are not counted)."""
    notes: dict
    """What the rules did, for the asset's metadata."""


def parse_landed(data: bytes, file_format: str, typed: bool = False) -> pd.DataFrame:
    """A landed file as a frame: as text, every line kept (``typed``: as pandas reads it, for
    reference tables)."""
    if typed:
        reader = pd.read_parquet if file_format == "parquet" else pd.read_csv
        return reader(io.BytesIO(data))
    if file_format == "parquet":
        return parse_landed_parquet(data)
    return parse_landed_csv(data)


def parse_landed_parquet(data: bytes) -> pd.DataFrame:
    """Read a landed Parquet file with every value as text, like a CSV.

    A file that cannot be read at all is one row holding the reason in ``_parse_error`` (and no
    data columns, which the raw schema check reports), so it is rejected, not lost.
    """
    import pyarrow.parquet as pq

    meta = {PARSE_ERROR: pd.Series(dtype="string"), RAW_TEXT: pd.Series(dtype="string")}
    if not data:
        return pd.DataFrame(meta)
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as error:
        reason = f"unreadable parquet file: {type(error).__name__}: {error}"[:500]
        return pd.DataFrame(
            {PARSE_ERROR: pd.Series([reason], dtype="string"),
             RAW_TEXT: pd.Series([pd.NA], dtype="string")}
        )  # fmt: skip
    frame = table.to_pandas()
    parsed = pd.DataFrame(
        {name: _as_text(frame[name]) for name in frame.columns}, index=frame.index
    )
    return parsed.assign(**{name: pd.Series(pd.NA, index=frame.index, dtype="string")
                            for name in meta})  # fmt: skip


def _as_text(values: pd.Series) -> pd.Series:
    """Values as the text an export would hold (floats in their shortest exact form)."""
    text = values.astype(object).where(values.notna(), None)
    return pd.Series(
        [None if v is None else (repr(v) if isinstance(v, float) else str(v)) for v in text],
        index=values.index,
        dtype="string",
    )


def parse_landed_csv(data: bytes) -> pd.DataFrame:
    """Read a landed CSV as strings, keeping every line.

    Lines whose field count does not match the header become rows with all fields empty, the
    line's text in ``_raw_text`` and the reason in ``_parse_error``. An empty file gives a frame
    with no data columns at all, which the raw schema check reports.
    """
    meta = {PARSE_ERROR: pd.Series(dtype="string"), RAW_TEXT: pd.Series(dtype="string")}
    if not data.strip():
        return pd.DataFrame(meta)
    names = pd.read_csv(io.BytesIO(data), nrows=0, dtype=str).columns.to_list()
    corrupt: list[dict[str, str]] = []

    def keep_invalid(row: pacsv.InvalidRow) -> str:
        corrupt.append(
            {
                PARSE_ERROR: f"expected {row.expected_columns} fields, found {row.actual_columns}",
                RAW_TEXT: row.text,
            }
        )
        return "skip"

    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(use_threads=False),
        parse_options=pacsv.ParseOptions(invalid_row_handler=keep_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in names}, strings_can_be_null=True
        ),
    )
    parsed = table.to_pandas(types_mapper=pd.ArrowDtype).astype("string")
    parsed[PARSE_ERROR] = pd.Series(pd.NA, index=parsed.index, dtype="string")
    parsed[RAW_TEXT] = pd.Series(pd.NA, index=parsed.index, dtype="string")
    bad = pd.DataFrame(corrupt, columns=[PARSE_ERROR, RAW_TEXT]).astype("string")
    return pd.concat([parsed, bad], ignore_index=True)


class Triage:
    """Applies rules to raw string rows and records the first rule each row breaks."""

    def __init__(self, raw: pd.DataFrame, columns: Sequence[str]) -> None:
        self.raw = raw.reset_index(drop=True)
        self.values = self.raw.reindex(columns=list(columns)).astype("string")
        self.parsed: dict[str, pd.Series] = {}
        self._reason = np.full(len(self.raw), None, dtype=object)
        self._alive = np.ones(len(self.raw), dtype=bool)

    @property
    def alive(self) -> pd.Series:
        """Rows not rejected so far."""
        return pd.Series(self._alive.copy(), index=self.raw.index)

    def reject(self, mask: pd.Series, rule: str) -> None:
        hit = mask.to_numpy(dtype=bool, na_value=False) & self._alive
        self._reason[hit] = rule
        self._alive &= ~hit

    def corrupt_lines(self) -> None:
        if PARSE_ERROR in self.raw:
            self.reject(self.raw[PARSE_ERROR].notna(), "corrupt_line")

    def missing_columns(self, required: Iterable[str]) -> None:
        for column in required:
            if column not in self.raw.columns:
                self.reject(pd.Series(True, index=self.raw.index), f"missing_column:{column}")

    def numbers(self, columns: Iterable[str]) -> None:
        """Parse numeric columns; a value present but unreadable rejects the row."""
        for column in columns:
            text = self.values[column].str.strip()
            number = pd.to_numeric(text, errors="coerce")
            self.reject(text.notna() & number.isna(), f"unparseable:{column}")
            self.parsed[column] = number.astype("float64")

    def timestamps(self, columns: Iterable[str]) -> None:
        """Parse ISO-8601 UTC timestamps; a value present but unreadable rejects the row."""
        for column in columns:
            text = self.values[column].str.strip()
            stamp = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
            self.reject(text.notna() & stamp.isna(), f"unparseable:{column}")
            self.parsed[column] = stamp

    def required(self, columns: Iterable[str]) -> None:
        for column in columns:
            value = self.parsed.get(column, self.values[column])
            self.reject(value.isna(), f"missing_value:{column}")

    def ranges(self, rules: Mapping[str, RangeRule]) -> dict[str, int]:
        """Apply range rules; returns how many values each ``null`` rule blanked."""
        blanked = {}
        for column, rule in rules.items():
            value = self.parsed[column]
            outside = value.notna() & ~value.between(rule.low, rule.high)
            if rule.action == "reject":
                self.reject(outside, f"out_of_range:{column}")
            elif rule.action == "null":
                blanked[column] = int((outside & self.alive).sum())
                self.parsed[column] = value.mask(outside)
            else:
                raise ValueError(f"unknown range action {rule.action!r} for {column}")
        return blanked

    def duplicates(self, key: Sequence[str]) -> None:
        """Reject later copies of a key among the rows still alive; the first one is kept."""
        frame = pd.DataFrame({c: self.parsed.get(c, self.values[c]) for c in key})
        repeated = frame[self.alive].duplicated(keep="first").reindex(frame.index, fill_value=False)
        self.reject(repeated, "duplicate")

    def rejected(self) -> pd.DataFrame:
        """The rejected rows as landed, with the rule that rejected each."""
        dead = ~self._alive
        rows = self.values.assign(**{RAW_TEXT: self.raw.get(RAW_TEXT)})[dead]
        rules = pd.array(self._reason[dead], dtype="string")
        return rows.assign(**{REJECTION_RULE: rules}).reset_index(drop=True)

    def kept(self) -> pd.DataFrame:
        """Parsed values of the rows that passed every rule (string columns stay strings)."""
        frame = self.values.copy()
        for column, value in self.parsed.items():
            frame[column] = value
        return frame[self._alive].reset_index(drop=True)
