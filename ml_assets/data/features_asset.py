"""The model's feature rows of each partition, built from the declared input (its partition and
declared history) and further inputs by the declared time features and the pipeline's feature
function."""

from collections.abc import Callable, Mapping

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from ml_assets.contract.dagster_terms import asset_key
from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.contract.features import HISTORY, ROWS
from ml_assets.data.checks import SchemaCheck, report_per_partition
from ml_assets.data.data_layers import (
    FEATURES,
    group,
    history_mapping,
    layer_automation,
    partition_check,
    partitioned,
)
from ml_assets.data.feature_inputs import arguments, earlier_rows, parameters, read_ins
from ml_assets.data.metadata import code_reference, table_definition_metadata
from ml_assets.data.time_features import with_time_features
from resources.partition_frames import PartitionStream

FEATURE_SCHEMA = "feature_schema"


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
    ``features`` maps them to feature rows. It is handed, by parameter name, ``rows`` (the
    partition's rows with their time features), ``history`` if it takes it (the earlier
    partitions' rows, oldest first) and each of ``features.reads`` (the same partition of a
    partitioned asset, an unpartitioned table whole). Only the window a partition reads is in
    memory.
    """
    name = declaration.model.features_asset
    declared = declaration.features
    if declared.input not in (None, upstream):
        raise ValueError(f"features.input is {declared.input!r}, the asset reads {upstream!r}")
    taken = parameters(features, declaration)
    untaken = [read for read in [ROWS, *declared.reads] if read not in taken]
    if untaken:
        raise ValueError(
            f"{declaration.name}: {features.__qualname__} does not take {', '.join(untaken)}"
        )
    reach = declared.history_partitions(upstream, declaration.partitions.kind)
    mapping = history_mapping(reach) if upstream in declared.history else None

    @dg.asset(
        name=name,
        key_prefix=declaration.prefix,
        group_name=group(declaration, FEATURES),
        code_version=code_version,
        kinds={"pandas", "parquet"},
        owners=declaration.owners,
        description=description,
        metadata={**table_definition_metadata(schema), **code_reference(features)},
        ins={
            upstream: dg.AssetIn(asset_key(declaration, upstream), partition_mapping=mapping),
            **read_ins(declaration, taken),
        },
        check_specs=[
            partition_check(declaration, name, FEATURE_SCHEMA, f"Conforms to {schema.name}.")
        ],
        automation_condition=layer_automation(),
        **partitioned(declaration),
    )
    def feature_rows(
        context: dg.AssetExecutionContext, **inputs: Mapping[str, pd.DataFrame] | pd.DataFrame
    ):
        rows: Mapping[str, pd.DataFrame] = inputs[upstream]
        schema_check = SchemaCheck(schema)

        def feature_frame(partition_key: str) -> pd.DataFrame:
            history = None
            if mapping is not None:
                earlier = declaration.partitions.previous_keys(partition_key, reach)
                history = earlier_rows(rows, earlier)
            current = with_time_features(rows[partition_key], history, declared)
            handed = {ROWS: current, **({HISTORY: history} if HISTORY in taken else {})}
            frame = features(**arguments(taken, inputs, partition_key, **handed))
            schema_check.add(partition_key, frame)
            return frame

        yield dg.Output(PartitionStream(context.partition_keys, feature_frame))
        yield from report_per_partition(
            context, context.asset_key, FEATURE_SCHEMA, schema_check.outcomes()
        )

    return feature_rows
