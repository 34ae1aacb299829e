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

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from ml_assets.contract.declaration import PipelineDeclaration, SqlSource
from ml_assets.data.data_layers import partitioned
from ml_assets.data.sources.ingest import (
    connected_args,
    connected_reference,
    raw_text,
    read_partitions,
    rows_check,
)
from resources.sql_connection import SqlConnection, resource_key

KINDS = {"sql", "dlt"}
"""What the kind's assets read with (their Dagster kinds)."""


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
    connection_key = resource_key(source.connection)

    @dg.asset(
        **connected_args(declaration, f"raw_{source.name}", source, schema, KINDS, connection_key),
        check_specs=[rows_check(declaration, source)],
        **partitioned(declaration),
    )
    def raw(context: dg.AssetExecutionContext) -> Iterator:
        connection: SqlConnection = getattr(context.resources, connection_key)
        engine = _engine(connection)

        def read(partition_key: str, window: dg.TimeWindow) -> tuple[pd.DataFrame, dict]:
            rows, types = read_table(engine, source, (window.start, window.end))
            # whole numbers stay whole where a column has nulls (as text "517", never "517.0")
            frame = raw_text(
                None if rows is None else rows.to_pandas(integer_object_nulls=True),
                [c for c in source.columns if rows is None or c in rows.column_names],
            )
            figures = {
                "source/rows_read": 0 if rows is None else rows.num_rows,
                "source/schema": dg.MetadataValue.json(types),
            }
            return frame, figures

        shown = _source_metadata(source, connection)
        try:
            yield from read_partitions(context, declaration, source, schema, shown, read)
        finally:
            engine.dispose()

    return raw


def _reference_asset(
    declaration: PipelineDeclaration, source: SqlSource, schema: pa.DataFrameSchema
) -> dg.AssetsDefinition:
    def read(connection: SqlConnection) -> tuple[pd.DataFrame, dict[str, Any]]:
        engine = _engine(connection)
        try:
            rows, types = read_table(engine, source)
        finally:
            engine.dispose()
        frame = pd.DataFrame(columns=list(types)) if rows is None else rows.to_pandas()
        return frame, {
            **_source_metadata(source, connection),
            "source/rows_read": len(frame),
            "source/schema": dg.MetadataValue.json(types),
        }

    connection_key = resource_key(source.connection)
    return connected_reference(declaration, source, schema, KINDS, connection_key, read)
