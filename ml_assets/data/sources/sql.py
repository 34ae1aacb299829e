"""The ``sql`` kind: a table in PostgreSQL or MySQL/MariaDB, read with dlt's ``sql_database``.

A load reads the rows whose cursor column falls in its partitions' window, passed to dlt as
``initial_value``/``end_value`` (start included, end not): stateless, so any
partition can be loaded again or backfilled in any order, and a row corrected in the database
reaches its partition when that partition is loaded again. The raw layer is the destination:
each partition is written whole by the IO manager and replaces what was there (a
delete-insert by partition), so a re-run never duplicates a row. No dlt pipeline (nor its
state or working folder) is involved, so loads of one source can run side by side; the
source's pool (``sql_<connection>``) bounds them when the database must be spared.

A run reads its whole range with one query (``RangeRead``), ``chunk_rows`` at a time, cut into
its partitions by the cursor as the rows arrive; a fresh dlt resource is built for every run
and after a lost connection (dlt is imported then, not when the definitions load). Rows are
stored as text, as a file's would be, so the same cleaning rules and checks apply whatever the
kind.
"""

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from ml_assets.contract.dagster_terms import partitions_definition
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
) -> tuple[Iterator[Any], Callable[[], dict[str, str]]]:
    """The rows of ``source``'s table (those whose cursor falls in ``window``: start included,
    end not), ordered by the cursor and the key, as Arrow tables of up to ``chunk_rows`` rows
    typed as the database gives them, streamed from one query; and, once they are read, the
    columns' types as dlt saw them."""
    import dlt
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
        chunk_size=source.chunk_rows,
        table_adapter_callback=_floats_as_floats,
        # in a stable order: the same rows give the same partition, whatever their storage
        query_adapter_callback=lambda query, table: query.order_by(
            *(table.c[name] for name in order if name in table.c)
        ),
    )

    def types() -> dict[str, str]:
        seen = resource.compute_table_schema()["columns"]
        return {name: column.get("data_type", "?") for name, column in seen.items()}

    return iter(resource), types


def split_by_window(chunks: Iterator[Any], cursor: str, ends: list[datetime]) -> Iterator[Any]:
    """The rows of consecutive windows, one Arrow table (None: no rows) per window end in
    ``ends``, from ``chunks`` ordered by ``cursor``: a row before ``ends[i]`` and not before
    ``ends[i - 1]`` is window ``i``'s. A window is yielded once a later row or the last chunk
    shows it is complete."""
    import pyarrow

    chunk = None
    for end in ends:
        pieces = []
        while True:
            if chunk is None or chunk.num_rows == 0:
                chunk = next(chunks, None)
                if chunk is None:
                    break
                continue
            inside = _rows_before(chunk.column(cursor), end)
            pieces.append(chunk.slice(0, inside))
            chunk = chunk.slice(inside)
            if chunk.num_rows:  # the rest is a later window's
                break
        rows = [piece for piece in pieces if piece.num_rows]
        yield pyarrow.concat_tables(rows, promote_options="default") if rows else None


def _rows_before(values: Any, end: datetime) -> int:
    """How many of the ordered cursor ``values`` come before ``end``: compared as instants
    where the database keeps a time zone, else as the wall-clock times (or dates) of the
    partitions' time zone."""
    import pyarrow
    import pyarrow.compute as pc

    kind = values.type
    if pyarrow.types.is_timestamp(kind) and kind.tz is None:
        bound = pyarrow.scalar(end.replace(tzinfo=None), type=kind)
    elif pyarrow.types.is_date(kind):
        bound = pyarrow.scalar(end.date(), type=kind)
    else:
        bound = pyarrow.scalar(end).cast(kind)
    return pc.sum(pc.less(values, bound)).as_py() or 0


class RangeRead:
    """The rows of consecutive partition windows (None: the whole table, as one) read with one
    streamed query, resumed at the window being read when the connection breaks (a restarted
    or killed server), up to the source's ``max_retries`` times with a doubling pause; windows
    already yielded are not read again."""

    def __init__(self, engine: Any, source: SqlSource, windows: list[Any] | None) -> None:
        self.engine, self.source, self.windows = engine, source, windows
        self.retried = 0
        """Connections lost and resumed."""
        self.types: dict[str, str] = {}
        """The columns' types as dlt saw them (once the first window is read)."""

    def __iter__(self) -> Iterator[Any]:
        done = 0
        while True:
            try:
                for rows in self._read(done):
                    done += 1
                    yield rows
                return
            except Exception as error:
                if not _disconnected(error) or self.retried >= self.source.max_retries:
                    raise
                self.retried += 1
            time.sleep(0.5 * 2 ** (self.retried - 1))

    def _read(self, done: int) -> Iterator[Any]:
        """The windows from the ``done``-th on, from a new query."""
        import pyarrow

        if self.windows is None:
            chunks, types = read_table(self.engine, self.source)
            read = [chunk for chunk in chunks if chunk.num_rows]
            self.types = types()
            yield pyarrow.concat_tables(read, promote_options="default") if read else None
            return
        rest = self.windows[done:]
        chunks, types = read_table(self.engine, self.source, (rest[0].start, rest[-1].end))
        ends = [window.end for window in rest]
        for rows in split_by_window(chunks, self.source.cursor_column or "", ends):
            self.types = self.types or types()
            yield rows


def _disconnected(error: BaseException | None) -> bool:
    """Whether ``error`` (or what it wraps: dlt wraps a resource's errors) is a lost or
    refused connection: SQLAlchemy's ``OperationalError``, or a disconnect it detected."""
    import sqlalchemy

    while error is not None:
        if isinstance(error, sqlalchemy.exc.OperationalError) or (
            isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated
        ):
            return True
        error = error.__cause__ or error.__context__
    return False


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

    engine = sqlalchemy.create_engine(connection.secret_url(), pool_pre_ping=True)
    if engine.dialect.name == "mysql":
        # buffered results: pymysql's streaming cursor cannot be cleaned up once its connection
        # broke (its finalizer raises whenever the collector meets it; once inside a compile,
        # as a SystemError), so a MySQL query's rows are held in memory (PostgreSQL streams)
        engine.dialect.supports_server_side_cursors = False
    return engine


def _raw_asset(
    declaration: PipelineDeclaration, source: SqlSource, schema: pa.DataFrameSchema
) -> dg.AssetsDefinition:
    connection_key = resource_key(source.connection)
    partitions_def = partitions_definition(declaration.partitions)

    @dg.asset(
        **connected_args(declaration, f"raw_{source.name}", source, schema, KINDS, connection_key),
        check_specs=[rows_check(declaration, source)],
        **partitioned(declaration),
    )
    def raw(context: dg.AssetExecutionContext) -> Iterator:
        connection: SqlConnection = getattr(context.resources, connection_key)
        engine = _engine(connection)
        windows = [partitions_def.time_window_for_partition_key(k) for k in context.partition_keys]
        ranged = RangeRead(engine, source, windows)
        windows_read = iter(ranged)

        def read(partition_key: str, window: dg.TimeWindow) -> tuple[pd.DataFrame, dict]:
            rows = next(windows_read)  # the stream asks for the windows in order
            # whole numbers stay whole where a column has nulls (as text "517", never "517.0")
            frame = raw_text(
                None if rows is None else rows.to_pandas(integer_object_nulls=True),
                [c for c in source.columns if rows is None or c in rows.column_names],
            )
            return frame, {"source/rows_read": 0 if rows is None else rows.num_rows}

        def read_in_all() -> dict[str, Any]:
            return {
                "source/schema": dg.MetadataValue.json(ranged.types),
                "source/retries": ranged.retried,
            }

        shown = _source_metadata(source, connection)
        try:
            yield from read_partitions(
                context, declaration, source, schema, shown, read, read_in_all
            )
        finally:
            engine.dispose()

    return raw


def _reference_asset(
    declaration: PipelineDeclaration, source: SqlSource, schema: pa.DataFrameSchema
) -> dg.AssetsDefinition:
    def read(connection: SqlConnection) -> tuple[pd.DataFrame, dict[str, Any]]:
        engine = _engine(connection)
        whole = RangeRead(engine, source, None)
        try:
            rows = next(iter(whole))
        finally:
            engine.dispose()
        frame = pd.DataFrame(columns=list(whole.types)) if rows is None else rows.to_pandas()
        return frame, {
            **_source_metadata(source, connection),
            "source/rows_read": len(frame),
            "source/schema": dg.MetadataValue.json(whole.types),
            "source/retries": whole.retried,
        }

    connection_key = resource_key(source.connection)
    return connected_reference(declaration, source, schema, KINDS, connection_key, read)
