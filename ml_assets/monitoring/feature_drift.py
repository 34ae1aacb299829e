"""``feature_drift``: each feature's distribution in a partition against the training set.

Per partition: the population stability index of every watched model feature against its
declared reference (``monitoring.drift_reference``): the train split of the current
``training_set``, or its rows of the same calendar month as the partition (seasonal features);
calendar and trend features may be left unwatched. Stored as a table and shown as a report
(features by PSI, with the bin that moved most) and as one number per feature, plotted over
partitions in the UI. The WARN check ``feature_drift_within_bar`` names the features whose PSI
exceeds ``monitoring.max_psi``.
"""

from collections.abc import Iterator, Mapping, Sequence

import dagster as dg
import pandas as pd

from ml_assets.automation import refresh_stale_partitions
from ml_assets.contract.dagster_terms import asset_key, partitions_definition
from ml_assets.contract.declaration import Monitoring, PipelineDeclaration
from ml_assets.contract.names import FEATURE_DRIFT_CHECK
from ml_assets.data.checks import CheckOutcome, report_per_partition
from ml_assets.data.data_layers import partition_check, partitioned
from ml_assets.modeling.layer import PARTITION_COLUMN, SPLIT_COLUMN
from ml_assets.monitoring.drift import drift_table, references
from ml_assets.monitoring.layer import common

SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("feature", "string", "A model feature."),
        dg.TableColumn("kind", "string", "numeric or categorical."),
        dg.TableColumn(
            "reference",
            "string",
            "What it is compared with (the train split, or its rows of the partition's month).",
        ),
        dg.TableColumn("psi", "float", "Population stability index against the reference."),
        dg.TableColumn("training_missing", "float", "Share missing in the train split."),
        dg.TableColumn("missing", "float", "Share missing in the partition."),
        dg.TableColumn("moved_bin", "string", "The bin whose share moved most."),
        dg.TableColumn("training_share", "float", "That bin's share in the train split."),
        dg.TableColumn("share", "float", "That bin's share in the partition."),
    ]
)


def build(declaration: PipelineDeclaration) -> dg.AssetsDefinition:
    model, monitoring = declaration.model, declaration.monitoring
    key = asset_key(declaration, "feature_drift")
    bar = monitoring.max_psi
    partitions_def = partitions_definition(declaration.partitions)

    def month_of(partition: str) -> int:
        return partitions_def.time_window_for_partition_key(partition).start.month

    @dg.asset(
        key=key,
        description=(
            f"Each {declaration.name} model feature's population stability index (PSI) in the "
            "partition against the training set's train split, with a readable report."
        ),
        kinds={"pandas", "parquet"},
        ins={
            "features": dg.AssetIn(asset_key(declaration, model.features_asset)),
            "training_set": dg.AssetIn(asset_key(declaration, "training_set")),
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
        by_reference = watched(model.categorical, model.numeric, monitoring)
        whole = references(train, *by_reference["training"], monitoring.drift_bins)
        row_months = train[PARTITION_COLUMN].map(month_of)
        seasonal: dict[int, list] = {}
        frames, checks = {}, {}
        for partition in context.partition_keys:
            month = month_of(partition)
            if month not in seasonal:
                rows = train[row_months == month]
                seasonal[month] = (
                    references(rows, *by_reference["same_season"], monitoring.drift_bins)
                    if len(rows)
                    else []
                )
            table = drift_table([*whole, *seasonal[month]], features[partition])
            table.insert(
                1,
                "reference",
                table["feature"].map(
                    lambda f, m=month: (
                        f"train split, month {m}"
                        if monitoring.drift_reference_of(f) == "same_season"
                        else "train split"
                    )
                ),
            )
            unwatched = _unwatched(by_reference, seasonal[month], month)
            frames[partition] = table
            drifted = table[table["psi"] > bar]
            max_psi = float(table["psi"].max()) if len(table) else 0.0
            psi = dict(zip(table["feature"], table["psi"].round(6), strict=True))
            context.add_asset_metadata(
                {
                    "max_psi": max_psi,
                    "drifted_features": len(drifted),
                    "rows": len(features[partition]),
                    "unwatched": unwatched or "none",
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
                {"max_psi": max_psi, "drifted": listed or "none",
                 "bar": bar, "training_rows": len(train)},
                dg.AssetCheckSeverity.WARN,
            )  # fmt: skip
        yield dg.Output(frames, metadata={"training_rows": len(train)})
        yield from report_per_partition(context, key, FEATURE_DRIFT_CHECK, checks)

    return feature_drift


def watched(
    categorical: Sequence[str], numeric: Sequence[str], monitoring: Monitoring
) -> dict[str, tuple[list[str], list[str]]]:
    """The (categorical, numeric) features compared with each declared kind of reference."""
    return {
        kind: (
            [f for f in categorical if monitoring.drift_reference_of(f) == kind],
            [f for f in numeric if monitoring.drift_reference_of(f) == kind],
        )
        for kind in ("training", "same_season", "none")
    }


def _unwatched(
    by_reference: Mapping[str, tuple[list[str], list[str]]], seasonal: Sequence, month: int
) -> str:
    """What the partition's table leaves out, and why (for its metadata)."""
    none, same = ([f for group in by_reference[k] for f in group] for k in ("none", "same_season"))
    parts = [f"{', '.join(none)} (declared unwatched)"] if none else []
    if same and not seasonal:
        parts.append(f"{', '.join(same)} (the train split has no rows of month {month})")
    return "; ".join(parts)
