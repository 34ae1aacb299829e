"""``training_set``: feature rows of the training window, split by partition."""

from datetime import date, timedelta

import dagster as dg
import pandas as pd

from ml_assets.automation import retrain_on_schedule
from ml_assets.contract.dagster_terms import declared_section
from ml_assets.contract.declaration import Training
from ml_assets.contract.names import LIVE_PERFORMANCE_CHECK
from ml_assets.modeling.layer import PARTITION_COLUMN, SPLIT_COLUMN, ModelLayer


def split_by_partition(
    frame: pd.DataFrame,
    validation: int,
    test: int,
    min_train: int = 1,
    gap: int = 0,
    horizon: int | None = None,
    horizon_days: int | None = None,
    kind: str = "daily",
) -> pd.Series:
    """Label rows train / validation / test by partition: the last ``test`` partitions are
    test, the ``validation`` before them validation, the rest (at least ``min_train``) train,
    so validation and test are strictly after train. ``gap`` partitions before validation and
    before test are labelled ``gap`` and used for nothing: what a forecast made at the end of
    train cannot know yet, so lagged targets do not leak across a boundary.

    A ``horizon`` (in partitions) or ``horizon_days`` (partition keys are their first days, of
    ``kind`` daily or monthly partitions) is how far past the data before it a model forecasts,
    so how far it may be scored: the last validation partition may reach at most that far past
    the last train partition, the last test partition past the last validation one."""
    partitions = sorted(frame[PARTITION_COLUMN].unique())
    if len(partitions) < validation + test + min_train + 2 * gap:
        raise ValueError(
            f"{len(partitions)} feature partitions cannot hold {validation} validation and "
            f"{test} test partitions after {min_train} training partitions"
            + (f", with a gap of {gap} before each" if gap else "")
        )
    bounds = {
        "test": partitions[-test],
        "gap before test": partitions[-(test + gap)] if gap else None,
        "validation": partitions[-(test + gap + validation)],
        "gap before validation": partitions[-(test + 2 * gap + validation)] if gap else None,
    }
    labels = pd.Series("train", index=frame.index)
    for label, start in reversed(bounds.items()):
        if start is not None:
            labels[frame[PARTITION_COLUMN] >= start] = "gap" if label.startswith("gap") else label
    if horizon is not None or horizon_days is not None:
        last = frame[PARTITION_COLUMN].groupby(labels).max()
        for window, before in (("validation", "train"), ("test", "validation")):
            reach = _reach(partitions, last[before], last[window], kind, horizon_days is not None)
            limit = horizon_days if horizon_days is not None else horizon
            if reach > limit:  # type: ignore[operator]
                unit = "days" if horizon_days is not None else "partitions"
                raise ValueError(
                    f"{window} reaches {reach} {unit} past {before}, beyond the horizon of "
                    f"{limit} {unit}"
                )
    return labels


def _reach(partitions: list[str], cutoff: str, key: str, kind: str, in_days: bool) -> int:
    """How far partition ``key`` reaches past partition ``cutoff``: in partitions, or in days
    from the last day of ``cutoff`` to the last day of ``key``."""
    if not in_days:
        return partitions.index(key) - partitions.index(cutoff)
    return (_last_day(key, kind) - _last_day(cutoff, kind)).days


def _last_day(key: str, kind: str) -> date:
    first = date.fromisoformat(key)
    if kind == "daily":
        return first
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return following - timedelta(days=1)


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
            "train, validation and test (validation and test strictly after train, each after "
            "the declared gap, within the declared horizon)."
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
        training = declared_section(config, Training)
        start, end = training.window_start, training.window_end
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
                training.validation_partitions,
                training.test_partitions,
                training.min_train_partitions,
                training.gap_partitions,
                training.horizon_partitions,
                training.horizon_days,
                layer.declaration.partitions.kind,
            )
        except ValueError as error:
            raise dg.Failure(f"Cannot split the training window {start}…{end}: {error}") from error
        frame = frame[frame[SPLIT_COLUMN] != "gap"].reset_index(drop=True)
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
