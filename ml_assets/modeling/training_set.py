"""``training_set``: feature rows of the training window, split by partition."""

import dagster as dg
import pandas as pd

from ml_assets.automation import retrain_on_schedule
from ml_assets.modeling.layer import PARTITION_COLUMN, SPLIT_COLUMN, ModelLayer
from ml_assets.monitoring import LIVE_PERFORMANCE_CHECK


def split_by_partition(
    frame: pd.DataFrame, validation: int, test: int, min_train: int = 1
) -> pd.Series:
    """Label rows train / validation / test by partition: the last ``test`` partitions are
    test, the ``validation`` before them validation, the rest (at least ``min_train``) train,
    so validation and test are strictly after train."""
    partitions = sorted(frame[PARTITION_COLUMN].unique())
    if len(partitions) < validation + test + min_train:
        raise ValueError(
            f"{len(partitions)} feature partitions cannot hold {validation} validation and "
            f"{test} test partitions after {min_train} training partitions"
        )
    test_start = partitions[-test]
    validation_start = partitions[-(test + validation)]
    labels = pd.Series("train", index=frame.index)
    labels[frame[PARTITION_COLUMN] >= validation_start] = "validation"
    labels[frame[PARTITION_COLUMN] >= test_start] = "test"
    return labels


def _schema(layer: ModelLayer) -> dict[str, dg.TableSchema]:
    extra = [
        dg.TableColumn(PARTITION_COLUMN, "string", "The feature partition of the row."),
        dg.TableColumn(SPLIT_COLUMN, "string", "train, validation or test, by partition."),
    ]
    return {
        "dagster/column_schema": dg.TableSchema(columns=[*layer.features_schema.columns, *extra])
    }


def build(layer: ModelLayer) -> dg.AssetsDefinition:
    model = layer.model
    TrainingConfig = layer.training_config

    @dg.asset(
        key=layer.key("training_set"),
        description=(
            "Feature rows of the training window with a known target, split by partition into "
            "train, validation and test (validation and test strictly after train)."
        ),
        kinds={"pandas", "parquet"},
        ins={
            "features": dg.AssetIn(
                layer.features_asset,
                partition_mapping=dg.AllPartitionMapping(),
                metadata={"allow_missing_partitions": True},
            )
        },
        automation_condition=retrain_on_schedule(
            model.retrain_cron,
            layer.features_asset,
            model.first_training_partitions,
            (model.training.window_start, model.training.window_end),
            dg.AssetCheckKey(layer.key("live_performance"), LIVE_PERFORMANCE_CHECK),
        ),
        metadata=_schema(layer),
        **layer.common(),
    )
    def training_set(
        config: TrainingConfig, features: dict[str, pd.DataFrame]
    ) -> dg.Output[pd.DataFrame]:
        start, end = config.window_start, config.window_end
        keys = sorted(k for k in features if start <= k <= end)
        if not keys:
            raise dg.Failure(
                f"No {layer.features_asset.to_user_string()} partitions in {start}…{end}"
            )
        frame = pd.concat(
            [features[k].assign(**{PARTITION_COLUMN: k}) for k in keys], ignore_index=True
        )
        frame = frame[frame[model.target].notna()].reset_index(drop=True)
        if model.task == "binary_classification":
            labels = set(frame[model.target].unique())
            if not labels <= {0, 1}:
                raise dg.Failure(
                    f"The target {model.target!r} of a binary classifier must be 0 or 1; "
                    f"found {sorted(map(str, labels))[:10]}"
                )
        try:
            frame[SPLIT_COLUMN] = split_by_partition(
                frame,
                config.validation_partitions,
                config.test_partitions,
                config.min_train_partitions,
            )
        except ValueError as error:
            raise dg.Failure(f"Cannot split the training window {start}…{end}: {error}") from error
        bounds = frame.groupby(SPLIT_COLUMN)[PARTITION_COLUMN].agg(["min", "max", "count"])
        return dg.Output(
            frame,
            metadata={
                "dagster/row_count": len(frame),
                "splits": dg.MetadataValue.md(
                    bounds.rename(columns={"count": "rows"}).to_markdown()
                ),
                **{f"rows/{s}": int(n) for s, n in bounds["count"].items()},
                "feature_partitions": f"{keys[0]}…{keys[-1]} ({len(keys)} partitions)",
                "window": f"{start}…{end}",
                **(
                    {"positive_rate": float(frame[model.target].mean())}
                    if model.task == "binary_classification"
                    else {}
                ),
            },
        )

    return training_set
