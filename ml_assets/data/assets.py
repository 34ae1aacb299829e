"""Generic data-layer assets of a pipeline: landed files → raw → clean (+ rejected).

Built from a pipeline's declaration (key prefix, partitions, sources) and its Pandera schemas.
Partitioned assets handle every partition key of their run (one partition, or a year in a
single-run backfill) one partition at a time: they read a range input as a lazy mapping
(``PartitionFrames``) and return a ``PartitionStream`` that produces each partition while the
IO manager writes it, checking it on the way; the check evaluations, one per partition, follow
the output. Memory does not grow with the range.
"""

import inspect
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import date

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from ml_assets.automation import refresh_stale_partitions
from ml_assets.contract.dagster_terms import asset_key, partitions_definition
from ml_assets.contract.declaration import FilesSource, PipelineDeclaration, Source
from ml_assets.data.checks import (
    CheckOutcome,
    SchemaCheck,
    plausibility_metadata,
    plausibility_summary,
    rejected_share_outcome,
    report_per_partition,
    row_conservation_outcome,
    schema_outcome,
    whole_file_outcome,
)
from ml_assets.data.cleaning import PARSE_ERROR, RAW_TEXT, REJECTION_RULE, Cleaned, parse_landed
from ml_assets.data.metadata import code_reference, table_definition_metadata
from ml_assets.data.online_history import snapshot_tables
from ml_assets.data.plausibility import AcceptedHistory, Judgement, stats_columns
from ml_assets.data.time_features import with_time_features
from resources.landing_zone import LandingZone
from resources.partition_frames import FrameSpill, PartitionStream
from resources.table_snapshot_store import TableSnapshotStore

INGEST, CLEAN, FEATURES = "ingest", "clean", "features"

LANDED_FILE_SCHEMA = "landed_file_schema"
LINES_PARSE = "lines_parse"
CLEAN_SCHEMA = "clean_schema"
ROWS_CONSERVED = "rows_conserved"
REJECTED_SHARE = "rejected_share"
EXPORT_SCHEMA = "export_schema"
FEATURE_SCHEMA = "feature_schema"


def group(declaration: PipelineDeclaration, layer: str) -> str:
    """The asset group of ``layer`` in ``declaration``'s pipeline (``<prefix>_<layer>``)."""
    return f"{declaration.prefix}_{layer}"


def partitioned(declaration: PipelineDeclaration) -> dict:
    """What every partitioned asset of the pipeline declares: its partitions, single-run
    backfills."""
    return {
        "partitions_def": partitions_definition(declaration.partitions),
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
        asset=asset_key(declaration, asset),
        description=description,
        blocking=blocking,
        partitions_def=partitions_definition(declaration.partitions),
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


def raw_asset(
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


def reference_check(declaration: PipelineDeclaration, name: str, schema: pa.DataFrameSchema):
    """The blocking schema check of the reference table ``name``."""
    return dg.AssetCheckSpec(
        LANDED_FILE_SCHEMA,
        asset=asset_key(declaration, name),
        blocking=True,
        description=schema.name,
    )


def reference_check_result(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> dg.AssetCheckResult:
    outcome = schema_outcome(schema, frame)
    return dg.AssetCheckResult(
        check_name=LANDED_FILE_SCHEMA,
        passed=outcome.passed,
        description=outcome.description,
        metadata=outcome.metadata,
    )


def reference_asset(
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


def landed_assets(
    declaration: PipelineDeclaration, schemas: dict[str, pa.DataFrameSchema]
) -> list[dg.AssetsDefinition]:
    """The raw asset of every partitioned source and the table of every unpartitioned one, each
    built by its kind's module (``ml_assets.data.sources``); ``schemas`` gives each source's
    schema by source name."""
    from ml_assets.data.sources import ingest_asset

    return [
        ingest_asset(declaration, source, schemas[source.name]) for source in declaration.sources
    ]


def clean_assets(
    declaration: PipelineDeclaration,
    source: str,
    clean: Callable[..., Cleaned],
    clean_schema: pa.DataFrameSchema,
    rejected_schema: pa.DataFrameSchema,
    description: str,
) -> dg.AssetsDefinition:
    """``<source>_clean`` and ``<source>_rejected``: every raw row ends up in exactly one.

    ``clean(raw, day, references, history)`` triages one partition's raw rows (its key parsed
    as the partition's first day), given the reference tables the source's code rules name, by
    table name, and the accepted history its plausibility rules judge it against
    (``ml_assets.data.plausibility.Accepted``).

    The accepted history is the source's own earlier clean partitions, within the window its
    rules declare, that passed their blocking checks: those stored before the run (read
    through the IO manager, their check results from the instance) and those the run has
    just produced, in order, so a single-run backfill judges each partition as landing them
    one by one would. It is read, not depended on: a rewritten partition does not re-clean the
    partitions after it (a self-dependency would chain a correction through every later
    partition and hold each partition's automation until the one before exists); acceptance
    is judged against the history as it stands when a partition is cleaned, and each
    partition's report names the partitions it was judged against.
    """
    try:
        inspect.signature(clean).bind("raw", "day", "references", "history")
    except TypeError as error:
        raise TypeError(
            f"{declaration.name}: the clean function of {source!r} ({clean.__qualname__}) must "
            f"take (raw, day, references, history): {error}"
        ) from None
    raw_key, clean_key = (
        asset_key(declaration, f"raw_{source}"),
        asset_key(declaration, f"{source}_clean"),
    )
    declared = declaration.source(source)
    references = sorted({r.reference_table for r in declared.codes.values() if r.reference_table})
    bar, whole_file = declared.max_rejected_share, declared.whole_file
    window = declared.history_partitions
    rejected_key = asset_key(declaration, f"{source}_rejected")
    common = {
        "group_name": group(declaration, CLEAN),
        "code_version": "2",
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
                metadata={**table_definition_metadata(clean_schema), **code_reference(clean)},
                **common,
            ),
            "rejected": dg.AssetOut(
                key=rejected_key,
                description=f"Raw {source} rows that a cleaning rule rejected, with the rule.",
                metadata={**table_definition_metadata(rejected_schema), **code_reference(clean)},
                **common,
            ),
        },
        ins={
            "raw": dg.AssetIn(raw_key),
            **{table: dg.AssetIn(asset_key(declaration, table)) for table in references},
        },
        required_resource_keys={"io_manager"} if window else None,
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
            partition_check(
                declaration,
                f"{source}_clean",
                EXPORT_SCHEMA,
                f"No rule rejects {whole_file.share:.0%} or more of the raw rows of a partition "
                f"of at least {whole_file.min_rows} rows: that is a changed export (a column's "
                "type, format or units), not bad rows.",
            ),
            partition_check(
                declaration,
                f"{source}_clean",
                REJECTED_SHARE,
                f"At most {bar:.1%} of the raw rows rejected (warns).",
                blocking=False,
            ),
        ],
        **partitioned(declaration),
    )
    def clean_partitions(
        context: dg.AssetExecutionContext, raw: Mapping[str, pd.DataFrame], **tables: pd.DataFrame
    ) -> Iterator:
        keys = context.partition_keys
        rules: Counter[str] = Counter()
        notes: Counter[str] = Counter()
        schema_check = SchemaCheck(clean_schema)
        conserved: dict[str, CheckOutcome] = {}
        exports: dict[str, CheckOutcome] = {}
        share: dict[str, CheckOutcome] = {}
        judged: dict[str, tuple[Judgement, ...]] = {}
        history = _accepted_history(context, declaration, declared, clean_key, window)
        with FrameSpill(prefix=f"{source}_rejected_") as rejected:

            def cleaned(partition_key: str) -> pd.DataFrame:
                rows = raw[partition_key]
                earlier = declaration.partitions.previous_keys(partition_key, window)
                accepted = history.before(earlier)
                result = clean(rows, date.fromisoformat(partition_key), tables, accepted)
                judged[partition_key] = tuple(
                    j._replace(basis=f"{j.basis} ({_span(accepted.partitions)})")
                    for j in result.plausibility
                )
                why = result.rejected[REJECTION_RULE]
                rules.update(why.tolist())
                notes.update(result.notes)
                schema_check.add(partition_key, result.clean)
                conserved[partition_key] = row_conservation_outcome(
                    len(rows), result.kept_raw_rows, len(result.rejected)
                )
                exports[partition_key] = whole_file_outcome(
                    len(rows), why, whole_file.share, whole_file.min_rows
                )
                share[partition_key] = rejected_share_outcome(len(rows), why, bar)
                rejected.write(partition_key, result.rejected)
                passed = exports[partition_key].passed and conserved[partition_key].passed
                history.add(partition_key, result.clean if passed else None)
                return result.clean

            # One pass: the clean rows are written as each partition is cleaned, its rejected
            # rows set aside on disk, then written as the second output.
            yield dg.Output(
                PartitionStream(
                    keys,
                    cleaned,
                    metadata=lambda: {
                        **{f"rule/{name}": int(n) for name, n in notes.items()},
                        **plausibility_summary(judged),
                    },
                ),
                output_name="clean",
            )
            yield dg.Output(
                rejected.frames(),
                output_name="rejected",
                metadata={"rejections_by_rule": dict(rules)},
            )
        yield from report_per_partition(context, clean_key, CLEAN_SCHEMA, schema_check.outcomes())
        yield from report_per_partition(context, clean_key, ROWS_CONSERVED, conserved)
        yield from report_per_partition(context, clean_key, EXPORT_SCHEMA, exports)
        yield from report_per_partition(context, clean_key, REJECTED_SHARE, share)
        for partition_key, outcome in sorted(share.items()):  # plotted over partitions
            numbers = {k: v for k, v in outcome.metadata.items() if k != "bar"}
            largest = exports[partition_key].metadata["largest_rule_share"]
            yield dg.AssetObservation(
                rejected_key,
                partition=partition_key,
                metadata={
                    **numbers,
                    **plausibility_metadata(judged[partition_key]),
                    "largest_rule_share": largest,
                },
            )

    return clean_partitions


def _accepted_history(
    context: dg.AssetExecutionContext,
    declaration: PipelineDeclaration,
    source: Source,
    clean_key: dg.AssetKey,
    window: int,
) -> AcceptedHistory:
    """The accepted history of a run of ``source``'s clean asset: empty without a declared
    window; else the stored partitions of the window before the run's first partition whose
    blocking checks passed on their latest materialization (then the run adds its own)."""
    if not window:
        return AcceptedHistory(source, lambda key: None)
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus,
    )

    earlier = declaration.partitions.previous_keys(context.partition_keys[0], window)
    blocking = [
        spec.key
        for spec in context.assets_def.check_specs
        if spec.blocking and spec.asset_key == clean_key
    ]
    infos = context.instance.event_log_storage.get_asset_check_partition_info(
        blocking, partition_keys=earlier
    )
    passed: Counter[str] = Counter(
        str(info.partition_key)
        for info in infos
        if info.is_current
        and info.latest_execution_status == AssetCheckExecutionRecordStatus.SUCCEEDED
    )
    accepted = {key for key in earlier if passed[key] == len(blocking)}
    io_manager = context.resources.io_manager
    columns = stats_columns(source)

    def load(key: str) -> pd.DataFrame | None:
        return io_manager.read_stored(clean_key, key, columns) if key in accepted else None

    return AcceptedHistory(source, load)


def _span(keys: tuple[str, ...]) -> str:
    if not keys:
        return "no accepted history"
    return f"history {keys[0]}…{keys[-1]}, {len(keys)} partitions"


def history_mapping(partitions: int) -> dg.TimeWindowPartitionMapping:
    """An input read with the ``partitions`` partitions before each partition."""
    return dg.TimeWindowPartitionMapping(
        start_offset=-partitions, end_offset=0, allow_nonexistent_upstream_partitions=True
    )


def features_asset(
    declaration: PipelineDeclaration,
    upstream: str,
    features: Callable[..., pd.DataFrame],
    schema: pa.DataFrameSchema,
    description: str,
    code_version: str = "1",
) -> dg.AssetsDefinition:
    """The model's feature rows of each partition, computed from ``upstream``, with a blocking
    schema check per partition.

    The declared time features (``features:`` in the declaration) are added to a partition's
    rows first, computed over the declared history of ``upstream`` and the partition; then
    ``features(rows)`` maps them to feature rows (row by row: code the service can run too),
    or ``features(rows, history)`` when it takes the history as well (the earlier partitions'
    rows, oldest first). Only the window a partition reads is in memory. A pipeline whose
    features need other lookups writes its own asset.
    """
    name = declaration.model.features_asset
    declared = declaration.features
    if declared.input not in (None, upstream):
        raise ValueError(f"features.input is {declared.input!r}, the asset reads {upstream!r}")
    reach = declared.history_partitions(upstream, declaration.partitions.kind)
    mapping = history_mapping(reach) if upstream in declared.history else None
    takes_history = len(inspect.signature(features).parameters) > 1

    @dg.asset(
        name=name,
        key_prefix=declaration.prefix,
        group_name=group(declaration, FEATURES),
        code_version=code_version,
        kinds={"pandas", "parquet"},
        owners=declaration.owners,
        description=description,
        metadata={**table_definition_metadata(schema), **code_reference(features)},
        ins={upstream: dg.AssetIn(asset_key(declaration, upstream), partition_mapping=mapping)},
        check_specs=[
            partition_check(declaration, name, FEATURE_SCHEMA, f"Conforms to {schema.name}.")
        ],
        automation_condition=refresh_stale_partitions(),
        **partitioned(declaration),
    )
    def feature_rows(context: dg.AssetExecutionContext, **inputs: Mapping[str, pd.DataFrame]):
        rows = inputs[upstream]
        schema_check = SchemaCheck(schema)

        def feature_frame(partition_key: str) -> pd.DataFrame:
            if mapping is None:
                frame = features(with_time_features(rows[partition_key], None, declared))
            else:
                earlier = [
                    rows[key]
                    for key in declaration.partitions.previous_keys(partition_key, reach)
                    if key in rows
                ]
                history = (
                    pd.concat(earlier, ignore_index=True) if earlier else rows[partition_key][:0]
                )
                current = with_time_features(rows[partition_key], history, declared)
                frame = features(current, history) if takes_history else features(current)
            schema_check.add(partition_key, frame)
            return frame

        yield dg.Output(PartitionStream(context.partition_keys, feature_frame))
        yield from report_per_partition(
            context, context.asset_key, FEATURE_SCHEMA, schema_check.outcomes()
        )

    return feature_rows


def history_snapshot_asset(declaration: PipelineDeclaration) -> dg.AssetsDefinition:
    """``serving.snapshot_asset`` of a pipeline with declared history: per partition, the rows
    of the features input that its features read (its declared history and its own rows, the
    columns the time features read), as one table snapshot the prediction service loads at
    each reload: a caller then sends only what it knows at request time."""
    declared, name = declaration.features, declaration.serving.snapshot_asset
    if declared.input is None or name is None:
        raise ValueError(
            f"{declaration.name}: a history snapshot needs features.input and "
            "serving.snapshot_asset"
        )
    upstream = declared.input
    reach = declared.history_partitions(upstream, declaration.partitions.kind)

    @dg.asset(
        name=name,
        key_prefix=declaration.prefix,
        group_name=group(declaration, FEATURES),
        code_version="1",
        kinds={"pandas", "parquet"},
        owners=declaration.owners,
        description=(
            f"What the prediction service computes history features from: the {upstream} rows "
            f"each {declaration.model.features_asset} partition reads (the partition and its "
            f"declared history: {reach} earlier partitions), as one snapshot per partition; the "
            "service loads the latest complete one at each (re)load."
        ),
        ins={
            upstream: dg.AssetIn(
                asset_key(declaration, upstream), partition_mapping=history_mapping(reach)
            )
        },
        automation_condition=refresh_stale_partitions(),
        **partitioned(declaration),
    )
    def history_snapshot(
        context: dg.AssetExecutionContext,
        online_store: TableSnapshotStore,
        **inputs: Mapping[str, pd.DataFrame],
    ) -> dg.MaterializeResult:
        rows, snapshots = inputs[upstream], online_store.snapshots()
        written = {}
        for key in context.partition_keys:
            window = [*declaration.partitions.previous_keys(key, reach), key]
            frame = pd.concat([rows[k] for k in window if k in rows], ignore_index=True)
            snapshots.write(context.asset_key.path, key, snapshot_tables(frame, declared))
            written[key] = len(frame)
        return dg.MaterializeResult(
            metadata={
                "location": snapshots.base.joinpath(*context.asset_key.path).as_posix(),
                "rows": written[context.partition_keys[-1]],
            }
        )

    return history_snapshot
