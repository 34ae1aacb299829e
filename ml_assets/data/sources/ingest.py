"""What the assets of every source kind share: their definition arguments, the checks of
what landed (the schema check of a raw partition or a reference table) and, for the kinds that
read their rows from where they live (a database, an API), how a run reads its partitions."""

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from ml_assets.contract.dagster_terms import asset_key, partitions_definition
from ml_assets.contract.declaration import PipelineDeclaration, Source
from ml_assets.data.checks import CheckOutcome, SchemaCheck, report_per_partition, schema_outcome
from ml_assets.data.cleaning import PARSE_ERROR, RAW_TEXT, text_frame
from ml_assets.data.data_layers import INGEST, group, partition_check
from ml_assets.data.metadata import table_definition_metadata
from resources.partition_frames import PartitionStream

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


def report_landed_rows(
    context: dg.AssetExecutionContext,
    key: dg.AssetKey,
    landed_schema: SchemaCheck,
    reads: Mapping[str, Mapping[str, Any]],
    source: Source,
    drifts: Mapping[str, list[str]] | None = None,
) -> Iterator:
    """The ``rows_check`` of each partition of the run (with its schema drift, if any, under
    the source's policy), and, when it wrote several, each partition's own figures (``reads``,
    with its ``ROWS_IN_RAW``) as an observation beside the run's totals."""
    drifts = drifts or {}
    outcomes = {
        k: drift_outcome(
            min_rows_outcome(outcome, reads[k][ROWS_IN_RAW], source.min_rows),
            drifts.get(k, []),
            source.on_schema_drift,
        )
        for k, outcome in landed_schema.outcomes().items()
    }
    if any(drifts.values()):
        changes = sorted({change for found in drifts.values() for change in found})
        context.log.warning(f"{source.name}: the source's schema changed: {'; '.join(changes)}")
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


def rows_check(declaration: PipelineDeclaration, source: Source) -> dg.AssetCheckSpec:
    """The blocking schema check of each raw partition of a source read where its rows live."""
    return partition_check(
        declaration,
        f"raw_{source.name}",
        LANDED_FILE_SCHEMA,
        "The rows have every declared column"
        + (f" and are at least {source.min_rows}." if source.min_rows else "."),
    )


def raw_text(rows: pd.DataFrame | None, columns: list[str]) -> pd.DataFrame:
    """Rows read from where they live (None: none) as raw text, as an export would hold them,
    the declared ``columns`` first (no rows: every declared column, empty)."""
    if rows is None:
        return text_frame(pd.DataFrame({c: pd.Series(dtype=object) for c in columns}))
    frame = text_frame(rows)
    return frame[[*columns, *(c for c in frame.columns if c not in columns)]]


ReadWindow = Callable[[str, dg.TimeWindow], tuple[pd.DataFrame, dict[str, Any]]]
"""``(partition_key, window)``: the partition's raw rows and what reading them took (its
``source/…`` metadata: rows read, pages, retries, the schema seen, …)."""


def read_partitions(
    context: dg.AssetExecutionContext,
    declaration: PipelineDeclaration,
    source: Source,
    schema: pa.DataFrameSchema,
    shown: Mapping[str, Any],
    read: ReadWindow,
    read_in_all: Callable[[], Mapping[str, Any]] = dict,
) -> Iterator:
    """What the raw asset of ``source`` yields for its run's partitions: their frames, each read
    by ``read`` in key order when the IO manager writes it (a partition whose read fails is not
    written), with ``shown`` (what is read, never a secret), the partitions' figures over the
    run and ``read_in_all()`` (figures of the run's read as a whole) as metadata; then each
    partition's blocking schema check and, in a range run, each partition's own figures as an
    observation."""
    key = asset_key(declaration, f"raw_{source.name}")
    partitions_def = partitions_definition(declaration.partitions)
    landed_schema = SchemaCheck(schema)
    reads: dict[str, dict[str, Any]] = {}
    drifts: dict[str, list[str]] = {}
    previous = _last_schema(context, key)

    def produce(partition_key: str) -> pd.DataFrame:
        window = partitions_def.time_window_for_partition_key(partition_key)
        started = time.perf_counter()
        frame, figures = read(partition_key, window)
        landed_schema.add(partition_key, frame)
        seen = figures.get("source/schema") or read_in_all().get("source/schema")
        drifts[partition_key] = schema_drift(source.columns, frame, previous, _json(seen))
        if drifts[partition_key]:
            figures = {**figures, "source/schema_drift": "; ".join(drifts[partition_key])}
        reads[partition_key] = {
            "source/window": f"[{window.start.isoformat()}, {window.end.isoformat()})",
            **figures,
            ROWS_IN_RAW: len(frame),
            "source/seconds": round(time.perf_counter() - started, 3),
        }
        return frame

    def summary() -> dict[str, Any]:
        last = reads[keys[-1]]
        if len(reads) == 1:
            return {**shown, **last, **read_in_all()}
        first = partitions_def.time_window_for_partition_key(keys[0])
        end = partitions_def.time_window_for_partition_key(keys[-1]).end
        counts = {
            name: sum(r[name] for r in reads.values())
            for name, value in last.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
        counts["source/seconds"] = round(counts["source/seconds"], 3)
        window = f"[{first.start.isoformat()}, {end.isoformat()})"
        return {**shown, **last, **counts, "source/window": window, **read_in_all()}

    keys = context.partition_keys
    yield dg.Output(PartitionStream(keys, produce, metadata=summary))
    yield from report_landed_rows(context, key, landed_schema, reads, source, drifts)


def schema_drift(
    declared: list[str],
    frame: pd.DataFrame,
    previous: Mapping[str, str] | None,
    seen: Mapping[str, str] | None,
) -> list[str]:
    """How a partition's source schema differs from what is expected of it: each column the
    rows hold beyond the ``declared`` ones (``added <column>``) and each column whose type,
    as the source gave it (``seen``), differs from the last load's (``previous``)."""
    known = set(declared) | {PARSE_ERROR, RAW_TEXT}
    added = [f"added {c}" for c in frame.columns if declared and c not in known]
    if not previous or not seen:
        return added
    changed = [
        f"changed {c}: {previous[c]} -> {kind}"
        for c, kind in seen.items()
        if c in previous and previous[c] != kind
    ]
    return added + changed


def drift_outcome(outcome: CheckOutcome, drift: list[str], policy: str) -> CheckOutcome:
    """``outcome`` with the schema ``drift`` shown, failed as well under the ``fail`` policy."""
    if not drift:
        return outcome
    shown = f"schema drift at the source ({policy}): {'; '.join(drift)}"
    passed = outcome.passed and policy == "warn"
    description = shown if outcome.passed else f"{outcome.description}; {shown}"
    return CheckOutcome(
        passed=passed,
        description=description,
        metadata={**outcome.metadata, "schema_drift": dg.MetadataValue.json(drift)},
        severity=outcome.severity,
    )


def _last_schema(context: dg.AssetExecutionContext, key: dg.AssetKey) -> dict[str, str] | None:
    """The source's column types at the asset's last load (its ``source/schema``), if any."""
    event = context.instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    return _json(event.asset_materialization.metadata.get("source/schema"))


def _json(value: Any) -> dict[str, str] | None:
    """A ``source/schema`` metadata value as a mapping (it is stored as JSON metadata)."""
    data = getattr(value, "data", value)
    return data if isinstance(data, dict) else None


def connected_args(
    declaration: PipelineDeclaration,
    name: str,
    source: Source,
    schema: pa.DataFrameSchema,
    kinds: set[str],
    connection_key: str,
) -> dict:
    """What an asset reading ``source`` through its connection (the resource
    ``connection_key``) declares: the connection, and its pool (runs of one connection can be
    held to one at a time: ``dagster instance concurrency set <connection_key> 1``)."""
    return {
        **ingest_args(declaration, name, source, schema, kinds),
        "required_resource_keys": {connection_key},
        "pool": connection_key,
    }


ReadTable = Callable[[Any], tuple[pd.DataFrame, dict[str, Any]]]
"""``(connection)``: the whole reference table, typed as its source gives it, and what reading
it took (its ``source/…`` metadata)."""


def connected_reference(
    declaration: PipelineDeclaration,
    source: Source,
    schema: pa.DataFrameSchema,
    kinds: set[str],
    connection_key: str,
    read: ReadTable,
) -> dg.AssetsDefinition:
    """The reference table ``source`` (``partitioned: false``), read whole through its
    connection by ``read``, and its blocking schema check."""

    @dg.asset(
        **connected_args(declaration, source.name, source, schema, kinds, connection_key),
        check_specs=[reference_check(declaration, source.name, schema)],
    )
    def reference(context: dg.AssetExecutionContext) -> Iterator:
        started = time.perf_counter()
        frame, metadata = read(getattr(context.resources, connection_key))
        seconds = round(time.perf_counter() - started, 3)
        yield dg.Output(frame, metadata={**metadata, "source/seconds": seconds})
        yield reference_check_result(schema, frame)

    return reference
