"""``<source>_clean`` and ``<source>_rejected``: a source's raw rows triaged by the pipeline's
clean function, each partition judged against the accepted history before it."""

import inspect
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import date

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from ml_assets.contract.dagster_terms import asset_key
from ml_assets.contract.declaration import PipelineDeclaration, Source
from ml_assets.data.checks import (
    CheckOutcome,
    SchemaCheck,
    plausibility_metadata,
    plausibility_summary,
    rejected_share_outcome,
    report_per_partition,
    row_conservation_outcome,
    whole_file_outcome,
)
from ml_assets.data.cleaning import REJECTION_RULE, Cleaned
from ml_assets.data.data_layers import CLEAN, group, layer_automation, partition_check, partitioned
from ml_assets.data.metadata import code_reference, table_definition_metadata
from ml_assets.data.plausibility import AcceptedHistory, Judgement, stats_columns
from resources.partition_frames import FrameSpill, PartitionStream

CLEAN_SCHEMA = "clean_schema"
ROWS_CONSERVED = "rows_conserved"
REJECTED_SHARE = "rejected_share"
EXPORT_SCHEMA = "export_schema"


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
        "automation_condition": layer_automation(),
    }

    @dg.multi_asset(
        name=f"{declaration.prefix}__clean_{source}",
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
