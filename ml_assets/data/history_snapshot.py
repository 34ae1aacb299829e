"""``serving.snapshot_asset``: per partition, the rows a features partition reads, as the
table snapshot the prediction service computes history features from."""

from collections.abc import Mapping

import dagster as dg
import pandas as pd

from ml_assets.contract.dagster_terms import asset_key
from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.data.data_layers import (
    FEATURES,
    group,
    history_mapping,
    layer_automation,
    partitioned,
)
from ml_assets.data.online_history import snapshot_tables
from resources.table_snapshot_store import TableSnapshotStore


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
        automation_condition=layer_automation(),
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
