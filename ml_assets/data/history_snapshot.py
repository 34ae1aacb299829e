"""``serving.snapshot_asset``: per partition, the tables the prediction service computes a
request's features from (by default the rows a features partition reads), as one snapshot."""

from collections.abc import Callable, Mapping

import dagster as dg
import pandas as pd

from ml_assets.contract.dagster_terms import asset_key
from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.contract.features import HISTORY, ROWS
from ml_assets.data.data_layers import (
    FEATURES,
    group,
    history_mapping,
    layer_automation,
    partitioned,
)
from ml_assets.data.feature_inputs import arguments, earlier_rows, parameters, read_ins
from ml_assets.data.metadata import code_reference
from ml_assets.data.online_history import snapshot_tables
from resources.table_snapshot_store import TableSnapshotStore

Tables = Callable[..., Mapping[str, pd.DataFrame]]
"""A pipeline's snapshot function: the named tables of a partition's snapshot."""


def history_snapshot_asset(
    declaration: PipelineDeclaration,
    tables: Tables | None = None,
    description: str | None = None,
    code_version: str = "1",
) -> dg.AssetsDefinition:
    """``serving.snapshot_asset`` of a pipeline with a features input: per partition, one table
    snapshot the prediction service loads at each reload, so that a caller sends only what it
    knows at request time.

    ``tables`` computes a partition's tables from what it takes by parameter name, as the
    feature function does: ``rows`` (the partition's rows of the input), ``history`` (its
    declared earlier partitions' rows) and ``features.reads``. The snapshot reads the input's
    partition only when ``tables`` takes ``rows``: one that takes only ``history`` serves the
    partition's own requests from what came before it. Without ``tables``: the input rows the
    features of the partition read (its declared history and its own rows, the columns the time
    features read), for the service's own time features.
    """
    declared, name = declaration.features, declaration.serving.snapshot_asset
    if declared.input is None or name is None:
        raise ValueError(
            f"{declaration.name}: a history snapshot needs features.input and "
            "serving.snapshot_asset"
        )
    upstream = declared.input
    reach = declared.history_partitions(upstream, declaration.partitions.kind)
    if tables is None:
        tables, taken, metadata = _window(declaration), [ROWS, HISTORY], {}
        description = description or (
            f"What the prediction service computes history features from: the {upstream} rows "
            f"each {declaration.model.features_asset} partition reads (the partition and its "
            f"declared history: {reach} earlier partitions), as one snapshot per partition; the "
            "service loads the latest complete one at each (re)load."
        )
    else:
        taken, metadata = parameters(tables, declaration), code_reference(tables)
    ins = read_ins(declaration, taken)
    if ROWS in taken or HISTORY in taken:
        window = history_mapping(reach, own=ROWS in taken)
        ins[upstream] = dg.AssetIn(asset_key(declaration, upstream), partition_mapping=window)

    @dg.asset(
        name=name,
        key_prefix=declaration.prefix,
        group_name=group(declaration, FEATURES),
        code_version=code_version,
        kinds={"pandas", "parquet"},
        owners=declaration.owners,
        description=description,
        metadata=metadata,
        ins=ins,
        automation_condition=layer_automation(),
        **partitioned(declaration),
    )
    def history_snapshot(
        context: dg.AssetExecutionContext,
        online_store: TableSnapshotStore,
        **inputs: Mapping[str, pd.DataFrame] | pd.DataFrame,
    ) -> dg.MaterializeResult:
        snapshots = online_store.snapshots()
        written: dict[str, int] = {}
        for key in context.partition_keys:
            handed: dict[str, pd.DataFrame] = {}
            if ROWS in taken:
                handed[ROWS] = inputs[upstream][key]
            if HISTORY in taken:
                earlier = declaration.partitions.previous_keys(key, reach)
                handed[HISTORY] = earlier_rows(inputs[upstream], earlier)
            snapshot = tables(**arguments(taken, inputs, key, **handed))
            snapshots.write(context.asset_key.path, key, snapshot)
            written = {table: len(frame) for table, frame in snapshot.items()}
        return dg.MaterializeResult(
            metadata={
                "location": snapshots.base.joinpath(*context.asset_key.path).as_posix(),
                **{f"rows/{table}": n for table, n in written.items()},
            }
        )

    return history_snapshot


def _window(declaration: PipelineDeclaration) -> Tables:
    """The default snapshot: the partition's window of input rows (its history, then itself),
    the columns the time features read."""

    def window(rows: pd.DataFrame, history: pd.DataFrame) -> dict[str, pd.DataFrame]:
        read = pd.concat([history, rows], ignore_index=True) if len(history) else rows
        return snapshot_tables(read, declaration.features)

    return window
