"""Generic row triage: walk raw rows through declared rules, keep the good, reject the rest.

Each rule names the rows it rejects; a row's rejection reason is the first rule it breaks, so
every raw row ends up either kept or rejected with exactly one reason, and nothing is lost.
Raw values are strings as landed; rules parse them and never guess a value they cannot read.
"""

import io
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
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


class CodeRule(Protocol):
    pattern: str | None
    domain: list[str] | None
    reference: str | None
    unreferenced: str


class SourceRules(Protocol):
    """The declared rules of a source (``ml_assets.contract.declaration.Source``)."""

    required: list[str]
    ranges: Mapping[str, RangeRule]
    codes: Mapping[str, CodeRule]
    clock_times: list[str]

    def nulls(self, column: str) -> list[str]: ...


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
    texts = {name: _as_text(frame[name]) for name in frame.columns}
    parsed = pd.DataFrame({name: text for name, (text, _) in texts.items()}, index=frame.index)
    error = pd.Series(pd.NA, index=frame.index, dtype="string")
    for name, (_, undecodable) in texts.items():  # bytes are text only if they are UTF-8
        error = error.mask(error.isna() & undecodable, f"{name} is not UTF-8 text")
    return parsed.assign(
        **{PARSE_ERROR: error, RAW_TEXT: pd.Series(pd.NA, index=frame.index, dtype="string")}
    )


def _as_text(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Values as the text an export would hold (floats in their shortest exact form, bytes
    decoded as UTF-8), and which values are bytes that are not UTF-8 (left empty)."""
    text: list[str | None] = []
    undecodable: list[bool] = []
    for value in values.astype(object).where(values.notna(), None):
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                undecodable.append(True)
                text.append(None)
                continue
        undecodable.append(False)
        text.append(
            None if value is None else repr(value) if isinstance(value, float) else str(value)
        )
    return (
        pd.Series(text, index=values.index, dtype="string"),
        pd.Series(undecodable, index=values.index, dtype=bool),
    )


def parse_landed_csv(data: bytes) -> pd.DataFrame:
    """Read a landed CSV as strings, keeping every line.

    Lines whose field count does not match the header, and lines that are not UTF-8, become
    rows with all fields empty, the line's text in ``_raw_text`` and the reason in
    ``_parse_error`` (a header that is not UTF-8 or cannot be read makes every line such a row;
    a header that repeats a column name gives every row that reason). An empty file gives a
    frame with no data columns at all, which the raw schema check reports.
    """
    meta = {PARSE_ERROR: pd.Series(dtype="string"), RAW_TEXT: pd.Series(dtype="string")}
    if not data.strip():
        return pd.DataFrame(meta)
    text, undecodable = _utf8_lines(data)
    try:
        parsed, corrupt = _read_csv_text(text)
    except pa.ArrowException as error:
        parsed = pd.DataFrame(meta)
        reason = f"unreadable CSV file: {error}"[:500]
        lines = [line for line in text.splitlines() if line][1:]
        corrupt = [{PARSE_ERROR: reason, RAW_TEXT: line.decode()} for line in lines]
    bad = pd.DataFrame(corrupt + undecodable, columns=[PARSE_ERROR, RAW_TEXT]).astype("string")
    return pd.concat([parsed, bad], ignore_index=True)


def _utf8_lines(data: bytes) -> tuple[bytes, list[dict[str, str]]]:
    """``data`` without its lines that are not UTF-8, and those lines as rows naming why (all
    lines after the header when the header is not UTF-8: then no field can be named)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return data, []

    def why(line: bytes) -> str | None:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as error:
            return f"not UTF-8: {error.reason} at byte {error.start}"
        return None

    def row(line: bytes, reason: str) -> dict[str, str]:
        return {PARSE_ERROR: reason, RAW_TEXT: line.decode("utf-8", "backslashreplace")}

    header, *lines = [line for line in data.splitlines() if line]
    if (reason := why(header)) is not None:
        return b"", [row(line, f"the header is {reason}") for line in lines]
    reasons = [why(line) for line in lines]
    undecodable = [row(line, r) for line, r in zip(lines, reasons, strict=True) if r]
    text = b"\n".join([header, *(line for line, r in zip(lines, reasons, strict=True) if not r)])
    return text, undecodable


def _read_csv_text(data: bytes) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """UTF-8 CSV text as a frame of strings, and the lines with the wrong field count."""
    corrupt: list[dict[str, str]] = []

    def keep_invalid(row: pacsv.InvalidRow) -> str:
        corrupt.append(
            {
                PARSE_ERROR: f"expected {row.expected_columns} fields, found {row.actual_columns}",
                RAW_TEXT: row.text,
            }
        )
        return "skip"

    if not data.strip():
        return pd.DataFrame({PARSE_ERROR: [], RAW_TEXT: []}, dtype="string"), corrupt
    if not data.endswith((b"\n", b"\r")):
        data += b"\n"  # a header without a final line break is still a header
    read_options = pacsv.ReadOptions(use_threads=False)
    names = pacsv.open_csv(
        io.BytesIO(data),
        read_options=read_options,
        parse_options=pacsv.ParseOptions(invalid_row_handler=lambda row: "skip"),
    ).schema.names
    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=read_options,
        parse_options=pacsv.ParseOptions(invalid_row_handler=keep_invalid),
        convert_options=pacsv.ConvertOptions(
            # every value as landed; which values mean "missing" is the source's declared policy
            column_types={name: pa.string() for name in names},
            strings_can_be_null=False,
        ),
    )
    unique, repeated = _unique_names(table.column_names)
    parsed = table.rename_columns(unique).to_pandas(types_mapper=pd.ArrowDtype).astype("string")
    reason = f"the header repeats {', '.join(repeated)}" if repeated else pd.NA
    parsed[PARSE_ERROR] = pd.Series(reason, index=parsed.index, dtype="string")
    parsed[RAW_TEXT] = pd.Series(pd.NA, index=parsed.index, dtype="string")
    return parsed, corrupt


def _unique_names(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """Column names with each repeat renamed ``<name>.<n>``, and the names that repeat."""
    unique: list[str] = []
    repeated: list[str] = []
    for name in names:
        new, n = name, 0
        while new in unique:
            n += 1
            new = f"{name}.{n}"
        if n and name not in repeated:
            repeated.append(name)
        unique.append(new)
    return unique, repeated


class Triage:
    """Applies rules to raw string rows and records the first rule each row breaks."""

    def __init__(self, raw: pd.DataFrame, columns: Sequence[str]) -> None:
        self.raw = raw.reset_index(drop=True)
        self.values = self.raw.reindex(columns=list(columns)).astype("string")
        self.parsed: dict[str, pd.Series] = {}
        self.landed = self.values
        """The values as landed, before null tokens are read as missing (rejected rows)."""
        self.flags: dict[str, pd.Series] = {}
        """Boolean columns added to the clean rows, e.g. ``<column>_known``."""
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

    def declared(
        self,
        source: SourceRules,
        numbers: Iterable[str] = (),
        timestamps: Iterable[str] = (),
        references: Mapping[str, pd.DataFrame] | None = None,
    ) -> dict[str, int]:
        """Apply a source's declared rules in order: unreadable lines, missing columns, null
        tokens, parsing of ``numbers`` and ``timestamps``, required values, ranges, clock
        times and codes. Returns the notes of the ``null`` ranges (``blanked:<column>``) and the
        flagged codes (``unreferenced:<column>``) with their counts."""
        self.corrupt_lines()
        self.missing_columns(self.values.columns)
        self.null_tokens(source.nulls)
        self.numbers(numbers)
        self.timestamps(timestamps)
        self.required(source.required)
        blanked = self.ranges(source.ranges)
        self.clock_times(source.clock_times)
        unreferenced = self.codes(source.codes, references or {})
        return {
            **{f"blanked:{column}": n for column, n in blanked.items()},
            **{f"unreferenced:{column}": n for column, n in unreferenced.items()},
        }

    def null_tokens(self, tokens: Callable[[str], Sequence[str]]) -> None:
        """Read each column's declared null tokens (``tokens(column)``, matched exactly) as
        missing."""
        by_tokens: dict[tuple[str, ...], list[str]] = {}
        for column in self.values.columns:
            by_tokens.setdefault(tuple(tokens(column)), []).append(column)
        values = self.values.copy()
        for declared, columns in by_tokens.items():
            if declared:
                values[columns] = values[columns].mask(values[columns].isin(declared))
        self.values = values

    def codes(
        self, rules: Mapping[str, CodeRule], references: Mapping[str, pd.DataFrame]
    ) -> dict[str, int]:
        """Apply code rules (missing values are left to ``required``); returns how many kept
        rows carry each flagged column's code that its reference table lacks."""
        unreferenced = {}
        for column, rule in rules.items():
            text = self.values[column]
            present = text.notna()
            if rule.pattern is not None:
                # codes repeat: match each distinct value once
                form = re.compile(rule.pattern)
                well_formed = [v for v in text.dropna().unique() if form.fullmatch(v)]
                self.reject(present & ~text.isin(well_formed), f"malformed_code:{column}")
            if rule.domain is not None:
                self.reject(present & ~text.isin(rule.domain), f"unknown_code:{column}")
            if rule.reference is not None:
                table, key = rule.reference.split(".")
                known = present & text.isin(references[table][key].astype("string"))
                if rule.unreferenced == "reject":
                    self.reject(present & ~known, f"unknown_code:{column}")
                else:
                    self.flags[f"{column}_known"] = known.astype(bool)
                    unreferenced[column] = int((~known & self.alive).sum())
        return unreferenced

    def clock_times(self, columns: Iterable[str]) -> None:
        """HHMM values: a whole number, hour 0-24, minute 0-59, at most 2400."""
        for column in columns:
            value = self.parsed[column]
            valid = (value % 1 == 0) & (value % 100 < 60) & value.between(0, 2400)
            self.reject(value.notna() & ~valid, f"invalid_clock:{column}")

    def numbers(self, columns: Iterable[str]) -> None:
        """Parse numeric columns; a value present but unreadable rejects the row."""
        for column in columns:
            text = self.values[column]
            number = pd.to_numeric(text, errors="coerce")  # surrounding blanks are read too
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
        rows = self.landed.assign(**{RAW_TEXT: self.raw.get(RAW_TEXT)})[dead]
        rules = pd.array(self._reason[dead], dtype="string")
        return rows.assign(**{REJECTION_RULE: rules}).reset_index(drop=True)

    def kept(self) -> pd.DataFrame:
        """Parsed values of the rows that passed every rule (string columns stay strings)."""
        frame = self.values.copy()
        for column, value in {**self.parsed, **self.flags}.items():
            frame[column] = value
        return frame[self._alive].reset_index(drop=True)
