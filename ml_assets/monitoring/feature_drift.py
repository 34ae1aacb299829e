"""``feature_drift``: each feature's distribution in a partition against the training set.

Per partition: the population stability index of every model feature against the train split
of the current ``training_set`` (``ml_assets.monitoring.drift``), stored as a table and shown
as a report (features by PSI, with the bin that moved most) and as one number per feature,
plotted over partitions in the UI. The WARN check ``feature_drift_within_bar`` names the
features whose PSI exceeds ``monitoring.max_psi``.
"""

from collections.abc import Iterator, Mapping

import dagster as dg
import pandas as pd

from ml_assets.automation import refresh_stale_partitions
from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.data.assets import partition_check, partitioned
from ml_assets.data.checks import CheckOutcome, report_per_partition
from ml_assets.modeling.layer import SPLIT_COLUMN
from ml_assets.monitoring import FEATURE_DRIFT_CHECK
from ml_assets.monitoring.drift import drift_table, references
from ml_assets.monitoring.layer import common

SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("feature", "string", "A model feature."),
        dg.TableColumn("kind", "string", "numeric or categorical."),
        dg.TableColumn("psi", "float", "Population stability index against the train split."),
        dg.TableColumn("training_missing", "float", "Share missing in the train split."),
        dg.TableColumn("missing", "float", "Share missing in the partition."),
        dg.TableColumn("moved_bin", "string", "The bin whose share moved most."),
        dg.TableColumn("training_share", "float", "That bin's share in the train split."),
        dg.TableColumn("share", "float", "That bin's share in the partition."),
    ]
)


def build(declaration: PipelineDeclaration) -> dg.AssetsDefinition:
    model, monitoring = declaration.model, declaration.monitoring
    key = declaration.key("feature_drift")
    bar = monitoring.max_psi

    @dg.asset(
        key=key,
        description=(
            f"Each {declaration.name} model feature's population stability index (PSI) in the "
            "partition against the training set's train split, with a readable report."
        ),
        kinds={"pandas", "parquet"},
        ins={
            "features": dg.AssetIn(declaration.key(model.features_asset)),
            "training_set": dg.AssetIn(declaration.key("training_set")),
        },
        check_specs=[
            partition_check(
                declaration,
                "feature_drift",
                FEATURE_DRIFT_CHECK,
                f"Every feature's PSI against the training set is at most {bar:g} (warns).",
                blocking=False,
            )
        ],
        automation_condition=refresh_stale_partitions(),
        metadata={"dagster/column_schema": SCHEMA},
        **partitioned(declaration),
        **common(declaration),
    )
    def feature_drift(
        context: dg.AssetExecutionContext,
        features: Mapping[str, pd.DataFrame],
        training_set: pd.DataFrame,
    ) -> Iterator:
        train = training_set[training_set[SPLIT_COLUMN] == "train"]
        refs = references(train, model.categorical, model.numeric, monitoring.drift_bins)
        frames, checks = {}, {}
        for partition in context.partition_keys:
            table = drift_table(refs, features[partition])
            frames[partition] = table
            drifted = table[table["psi"] > bar]
            psi = dict(zip(table["feature"], table["psi"].round(6), strict=True))
            context.add_asset_metadata(
                {
                    "max_psi": float(table["psi"].max()),
                    "drifted_features": len(drifted),
                    "rows": len(features[partition]),
                    "report": dg.MetadataValue.md(table.round(4).to_markdown(index=False)),
                    **{f"psi/{feature}": float(value) for feature, value in psi.items()},
                },
                partition_key=partition,
            )
            listed = ", ".join(
                f"{f} ({v:.3f})" for f, v in zip(drifted["feature"], drifted["psi"], strict=True)
            )
            checks[partition] = CheckOutcome(
                drifted.empty,
                f"PSI over {bar:g}: {listed}" if listed else f"every PSI at most {bar:g}",
                {"max_psi": float(table["psi"].max()), "drifted": listed or "none",
                 "bar": bar, "training_rows": len(train)},
                dg.AssetCheckSeverity.WARN,
            )  # fmt: skip
        yield dg.Output(frames, metadata={"training_rows": len(train)})
        yield from report_per_partition(context, key, FEATURE_DRIFT_CHECK, checks)

    return feature_drift
