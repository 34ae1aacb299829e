"""Pandera schemas every pipeline's raw and rejected tables share in shape."""

from collections.abc import Mapping, Sequence

import pandera.pandas as pa

from ml_assets.contract.declaration import RangeRule, Source
from ml_assets.data.cleaning import PARSE_ERROR, RAW_TEXT, REJECTION_RULE
from ml_assets.data.plausibility import flag_column, group_shift, inconsistent

LINE_DESCRIPTIONS = {
    PARSE_ERROR: "Why the line (or file) could not be read; empty for lines that were read.",
    RAW_TEXT: "The text of a line that could not be parsed.",
}


def raw_schema(name: str, descriptions: Mapping[str, str]) -> pa.DataFrameSchema:
    """A landed file as text: every declared column present, one row per line of the file."""
    columns = {
        column: pa.Column("string", nullable=True, description=text)
        for column, text in {**descriptions, **LINE_DESCRIPTIONS}.items()
    }
    return pa.DataFrameSchema(columns, name=name, strict=False)


def rejected_schema(name: str, descriptions: Mapping[str, str]) -> pa.DataFrameSchema:
    """Rows a cleaning rule rejected: the values as landed and the rule that rejected them."""
    columns = {
        c: pa.Column("string", nullable=True, description=t) for c, t in descriptions.items()
    }
    columns[RAW_TEXT] = pa.Column("string", nullable=True, description=LINE_DESCRIPTIONS[RAW_TEXT])
    columns[REJECTION_RULE] = pa.Column(
        "string",
        nullable=False,
        description="The rule that rejected the row, e.g. duplicate or out_of_range:<column>.",
    )
    return pa.DataFrameSchema(columns, name=name, strict=True)


def range_checks(column: str, ranges: Mapping[str, RangeRule]) -> Sequence[pa.Check]:
    """The declared range of ``column`` as a Pandera check (none if it has no range)."""
    rule = ranges.get(column)
    return [pa.Check.in_range(rule.low, rule.high)] if rule else []


def flag_columns(source: Source) -> dict[str, pa.Column]:
    """The clean table's flags of kept rows: ``<column>_known`` for each code column whose
    codes the reference table may lack without the row being rejected; ``inconsistent_<column>``
    and ``group_shift_<column>`` for each plausibility rule that flags instead of rejecting."""
    known = {
        f"{column}_known": pa.Column(
            bool, description=f"The {column} code is listed in {rule.reference} (flagged, kept)."
        )
        for column, rule in source.codes.items()
        if rule.reference is not None and rule.unreferenced == "flag"
    }
    consistent = {
        flag_column(inconsistent(column)): pa.Column(
            bool,
            description=f"The {column} disagrees with its {'/'.join(rule.key)}'s (flagged, kept).",
        )
        for column, rule in source.consistent_by.items()
        if rule.action == "flag"
    }
    shifted = {
        flag_column(group_shift(column)): pa.Column(
            bool,
            description=f"The {shift.by}'s median {column} shifted (flagged, kept).",
        )
        for column, shift in source.group_shift.items()
        if shift.action == "flag"
    }
    return known | consistent | shifted
