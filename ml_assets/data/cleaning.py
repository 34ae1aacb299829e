"""Generic row triage: walk raw rows through declared rules, keep the good, reject the rest.

Each rule names the rows it rejects; a row's rejection reason is the first rule it breaks, so
every raw row ends up either kept or rejected with exactly one reason, and nothing is lost.
Raw values are strings as landed; rules parse them and never guess a value they cannot read.
"""

import codecs
import csv
import io
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from ml_assets.data.plausibility import (
    NO_HISTORY,
    Accepted,
    Judgement,
    PlausibilityRules,
    flag_column,
    group_shift,
    inconsistent,
    judge_consistent,
    judge_groups,
)

PARSE_ERROR = "_parse_error"
"""Raw column: why a line could not be split into fields (null for lines that parsed)."""
RAW_TEXT = "_raw_text"
"""Raw column: the text of a line that could not be parsed."""
REJECTION_RULE = "rejection_rule"
"""Rejected-rows column: the rule that rejected the row, as ``rule`` or ``rule:column``."""
LARGEST_LINE = 2**31 - 2
"""The longest CSV line, in bytes, that is read into fields: Arrow reads a file in blocks of at
most 2 GiB - 1 bytes and a record (with its line break) must fit in one. A longer line is a
row that could not be read."""
LONG_LINE_KEPT = 1000
"""Bytes of a line longer than ``LARGEST_LINE`` kept as its text."""
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""Control characters (Unicode category Cc): C0, DEL and C1."""
PADDED = re.compile(r"(?:^|\x00)\s|\s(?:\x00|$)")
"""Whitespace at either end of a value, in values joined by NUL."""
INTEGER_ID = r"^(?P<sign>[+-]?)(?P<digits>[0-9]+)(?:\.0*)?$"
"""The forms of a whole-number id: optional sign, digits, optional ``.`` and zeros."""


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

    key: list[str]
    integer_ids: list[str]
    required: list[str]
    ranges: Mapping[str, RangeRule]
    codes: Mapping[str, CodeRule]
    clock_times: list[str]
    max_length: int

    def nulls(self, column: str) -> list[str]: ...


class Cleaned(NamedTuple):
    """One partition after cleaning."""

    clean: pd.DataFrame
    rejected: pd.DataFrame
    kept_raw_rows: int
    """Raw rows that made it into ``clean`` (rows added by a gap rule are not counted)."""
    notes: dict
    """What the rules did, for the asset's metadata."""
    plausibility: tuple[Judgement, ...] = ()
    """What each plausibility rule did to the partition."""


def parse_landed(data: bytes, file_format: str, typed: bool = False) -> pd.DataFrame:
    """A landed file as a frame: as text, every line kept (``typed``: typed as pandas reads it
    with Arrow, for reference tables; pandas' own CSV parser ends a value at a NUL)."""
    if typed:
        if file_format == "parquet":
            return pd.read_parquet(io.BytesIO(data))
        return pd.read_csv(io.BytesIO(data), engine="pyarrow")
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
    # without what pandas wrote about the columns: a damaged note would stop the conversion
    return text_frame(table.replace_schema_metadata(None).to_pandas())


def text_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Typed rows (a Parquet file's, a database's) with every value as the text an export would
    hold, like a parsed CSV; a bytes value that is not UTF-8 is left empty and its row gets the
    reason in ``_parse_error``."""
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
    fine = pd.Series(False, index=values.index, dtype=bool)
    if values.dtype.kind in "iub":  # whole numbers and booleans, never missing: exact as text
        return values.astype(str).astype("string"), fine
    objects = values.astype(object).where(values.notna(), None).tolist()
    if any(isinstance(value, bytes) for value in objects):
        return _decoded(objects, values.index)
    text = [
        None if value is None else repr(value) if isinstance(value, float) else str(value)
        for value in objects
    ]
    return pd.Series(text, index=values.index, dtype="string"), fine


def _decoded(objects: list[object], index: pd.Index) -> tuple[pd.Series, pd.Series]:
    """``_as_text`` of values among which some are bytes."""
    text: list[str | None] = []
    undecodable: list[bool] = []
    for value in objects:
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
        pd.Series(text, index=index, dtype="string"),
        pd.Series(undecodable, index=index, dtype=bool),
    )


def parse_landed_csv(data: bytes) -> pd.DataFrame:
    """Read a landed CSV as strings, keeping every line.

    A record is one line (``\\n``, ``\\r\\n`` or ``\\r`` ends it): a quoted value cannot
    hold a line break, so a stray quote cannot take the lines after it along. A line that cannot
    be read alone (not UTF-8; a quote that does not close, or text after a closing quote; longer
    than ``LARGEST_LINE`` bytes) or whose field count differs from the header's becomes a row
    with all fields empty, the line's text in ``_raw_text`` and the reason in ``_parse_error``.
    Every other line is read as landed, whatever the lines beside it hold. A header that cannot
    be read makes every line such a row (and the frame has no data columns); a header that
    repeats a column name gives every row that reason. An empty file gives a frame with no data
    columns at all. A UTF-8 byte-order mark at the start is read as one, not as text.
    """
    meta = {PARSE_ERROR: pd.Series(dtype="string"), RAW_TEXT: pd.Series(dtype="string")}
    data = data.removeprefix(codecs.BOM_UTF8)
    if not data.strip():
        return pd.DataFrame(meta)
    header, *lines = (line for line in data.splitlines() if line)
    utf8, quoted = _is_utf8(data), b'"' in data
    if (reason := _unreadable(header, utf8, quoted)) is not None:
        unread = [_unread_row(line, f"the header is {reason}") for line in lines]
        return pd.DataFrame(unread, columns=[PARSE_ERROR, RAW_TEXT]).astype("string")
    reasons = [_unreadable(line, utf8, quoted) for line in lines]
    readable = [line for line, reason in zip(lines, reasons, strict=True) if reason is None]
    parsed, miscounted = _read_csv_lines(header, readable)
    unread = [_unread_row(line, r) for line, r in zip(lines, reasons, strict=True) if r]
    bad = pd.DataFrame(miscounted + unread, columns=[PARSE_ERROR, RAW_TEXT]).astype("string")
    return pd.concat([parsed, bad], ignore_index=True)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _unreadable(line: bytes, utf8: bool, quoted: bool) -> str | None:
    """Why ``line`` cannot be read as one record (None: it can). ``utf8`` and ``quoted`` say
    whether the whole file is UTF-8 and holds a quote: most files spare their lines a check."""
    if len(line) > LARGEST_LINE:
        return f"longer than {LARGEST_LINE} bytes ({len(line)} bytes)"
    if not utf8:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as error:
            return f"not UTF-8: {error.reason} at byte {error.start}"
    if quoted and b'"' in line:
        try:
            next(csv.reader([line.decode("utf-8")], strict=True))
        except csv.Error as error:
            return f"unreadable CSV: {error}"
    return None


def _unread_row(line: bytes, reason: str) -> dict[str, str]:
    """A line that could not be read, as a row: why, and its text (non-UTF-8 bytes escaped; of
    a line longer than ``LARGEST_LINE``, the first ``LONG_LINE_KEPT`` bytes)."""
    if len(line) > LARGEST_LINE:
        line = line[:LONG_LINE_KEPT]
    return {PARSE_ERROR: reason, RAW_TEXT: line.decode("utf-8", "backslashreplace")}


def _read_csv_lines(header: bytes, lines: list[bytes]) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Readable UTF-8 lines under their header as a frame of strings, and the lines whose field
    count differs from the header's as rows naming why."""
    miscounted: list[dict[str, str]] = []

    def keep_invalid(row: pacsv.InvalidRow) -> str:
        reason = f"expected {row.expected_columns} fields, found {row.actual_columns}"
        miscounted.append({PARSE_ERROR: reason, RAW_TEXT: row.text})
        return "skip"

    names = next(csv.reader([header.decode("utf-8")]))
    text = b"\n".join([header, *lines, b""])
    table = pacsv.read_csv(
        io.BytesIO(text),
        # a record must fit in one block: every line does (see LARGEST_LINE)
        read_options=pacsv.ReadOptions(
            use_threads=False,
            column_names=names,
            skip_rows=1,
            block_size=min(len(text), LARGEST_LINE + 1),
        ),
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
    return parsed, miscounted


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
        self.judgements: list[Judgement] = []
        """What each plausibility rule did (``plausible``)."""
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
        """Apply a source's declared rules in order: unreadable lines, missing columns, values
        as landed (control characters, length, whitespace around an identifier), null tokens,
        integer ids, parsing of ``numbers`` and ``timestamps``, required values, ranges, clock
        times and codes. Returns the notes of the ``null`` ranges (``blanked:<column>``) and the
        flagged codes (``unreferenced:<column>``) with their counts."""
        self.corrupt_lines()
        self.missing_columns(self.values.columns)
        self.as_landed(source.max_length, dict.fromkeys([*source.key, *source.integer_ids]))
        self.null_tokens(source.nulls)
        self.integer_ids(source.integer_ids)
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

    def as_landed(self, max_length: int, identifiers: Iterable[str]) -> None:
        """Rules on the values as landed, none of them ever trimmed or read around: a control
        character (C0, DEL or C1: NUL, tab, ...) rejects the row as ``control_character:<c>``,
        a value longer than ``max_length`` characters as ``too_long:<c>``, whitespace before or
        after an identifier (``" 8"`` and ``"8"`` may be different ids) as ``whitespace:<c>``.
        """
        columns, identifiers = list(self.values.columns), list(identifiers)
        # a first look at every value at once (most files break none of these): joined by NUL,
        # a value with whitespace at one end has it next to a NUL or at an end of the text
        texts = self.values.to_numpy(dtype=object, na_value="")
        every = texts.ravel().tolist()
        if CONTROL.search("".join(every)):
            for column in columns:
                hit = self.values[column].str.contains(CONTROL, na=False)
                self.reject(hit, f"control_character:{column}")
        if max(map(len, every), default=0) > max_length:
            for column in columns:
                self.reject(self.values[column].str.len() > max_length, f"too_long:{column}")
        keys = texts[:, [columns.index(c) for c in identifiers]]
        if PADDED.search("\x00".join(keys.ravel().tolist())):
            for column in identifiers:
                text = self.values[column]
                self.reject(text.notna() & (text != text.str.strip()), f"whitespace:{column}")

    def integer_ids(self, columns: Iterable[str]) -> None:
        """Write whole-number ids canonically, as their digits: ``8`` whether the export wrote
        ``8``, ``+8``, ``08`` or ``8.0`` (an integer column stored as floating point); any other
        form (``8.5``, ``8e0``, ``x8``) rejects the row as ``malformed_id:<column>``. Read as
        text, never as a float, so a long id keeps every digit."""
        for column in columns:
            text = self.values[column]
            parts = text.str.extract(INTEGER_ID)
            self.reject(text.notna() & parts["digits"].isna(), f"malformed_id:{column}")
            digits = parts["digits"].str.lstrip("0").replace("", "0")
            negative = (parts["sign"] == "-") & (digits != "0")
            canonical = digits.mask(negative, "-" + digits).astype("string")
            self.values = self.values.assign(**{column: canonical})

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
                # codes repeat: match each distinct value once (a set: pandas' unique() takes
                # "AA\x00" and "AA" for one value)
                form = re.compile(rule.pattern)
                well_formed = [v for v in set(text[self.alive].dropna()) if form.fullmatch(v)]
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

    def plausible(self, rules: PlausibilityRules, history: Accepted = NO_HISTORY) -> dict[str, int]:
        """Apply the declared plausibility rules (``ml_assets.data.plausibility``) to the rows
        still alive, judged against ``history``: a rule whose action is ``reject`` rejects the
        rows it hits as ``inconsistent:<column>`` or ``group_shift:<column>``; one whose action
        is ``flag`` keeps them and sets the clean column ``inconsistent_<column>`` or
        ``group_shift_<column>``. Returns the flagged rows per rule (``flagged:<rule>``); what
        each rule did is in ``judgements``."""
        alive = self.alive
        flagged = {}
        for column, rule in rules.consistent_by.items():
            keys = self.values.loc[alive, rule.key]
            name = inconsistent(column)
            hit, judgement = judge_consistent(
                name, keys, self._number(column)[alive], rule, history
            )
            flagged |= self._apply(name, rule.action, hit.reindex(alive.index, fill_value=False))
            self.judgements.append(judgement)
        for column, shift in rules.group_shift.items():
            alive = self.alive
            name = group_shift(column)
            groups = self.values.loc[alive, shift.by]
            hit, judgement = judge_groups(name, groups, self._number(column)[alive], shift, history)
            flagged |= self._apply(name, shift.action, hit.reindex(alive.index, fill_value=False))
            self.judgements.append(judgement)
        return flagged

    def _number(self, column: str) -> pd.Series:
        if column not in self.parsed or not pd.api.types.is_float_dtype(self.parsed[column]):
            raise ValueError(f"plausibility rule of {column}: not a column parsed as a number")
        return self.parsed[column]

    def _apply(self, rule: str, action: str, hit: pd.Series) -> dict[str, int]:
        if action == "reject":
            self.reject(hit, rule)
            return {}
        self.flags[flag_column(rule)] = hit.astype(bool)
        return {f"flagged:{rule}": int((hit & self.alive).sum())}

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
