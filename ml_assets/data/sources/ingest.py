"""What the assets of every source kind share: their definition arguments and the checks of
what landed (the schema check of a raw partition or a reference table)."""

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from ml_assets.contract.dagster_terms import asset_key
from ml_assets.contract.declaration import PipelineDeclaration, Source
from ml_assets.data.checks import CheckOutcome, SchemaCheck, report_per_partition, schema_outcome
from ml_assets.data.data_layers import INGEST, group, partition_check
from ml_assets.data.metadata import table_definition_metadata

LANDED_FILE_SCHEMA = "landed_file_schema"


def ingest_args(
    declaration: PipelineDeclaration,
    name: str,
    source: Source,
    schema: pa.DataFrameSchema,
    kinds: set[str],
) -> dict:
    """What every asset reading a source declares (``kinds``: what it reads)."""
    return {
        "name": name,
        "key_prefix": declaration.prefix,
        "group_name": group(declaration, INGEST),
        "code_version": "1",
        "kinds": {*kinds, "parquet"},
        "owners": declaration.owners,
        "description": source.description,
        "metadata": table_definition_metadata(schema),
    }


def min_rows_outcome(outcome: CheckOutcome, rows: int, min_rows: int) -> CheckOutcome:
    """``outcome`` of a landed file's schema, failed as well when it has fewer than
    ``min_rows`` rows."""
    if rows >= min_rows:
        return outcome
    few = f"{rows} rows, fewer than the source's min_rows of {min_rows}"
    return CheckOutcome(
        passed=False,
        description=few if outcome.passed else f"{few}; {outcome.description}",
        metadata={**outcome.metadata, "rows": rows, "min_rows": min_rows},
    )


ROWS_IN_RAW = "source/rows_in_raw"


def landed_rows_check(
    declaration: PipelineDeclaration, name: str, source: Source
) -> dg.AssetCheckSpec:
    """The blocking schema check of the raw partitions a source read (not a file) gives."""
    return partition_check(
        declaration,
        name,
        LANDED_FILE_SCHEMA,
        "The rows have every declared column"
        + (f" and are at least {source.min_rows}." if source.min_rows else "."),
    )


def report_landed_rows(
    context: dg.AssetExecutionContext,
    key: dg.AssetKey,
    landed_schema: SchemaCheck,
    reads: Mapping[str, Mapping[str, Any]],
    min_rows: int,
) -> Iterator:
    """The ``landed_rows_check`` of each partition of the run, and, when it wrote several,
    each partition's own figures (``reads``, with its ``ROWS_IN_RAW``) as an observation beside
    the run's totals."""
    outcomes = {
        k: min_rows_outcome(outcome, reads[k][ROWS_IN_RAW], min_rows)
        for k, outcome in landed_schema.outcomes().items()
    }
    yield from report_per_partition(context, key, LANDED_FILE_SCHEMA, outcomes)
    if len(reads) > 1:
        for partition_key, figures in reads.items():
            yield dg.AssetObservation(key, partition=partition_key, metadata=dict(figures))


def reference_check(
    declaration: PipelineDeclaration, name: str, schema: pa.DataFrameSchema
) -> dg.AssetCheckSpec:
    """The blocking schema check of the reference table ``name``."""
    return dg.AssetCheckSpec(
        LANDED_FILE_SCHEMA,
        asset=asset_key(declaration, name),
        blocking=True,
        description=schema.name,
    )


def reference_check_result(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> dg.AssetCheckResult:
    """The result of ``reference_check`` on the reference table ``frame``."""
    outcome = schema_outcome(schema, frame)
    return dg.AssetCheckResult(
        check_name=LANDED_FILE_SCHEMA,
        passed=outcome.passed,
        description=outcome.description,
        metadata=outcome.metadata,
    )
