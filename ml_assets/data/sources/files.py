"""The ``files`` kind: exports an upstream system lands in the landing zone (a local folder,
S3 or any fsspec URL), found by the landing-zone sensor (``sensors/landing_zone.py``)."""

from collections.abc import Iterator

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from ml_assets.contract.dagster_terms import asset_key
from ml_assets.contract.declaration import FilesSource, PipelineDeclaration
from ml_assets.data.checks import CheckOutcome, SchemaCheck, report_per_partition
from ml_assets.data.cleaning import PARSE_ERROR, RAW_TEXT, parse_landed
from ml_assets.data.data_layers import partition_check, partitioned
from ml_assets.data.sources.ingest import (
    LANDED_FILE_SCHEMA,
    ingest_args,
    min_rows_outcome,
    reference_check,
    reference_check_result,
)
from resources.landing_zone import LandingZone
from resources.partition_frames import PartitionStream

LINES_PARSE = "lines_parse"


def asset(
    declaration: PipelineDeclaration, source: FilesSource, schema: pa.DataFrameSchema
) -> dg.AssetsDefinition:
    """``raw_<source>`` (one landed file per partition) or the reference table ``<source>``."""
    return (_raw_asset if source.partitioned else _reference_asset)(declaration, source, schema)


def _lines_outcome(frame: pd.DataFrame) -> CheckOutcome:
    corrupt = frame[frame[PARSE_ERROR].notna()] if PARSE_ERROR in frame else frame.iloc[:0]
    return CheckOutcome(
        passed=corrupt.empty,
        description=f"{len(corrupt)} of {len(frame)} lines could not be parsed",
        metadata={
            "corrupt_lines": len(corrupt),
            "sample_corrupt_lines": dg.MetadataValue.md(
                corrupt.head(5).to_markdown(index=False) if len(corrupt) else "(none)"
            ),
        },
        severity=dg.AssetCheckSeverity.WARN,
    )


def _raw_asset(
    declaration: PipelineDeclaration, source: FilesSource, schema: pa.DataFrameSchema
) -> dg.AssetsDefinition:
    """``raw_<source>``: each partition's export as landed, every line, every value as text."""
    name = f"raw_{source.name}"
    key = asset_key(declaration, name)

    @dg.asset(
        **ingest_args(declaration, name, source, schema, {source.format}),
        check_specs=[
            partition_check(
                declaration,
                name,
                LANDED_FILE_SCHEMA,
                "The file has every declared column"
                + (f" and at least {source.min_rows} rows." if source.min_rows else "."),
            ),
            partition_check(
                declaration,
                name,
                LINES_PARSE,
                "Every line splits into the header's fields.",
                blocking=False,
            ),
        ],
        **partitioned(declaration),
    )
    def raw(context: dg.AssetExecutionContext, landing_zone: LandingZone) -> Iterator:
        ext = source.extension
        missing = [
            k for k in context.partition_keys if not landing_zone.exists(source.name, k, ext)
        ]
        if missing:
            raise dg.Failure(
                f"No {source.name} file has landed for {', '.join(missing[:10])}"
                f"{' …' if len(missing) > 10 else ''} (expected at "
                f"{landing_zone.uri(source.name, missing[0], ext)}). Publish them, then re-run.",
                metadata={"missing_partitions": len(missing)},
            )
        landed_schema = SchemaCheck(schema)
        lines: dict[str, CheckOutcome] = {}
        rows: dict[str, int] = {}

        def parsed(partition_key: str) -> pd.DataFrame:
            frame = parse_landed(
                landing_zone.read_bytes(source.name, partition_key, ext), source.format
            )
            if frame.empty and frame.columns.isin([PARSE_ERROR, RAW_TEXT]).all():
                # an empty file is an export of no rows, like a header without any
                frame = frame.reindex(columns=[*source.columns, *frame.columns]).astype("string")
            landed_schema.add(partition_key, frame)
            lines[partition_key] = _lines_outcome(frame)
            rows[partition_key] = len(frame)
            return frame

        keys = context.partition_keys
        yield dg.Output(
            PartitionStream(keys, parsed),
            metadata={"landed_file": landing_zone.uri(source.name, keys[0], ext)}
            if len(keys) == 1
            else {},
        )
        landed = {
            partition_key: min_rows_outcome(outcome, rows[partition_key], source.min_rows)
            for partition_key, outcome in landed_schema.outcomes().items()
        }
        yield from report_per_partition(context, key, LANDED_FILE_SCHEMA, landed)
        yield from report_per_partition(context, key, LINES_PARSE, lines)

    return raw


def _reference_asset(
    declaration: PipelineDeclaration, source: FilesSource, schema: pa.DataFrameSchema
) -> dg.AssetsDefinition:
    """``<source>``: a reference table landed whole, typed by pandas, checked against ``schema``."""
    name = source.name

    @dg.asset(
        **ingest_args(declaration, name, source, schema, {source.format}),
        check_specs=[reference_check(declaration, name, schema)],
    )
    def reference(landing_zone: LandingZone) -> Iterator:
        ext = source.extension
        if not landing_zone.exists(name, name, ext):
            raise dg.Failure(f"{landing_zone.uri(name, name, ext)} has not landed; publish it.")
        data = landing_zone.read_bytes(name, name, ext)
        frame = parse_landed(data, source.format, typed=True)
        yield dg.Output(frame)
        yield reference_check_result(schema, frame)

    return reference
