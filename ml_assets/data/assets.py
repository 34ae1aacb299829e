"""Generic data-layer assets of a pipeline: landed files → raw → clean (+ rejected).

Built from a pipeline's declaration (key prefix, partitions, sources) and its Pandera schemas.
Partitioned assets handle every partition key of their run (one partition, or a year in a
single-run backfill) and exchange ``dict[partition_key, DataFrame]`` with the IO manager.
"""

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from ml_assets.automation import refresh_stale_partitions
from ml_assets.contract.declaration import PipelineDeclaration, Source
from ml_assets.data.checks import (
    CheckOutcome,
    report_per_partition,
    row_conservation_outcome,
    schema_outcome,
    schema_outcomes,
)
from ml_assets.data.cleaning import PARSE_ERROR, REJECTION_RULE, Cleaned, parse_landed
from ml_assets.data.metadata import table_definition_metadata
from resources.landing_zone import LandingZone

INGEST, CLEAN, FEATURES = "ingest", "clean", "features"

LANDED_FILE_SCHEMA = "landed_file_schema"
LINES_PARSE = "lines_parse"
CLEAN_SCHEMA = "clean_schema"
ROWS_CONSERVED = "rows_conserved"
FEATURE_SCHEMA = "feature_schema"


def group(declaration: PipelineDeclaration, layer: str) -> str:
    """The asset group of ``layer`` in ``declaration``'s pipeline (``<prefix>_<layer>``)."""
    return f"{declaration.prefix}_{layer}"


def partitioned(declaration: PipelineDeclaration) -> dict:
    """What every partitioned asset of the pipeline declares: its partitions, single-run
    backfills."""
    return {
        "partitions_def": declaration.partitions.definition(),
        "backfill_policy": dg.BackfillPolicy.single_run(),
    }


def partition_check(
    declaration: PipelineDeclaration,
    asset: str,
    name: str,
    description: str,
    blocking: bool = True,
) -> dg.AssetCheckSpec:
    """A check of ``asset`` evaluated per partition."""
    return dg.AssetCheckSpec(
        name,
        asset=declaration.key(asset),
        description=description,
        blocking=blocking,
        partitions_def=declaration.partitions.definition(),
    )


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


def _landed(
    declaration: PipelineDeclaration, name: str, source: Source, schema: pa.DataFrameSchema
) -> dict:
    """What every asset reading the landing zone declares."""
    return {
        "name": name,
        "key_prefix": declaration.prefix,
        "group_name": group(declaration, INGEST),
        "code_version": "1",
        "kinds": {source.format, "parquet"},
        "owners": declaration.owners,
        "description": source.description,
        "metadata": table_definition_metadata(schema),
    }


def raw_asset(
    declaration: PipelineDeclaration, source: Source, schema: pa.DataFrameSchema
) -> dg.AssetsDefinition:
    """``raw_<source>``: each partition's export as landed, every line, every value as text."""
    name = f"raw_{source.name}"
    key = declaration.key(name)

    @dg.asset(
        **_landed(declaration, name, source, schema),
        check_specs=[
            partition_check(
                declaration, name, LANDED_FILE_SCHEMA, "The file has every declared column."
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
        frames = {
            k: parse_landed(landing_zone.read_bytes(source.name, k, ext), source.format)
            for k in context.partition_keys
        }
        yield dg.Output(
            frames,
            metadata={"landed_file": landing_zone.uri(source.name, context.partition_keys[0], ext)}
            if len(frames) == 1
            else {},
        )
        yield from report_per_partition(
            context, key, LANDED_FILE_SCHEMA, schema_outcomes(schema, frames)
        )
        yield from report_per_partition(
            context, key, LINES_PARSE, {k: _lines_outcome(f) for k, f in frames.items()}
        )

    return raw


def reference_asset(
    declaration: PipelineDeclaration, source: Source, schema: pa.DataFrameSchema
) -> dg.AssetsDefinition:
    """``<source>``: a reference table landed whole, typed by pandas, checked against ``schema``."""
    name = source.name

    @dg.asset(
        **_landed(declaration, name, source, schema),
        check_specs=[
            dg.AssetCheckSpec(
                LANDED_FILE_SCHEMA,
                asset=declaration.key(name),
                blocking=True,
                description=schema.name,
            )
        ],
    )
    def reference(landing_zone: LandingZone) -> Iterator:
        ext = source.extension
        if not landing_zone.exists(name, name, ext):
            raise dg.Failure(f"{landing_zone.uri(name, name, ext)} has not landed; publish it.")
        data = landing_zone.read_bytes(name, name, ext)
        frame = parse_landed(data, source.format, typed=True)
        yield dg.Output(frame)
        outcome = schema_outcome(schema, frame)
        yield dg.AssetCheckResult(
            check_name=LANDED_FILE_SCHEMA,
            passed=outcome.passed,
            description=outcome.description,
            metadata=outcome.metadata,
        )

    return reference


def landed_assets(
    declaration: PipelineDeclaration, schemas: dict[str, pa.DataFrameSchema]
) -> list[dg.AssetsDefinition]:
    """The raw asset of every partitioned source and the table of every unpartitioned one;
    ``schemas`` gives each source's schema by source name."""
    return [
        (raw_asset if source.partitioned else reference_asset)(
            declaration, source, schemas[source.name]
        )
        for source in declaration.sources
    ]


def clean_assets(
    declaration: PipelineDeclaration,
    source: str,
    clean: Callable[[pd.DataFrame, date], Cleaned],
    clean_schema: pa.DataFrameSchema,
    rejected_schema: pa.DataFrameSchema,
    description: str,
) -> dg.AssetsDefinition:
    """``<source>_clean`` and ``<source>_rejected``: every raw row ends up in exactly one.

    ``clean`` triages one partition's raw rows (its key parsed as the partition's first day).
    """
    raw_key, clean_key = declaration.key(f"raw_{source}"), declaration.key(f"{source}_clean")
    common = {
        "group_name": group(declaration, CLEAN),
        "code_version": "1",
        "kinds": {"pandas", "parquet"},
        "owners": declaration.owners,
        "automation_condition": refresh_stale_partitions(),
    }

    @dg.multi_asset(
        name=f"clean_{source}",
        outs={
            "clean": dg.AssetOut(
                key=clean_key,
                description=description,
                metadata=table_definition_metadata(clean_schema),
                **common,
            ),
            "rejected": dg.AssetOut(
                key=declaration.key(f"{source}_rejected"),
                description=f"Raw {source} rows that a cleaning rule rejected, with the rule.",
                metadata=table_definition_metadata(rejected_schema),
                **common,
            ),
        },
        ins={"raw": dg.AssetIn(raw_key)},
        check_specs=[
            partition_check(
                declaration, f"{source}_clean", CLEAN_SCHEMA, f"Conforms to {clean_schema.name}."
            ),
            partition_check(
                declaration,
                f"{source}_clean",
                ROWS_CONSERVED,
                "raw rows = clean rows + rejected rows",
            ),
        ],
        **partitioned(declaration),
    )
    def clean_partitions(
        context: dg.AssetExecutionContext, raw: dict[str, pd.DataFrame]
    ) -> Iterator:
        results = {k: clean(raw[k], date.fromisoformat(k)) for k in context.partition_keys}
        rules = Counter(
            rule for r in results.values() for rule in r.rejected[REJECTION_RULE].tolist()
        )
        notes: Counter[str] = Counter()
        for result in results.values():
            notes.update(result.notes)
        yield dg.Output(
            {k: r.clean for k, r in results.items()},
            output_name="clean",
            metadata={f"rule/{name}": int(n) for name, n in notes.items()},
        )
        yield dg.Output(
            {k: r.rejected for k, r in results.items()},
            output_name="rejected",
            metadata={"rejections_by_rule": dict(rules)},
        )
        yield from report_per_partition(
            context,
            clean_key,
            CLEAN_SCHEMA,
            schema_outcomes(clean_schema, {k: r.clean for k, r in results.items()}),
        )
        yield from report_per_partition(
            context,
            clean_key,
            ROWS_CONSERVED,
            {
                k: row_conservation_outcome(len(raw[k]), r.kept_raw_rows, len(r.rejected))
                for k, r in results.items()
            },
        )

    return clean_partitions


def features_asset(
    declaration: PipelineDeclaration,
    upstream: str,
    features: Callable[[pd.DataFrame], pd.DataFrame],
    schema: pa.DataFrameSchema,
    description: str,
    code_version: str = "1",
) -> dg.AssetsDefinition:
    """The model's feature rows of each partition, computed from the same partition of
    ``upstream`` alone (``features`` maps one partition's rows to its feature rows), with a
    blocking schema check per partition. A pipeline whose features need history or lookups
    writes its own asset."""
    name = declaration.model.features_asset

    @dg.asset(
        name=name,
        key_prefix=declaration.prefix,
        group_name=group(declaration, FEATURES),
        code_version=code_version,
        kinds={"pandas", "parquet"},
        owners=declaration.owners,
        description=description,
        metadata=table_definition_metadata(schema),
        ins={upstream: dg.AssetIn(declaration.key(upstream))},
        check_specs=[
            partition_check(declaration, name, FEATURE_SCHEMA, f"Conforms to {schema.name}.")
        ],
        automation_condition=refresh_stale_partitions(),
        **partitioned(declaration),
    )
    def feature_rows(context: dg.AssetExecutionContext, **inputs: dict[str, pd.DataFrame]):
        rows = inputs[upstream]
        frames = {key: features(rows[key]) for key in context.partition_keys}
        yield dg.Output(frames)
        yield from report_per_partition(
            context, context.asset_key, FEATURE_SCHEMA, schema_outcomes(schema, frames)
        )

    return feature_rows
