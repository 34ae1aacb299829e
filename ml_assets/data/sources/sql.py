"""The ``sql`` kind: a table in PostgreSQL or MySQL/MariaDB, read with dlt's ``sql_database``.

A partition's load reads the rows whose cursor column falls in the partition's window, passed
to dlt as ``initial_value``/``end_value`` (start included, end not): stateless, so any
partition can be loaded again or backfilled in any order, and a row corrected in the database
reaches its partition when that partition is loaded again. The raw layer is the destination:
each partition is written whole by the IO manager and replaces what was there (a
delete-insert by partition), so a re-run never duplicates a row. No dlt pipeline (nor its
state or working folder) is involved, so loads of one source can run side by side; the
source's pool (``sql_<connection>``) bounds them when the database must be spared.

A fresh dlt resource is built for every partition of every run (dlt is imported then, not
when the definitions load). Rows are stored as text, as a file's would be, so the same
cleaning rules and checks apply whatever the kind.
"""

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from ml_assets.contract.dagster_terms import asset_key, partitions_definition
from ml_assets.contract.declaration import PipelineDeclaration, SqlSource
from ml_assets.data.checks import SchemaCheck
from ml_assets.data.cleaning import text_frame
from ml_assets.data.data_layers import partitioned
from ml_assets.data.sources.ingest import (
    ROWS_IN_RAW,
    ingest_args,
    landed_rows_check,
    reference_check,
    reference_check_result,
    report_landed_rows,
)
from resources.partition_frames import PartitionStream
from resources.sql_connection import SqlConnection, resource_key


def asset(
    declaration: PipelineDeclaration, source: SqlSource, schema: pa.DataFrameSchema
) -> dg.AssetsDefinition:
    """``raw_<source>`` (the rows of each partition's window) or the reference table
    ``<source>`` (the whole table)."""
    return (_raw_asset if source.partitioned else _reference_asset)(declaration, source, schema)


def read_table(
    engine: Any, source: SqlSource, window: tuple[datetime, datetime] | None = None
) -> tuple[Any, dict[str, str]]:
    """The rows of ``source``'s table (those whose cursor falls in ``window``: start included,
    end not), ordered by the cursor and the key, as an Arrow table typed as the database gives
    them (None: no rows), and the columns' types as dlt saw them."""
    import dlt
    import pyarrow
    from dlt.sources.sql_database import sql_table

    schema_name, _, table = source.table.rpartition(".")
    order = [c for c in [source.cursor_column, *source.key] if c is not None]
    incremental = None
    if window is not None:
        incremental = dlt.sources.incremental(
            source.cursor_column,
            initial_value=window[0],
            end_value=window[1],
            range_start="closed",
            range_end="open",
        )
    resource = sql_table(
        credentials=engine,
        table=table,
        schema=schema_name or None,
        incremental=incremental,
        included_columns=source.columns or None,
        backend="pyarrow",
        table_adapter_callback=_floats_as_floats,
        # in a stable order: the same rows give the same partition, whatever their storage
        query_adapter_callback=lambda query, table: query.order_by(
            *(table.c[name] for name in order if name in table.c)
        ),
    )
    chunks = list(resource)
    seen = resource.compute_table_schema()["columns"]
    types = {name: column.get("data_type", "?") for name, column in seen.items()}
    if not chunks:
        return None, types
    return pyarrow.concat_tables(chunks, promote_options="default"), types


def _floats_as_floats(table: Any) -> None:
    """Floating-point columns read as floats: MySQL's ``DOUBLE`` reflects as a type that gives
    ``Decimal`` values, which dlt can neither type nor store as numbers."""
    import sqlalchemy as sa

    for column in table.columns:
        if isinstance(column.type, sa.Float) and column.type.asdecimal:
            column.type = sa.Numeric(asdecimal=False)


def _as_raw(rows: Any, columns: list[str]) -> pd.DataFrame:
    """A window's rows as raw text, the declared ``columns`` first (an empty window: no rows,
    every declared column)."""
    if rows is None:
        return text_frame(pd.DataFrame({c: pd.Series(dtype=object) for c in columns}))
    # whole numbers stay whole where a column has nulls (as text "517", never "517.0")
    frame = text_frame(rows.to_pandas(integer_object_nulls=True))
    return frame[[*columns, *(c for c in frame.columns if c not in columns)]]


def _source_metadata(source: SqlSource, connection: SqlConnection) -> dict[str, Any]:
    return {
        "source/kind": "sql",
        "source/connection": connection.name,
        "source/database": connection.dialect(),
        "source/table": source.table,
    }


def _engine(connection: SqlConnection) -> Any:
    import sqlalchemy

    return sqlalchemy.create_engine(connection.secret_url(), pool_pre_ping=True)


def _raw_asset(
    declaration: PipelineDeclaration, source: SqlSource, schema: pa.DataFrameSchema
) -> dg.AssetsDefinition:
    name = f"raw_{source.name}"
    key = asset_key(declaration, name)
    connection_key = resource_key(source.connection)
    partitions_def = partitions_definition(declaration.partitions)

    @dg.asset(
        **ingest_args(declaration, name, source, schema, {"sql", "dlt"}),
        check_specs=[landed_rows_check(declaration, name, source)],
        required_resource_keys={connection_key},
        pool=connection_key,
        **partitioned(declaration),
    )
    def raw(context: dg.AssetExecutionContext) -> Iterator:
        connection: SqlConnection = getattr(context.resources, connection_key)
        engine = _engine(connection)
        shown = _source_metadata(source, connection)
        landed_schema = SchemaCheck(schema)
        reads: dict[str, dict[str, Any]] = {}

        def read(partition_key: str) -> pd.DataFrame:
            window = partitions_def.time_window_for_partition_key(partition_key)
            started = time.perf_counter()
            rows, types = read_table(engine, source, (window.start, window.end))
            frame = _as_raw(
                rows, [c for c in source.columns if rows is None or c in rows.column_names]
            )
            landed_schema.add(partition_key, frame)
            reads[partition_key] = {
                "source/window": f"[{window.start.isoformat()}, {window.end.isoformat()})",
                "source/rows_read": 0 if rows is None else rows.num_rows,
                ROWS_IN_RAW: len(frame),
                "source/seconds": round(time.perf_counter() - started, 3),
                "source/schema": dg.MetadataValue.json(types),
            }
            return frame

        def summary() -> dict[str, Any]:
            if len(reads) == 1:
                return {**shown, **next(iter(reads.values()))}
            first, last = (
                partitions_def.time_window_for_partition_key(k) for k in (keys[0], keys[-1])
            )
            return {
                **shown,
                "source/window": f"[{first.start.isoformat()}, {last.end.isoformat()})",
                "source/rows_read": sum(r["source/rows_read"] for r in reads.values()),
                ROWS_IN_RAW: sum(r[ROWS_IN_RAW] for r in reads.values()),
                "source/seconds": round(sum(r["source/seconds"] for r in reads.values()), 3),
                "source/schema": reads[keys[-1]]["source/schema"],
            }

        keys = context.partition_keys
        try:
            yield dg.Output(PartitionStream(keys, read, metadata=summary))
        finally:
            engine.dispose()
        yield from report_landed_rows(context, key, landed_schema, reads, source.min_rows)

    return raw


def _reference_asset(
    declaration: PipelineDeclaration, source: SqlSource, schema: pa.DataFrameSchema
) -> dg.AssetsDefinition:
    name = source.name
    connection_key = resource_key(source.connection)

    @dg.asset(
        **ingest_args(declaration, name, source, schema, {"sql", "dlt"}),
        check_specs=[reference_check(declaration, name, schema)],
        required_resource_keys={connection_key},
        pool=connection_key,
    )
    def reference(context: dg.AssetExecutionContext) -> Iterator:
        connection: SqlConnection = getattr(context.resources, connection_key)
        engine = _engine(connection)
        started = time.perf_counter()
        try:
            rows, types = read_table(engine, source)
        finally:
            engine.dispose()
        frame = pd.DataFrame(columns=list(types)) if rows is None else rows.to_pandas()
        yield dg.Output(
            frame,
            metadata={
                **_source_metadata(source, connection),
                "source/rows_read": len(frame),
                "source/seconds": round(time.perf_counter() - started, 3),
                "source/schema": dg.MetadataValue.json(types),
            },
        )
        yield reference_check_result(schema, frame)

    return reference
