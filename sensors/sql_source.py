"""A sensor per sql source that declares a ``changed_column``: it notices rows written or
updated in the database and loads again exactly the partitions they belong to.

Each tick reads only the cursor values of the rows changed since the newest change it saw
(less the declared lag, for writes that commit late), maps them to partitions and requests a
run of the source's raw partitions for each contiguous range of them; automation then brings
the clean and feature partitions (and the later ones that read them as history) up to date.
The run key names the range and the newest change in it, so a change seen twice runs once.
"""

from datetime import datetime, timedelta

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG as RANGE_END
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG as RANGE_START

from ml_assets.contract.dagster_terms import asset_key, partitions_definition
from ml_assets.contract.declaration import PipelineDeclaration, SqlSource
from resources.sql_connection import SqlConnection, resource_key
from sensors.partition_runs import contiguous_ranges

INTERVAL_SECONDS = 10


def changed_rows(connection: SqlConnection, source: SqlSource, since: datetime | None) -> list:
    """``(cursor, changed)`` of the rows of ``source`` changed after ``since`` (all: None)."""
    import sqlalchemy as sa

    schema, _, name = source.table.rpartition(".")
    cursor, changed = sa.column(source.cursor_column), sa.column(source.changed_column)
    query = sa.select(cursor, changed).select_from(sa.table(name, schema=schema or None))
    if since is not None:
        query = query.where(changed > since)
    engine = sa.create_engine(connection.secret_url())
    try:
        with engine.connect() as db:
            return [tuple(row) for row in db.execute(query)]
    finally:
        engine.dispose()


def build_sql_source_sensor(
    declaration: PipelineDeclaration, source: SqlSource
) -> dg.SensorDefinition:
    connection_key = resource_key(source.connection)
    raw_key = asset_key(declaration, f"raw_{source.name}")
    partitions_def = partitions_definition(declaration.partitions)
    lag = timedelta(seconds=source.changed_lag_seconds)

    @dg.sensor(
        name=f"{declaration.prefix}_{source.name}_changes_sensor",
        asset_selection=dg.AssetSelection.assets(raw_key),
        minimum_interval_seconds=INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys={connection_key},
        description=f"Loads again the {source.name} partitions whose rows were written or "
        f"updated in {source.table} (by {source.changed_column}).",
    )
    def changes_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        connection: SqlConnection = getattr(context.resources, connection_key)
        newest = datetime.fromisoformat(context.cursor) if context.cursor else None
        rows = changed_rows(connection, source, newest - lag if newest else None)
        keys = set(partitions_def.get_partition_keys())
        latest: dict[str, datetime] = {}
        for cursor, changed in rows:
            partition = partitions_def.get_partition_key_for_timestamp(cursor.timestamp())
            if partition in keys:
                latest[partition] = max(latest.get(partition, changed), changed)
        order = {k: i for i, k in enumerate(partitions_def.get_partition_keys())}
        requests = []
        for group in contiguous_ranges(list(latest), order):
            stamp = max(latest[k] for k in group)
            tags = {RANGE_START: group[0], RANGE_END: group[-1]} if len(group) > 1 else {}
            requests.append(
                dg.RunRequest(
                    run_key=f"{source.name}/{group[0]}...{group[-1]}:{stamp.isoformat()}",
                    asset_selection=[raw_key],
                    partition_key=group[0] if len(group) == 1 else None,
                    tags=tags,
                )
            )
        stamps = [changed for _, changed in rows] + ([newest] if newest else [])
        cursor = max(stamps).isoformat() if stamps else None
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return changes_sensor
