"""The model layer as assets: training set → study → trained model → evaluation → registry.

Built from a pipeline's ``ModelSpec`` (feature asset, columns, target, declared settings), so a
second pipeline gets the same layer from its own configuration. Dagster keeps small JSON
handles; MLflow keeps runs, models and the registry, Optuna keeps the study.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pandas as pd

from ml_assets.home import ml_assets_home
from ml_assets.modeling.estimators import Features

MODELS = "models"
BEATS_BASELINE = "beats_baseline"
NOT_WORSE_THAN_CHAMPION = "not_worse_than_champion"
CHALLENGER, CHAMPION = "challenger", "champion"
PARTITION_COLUMN = "feature_partition"
SPLIT_COLUMN = "split"
CODE_VERSION = "1"


@dataclass(frozen=True)
class ModelSpec:
    """What the model layer needs to know about a pipeline."""

    key_prefix: str
    features_asset: dg.AssetKey
    features: Features
    target: str
    baseline_column: str
    """A naive prediction already among the features (e.g. the route's trailing mean)."""
    error_by: str
    """A feature to break the test error down by in the evaluation plots (e.g. hour of day)."""
    settings: Mapping[str, Any]
    """The pipeline's declared model configuration (``model.yaml``)."""
    owners: list[str] = field(default_factory=list)
    features_schema: dg.TableSchema | None = None
    """Column schema of the feature asset, shown on the training set with its extra columns."""

    def key(self, name: str) -> dg.AssetKey:
        return dg.AssetKey([self.key_prefix, name])

    @property
    def columns(self) -> list[str]:
        return [*self.features.categorical, *self.features.numeric]


class TrainingWindow(dg.Config):
    """Which feature partitions to train on; unset fields take the pipeline's declared window."""

    window_start: str | None = None
    window_end: str | None = None
    validation_days: int | None = None
    test_days: int | None = None


class TuningConfig(dg.Config):
    """Overrides of the declared tuning settings for one materialization."""

    n_trials: int | None = None
    timeout_seconds: float | None = None
    workers: int | None = None
    resume: bool | None = None
    storage: str | None = None
    """An Optuna storage URL; default: a journal file under ``$ML_ASSETS_HOME/optuna``."""


class AcceptanceConfig(dg.Config):
    """Overrides of the declared bars a model must clear to be registered."""

    min_improvement_over_baseline: float | None = None
    max_regression_vs_champion: float | None = None


def _pick(override: Any, declared: Any) -> Any:
    return declared if override is None else override


def split_by_day(frame: pd.DataFrame, validation_days: int, test_days: int) -> pd.Series:
    """Label rows train / validation / test by day: the last days are test, those before
    validation, the rest train, so validation and test are strictly after train."""
    days = sorted(frame[PARTITION_COLUMN].unique())
    if len(days) <= validation_days + test_days:
        raise ValueError(
            f"{len(days)} days of features cannot hold {validation_days} validation and "
            f"{test_days} test days plus a training period"
        )
    test_start = days[-test_days]
    validation_start = days[-(test_days + validation_days)]
    labels = pd.Series("train", index=frame.index)
    labels[frame[PARTITION_COLUMN] >= validation_start] = "validation"
    labels[frame[PARTITION_COLUMN] >= test_start] = "test"
    return labels


def retrain_on_schedule(cron: str) -> dg.AutomationCondition:
    """Retrain when the cron ticks or the code changes, never while features are being written."""
    condition = dg.AutomationCondition
    return (
        (condition.cron_tick_passed(cron) | condition.code_version_changed()).since_last_handled()
        & ~condition.in_progress()
        & ~condition.any_deps_in_progress()
    ).with_label(f"retrain_on_schedule({cron})")


def follow_upstream() -> dg.AutomationCondition:
    """Run after an upstream model asset updates, once its blocking checks pass."""
    condition = dg.AutomationCondition
    return (
        (condition.any_deps_updated() | condition.code_version_changed()).since_last_handled()
        & ~condition.any_deps_missing()
        & ~condition.any_deps_in_progress()
        & ~condition.in_progress()
        & condition.all_deps_blocking_checks_passed()
    ).with_label("follow_upstream")


def build_model_assets(spec: ModelSpec) -> list[dg.AssetsDefinition]:
    """The five model-layer assets of ``spec``'s pipeline, with their blocking checks."""
    common = {
        "group_name": MODELS,
        "code_version": CODE_VERSION,
        "owners": spec.owners,
    }
    training = spec.settings["training"]
    tuning = spec.settings["tuning"]
    acceptance = spec.settings["acceptance"]
    model_name = spec.settings["registered_model_name"]

    @dg.asset(
        key=spec.key("training_set"),
        description=(
            "Feature rows of the training window with a known target, split by day into train, "
            "validation and test (validation and test strictly after train)."
        ),
        kinds={"pandas", "parquet"},
        ins={
            "features": dg.AssetIn(
                spec.features_asset,
                partition_mapping=dg.AllPartitionMapping(),
                metadata={"allow_missing_partitions": True},
            )
        },
        automation_condition=retrain_on_schedule(spec.settings["retrain_cron"]),
        metadata=_training_set_schema(spec.features_schema),
        **common,
    )
    def training_set(
        context: dg.AssetExecutionContext, config: TrainingWindow, features: dict[str, pd.DataFrame]
    ) -> dg.Output[pd.DataFrame]:
        start = _pick(config.window_start, training["window_start"])
        end = _pick(config.window_end, training["window_end"])
        keys = sorted(k for k in features if start <= k <= end)
        if not keys:
            raise dg.Failure(
                f"No {spec.features_asset.to_user_string()} partitions in {start}…{end}"
            )
        frame = pd.concat(
            [features[k].assign(**{PARTITION_COLUMN: k}) for k in keys], ignore_index=True
        )
        frame = frame[frame[spec.target].notna()].reset_index(drop=True)
        frame[SPLIT_COLUMN] = split_by_day(
            frame,
            _pick(config.validation_days, training["validation_days"]),
            _pick(config.test_days, training["test_days"]),
        )
        bounds = frame.groupby(SPLIT_COLUMN)[PARTITION_COLUMN].agg(["min", "max", "count"])
        return dg.Output(
            frame,
            metadata={
                "dagster/row_count": len(frame),
                "splits": dg.MetadataValue.md(
                    bounds.rename(columns={"count": "rows"}).to_markdown()
                ),
                **{f"rows/{s}": int(n) for s, n in bounds["count"].items()},
                "feature_partitions": f"{keys[0]}…{keys[-1]} ({len(keys)} days)",
                "window": f"{start}…{end}",
            },
        )

    @dg.asset(
        key=spec.key("hyperparameter_study"),
        description=(
            "An Optuna study over the declared search space (model families and their "
            "parameters): seeded TPE, median pruning on validation MAE, parallel workers."
        ),
        kinds={"optuna", "mlflow"},
        ins={"training_set": dg.AssetIn(spec.key("training_set"))},
        io_manager_key="json_io_manager",
        required_resource_keys={"mlflow"},
        automation_condition=follow_upstream(),
        **common,
    )
    def hyperparameter_study(
        context: dg.AssetExecutionContext, config: TuningConfig, training_set: pd.DataFrame
    ) -> dg.Output[dict]:
        from ml_assets.modeling.study import StudySettings, run_study
        from ml_assets.modeling.tracking_logs import log_study

        resume = _pick(config.resume, tuning["resume"])
        base_name = f"{spec.key_prefix}-{model_name}"
        settings = StudySettings(
            study_name=base_name if resume else f"{base_name}-{context.run.run_id[:8]}",
            storage=_pick(config.storage, tuning.get("storage"))
            or str(ml_assets_home() / "optuna" / f"{base_name}.journal"),
            n_trials=_pick(config.n_trials, tuning["n_trials"]),
            timeout_seconds=_pick(config.timeout_seconds, tuning["timeout_seconds"]),
            workers=_pick(config.workers, tuning["workers"]),
            seed=tuning["seed"],
            n_startup_trials=tuning["pruner"]["n_startup_trials"],
            n_warmup_steps=tuning["pruner"]["n_warmup_steps"],
        )
        train = training_set[training_set[SPLIT_COLUMN] == "train"]
        sample = train.sample(
            n=min(len(train), training["tuning_sample_rows"]), random_state=settings.seed
        )
        data = pd.concat([sample, training_set[training_set[SPLIT_COLUMN] == "validation"]])
        study, numbers = run_study(
            settings,
            spec.settings["search_space"],
            spec.features,
            data[[*spec.columns, spec.target, SPLIT_COLUMN]],
            spec.target,
            scratch=ml_assets_home() / "tmp",
        )
        logged = log_study(context.resources.mlflow, study, numbers, ml_assets_home() / "tmp")
        return dg.Output(
            {
                "study_name": settings.study_name,
                "storage": settings.storage,
                "best_params": study.best_params,
                "best_value": study.best_value,
                "best_trial": study.best_trial.number,
                "mlflow_run_id": logged.run_id,
            },
            metadata={
                "best_value (validation MAE)": study.best_value,
                "best_params": study.best_params,
                "trials_completed": logged.completed,
                "trials_pruned": logged.pruned,
                "trials_this_run": len(numbers),
                "trials_in_study": len(study.trials),
                "study": settings.study_name,
                "mlflow_run_id": logged.run_id,
                **logged.plots,
            },
        )

    @dg.asset(
        key=spec.key("trained_model"),
        description="The study's best configuration refit on train + validation, in MLflow.",
        kinds={"scikitlearn", "mlflow"},
        ins={
            "training_set": dg.AssetIn(spec.key("training_set")),
            "hyperparameter_study": dg.AssetIn(spec.key("hyperparameter_study")),
        },
        io_manager_key="json_io_manager",
        required_resource_keys={"mlflow"},
        automation_condition=follow_upstream(),
        **common,
    )
    def trained_model(
        context: dg.AssetExecutionContext, training_set: pd.DataFrame, hyperparameter_study: dict
    ) -> dg.Output[dict]:
        from ml_assets.modeling.tracking_logs import log_fitted_model

        fit_rows = training_set[training_set[SPLIT_COLUMN] != "test"]
        handle = log_fitted_model(
            spec, hyperparameter_study["best_params"], fit_rows, context.resources.mlflow
        )
        handle["feature_partitions"] = (
            f"{training_set[PARTITION_COLUMN].min()}…{training_set[PARTITION_COLUMN].max()}"
        )
        return dg.Output(
            handle,
            metadata={
                "family": handle["family"],
                "params": handle["params"],
                "mlflow_run_id": handle["run_id"],
                "model_uri": handle["model_uri"],
                "trained_rows": handle["trained_rows"],
                "skops_trusted_types": handle["skops_trusted_types"],
                "onnx": handle["onnx"],
            },
        )

    @dg.asset(
        key=spec.key("model_evaluation"),
        description=(
            "Test-set MAE, RMSE and R² of the model, the naive baseline and the current "
            "champion, with plots; blocking checks gate registration."
        ),
        kinds={"scikitlearn", "mlflow"},
        ins={
            "training_set": dg.AssetIn(spec.key("training_set")),
            "trained_model": dg.AssetIn(spec.key("trained_model")),
        },
        io_manager_key="json_io_manager",
        required_resource_keys={"mlflow"},
        check_specs=[
            dg.AssetCheckSpec(
                BEATS_BASELINE,
                asset=spec.key("model_evaluation"),
                blocking=True,
                description="Test MAE beats the naive baseline by the declared margin.",
            ),
            dg.AssetCheckSpec(
                NOT_WORSE_THAN_CHAMPION,
                asset=spec.key("model_evaluation"),
                blocking=True,
                description="Test MAE is not worse than the champion's (passes with none).",
            ),
        ],
        automation_condition=follow_upstream(),
        **common,
    )
    def model_evaluation(
        context: dg.AssetExecutionContext,
        config: AcceptanceConfig,
        training_set: pd.DataFrame,
        trained_model: dict,
    ) -> Iterator:
        from ml_assets.modeling.evaluation import evaluate

        test = training_set[training_set[SPLIT_COLUMN] == "test"]
        train_mean = float(
            training_set.loc[training_set[SPLIT_COLUMN] == "train", spec.target].mean()
        )
        result = evaluate(
            spec, trained_model, test, train_mean, model_name, ml_assets_home() / "tmp"
        )
        margin = _pick(
            config.min_improvement_over_baseline, acceptance["min_improvement_over_baseline"]
        )
        regression = _pick(
            config.max_regression_vs_champion, acceptance["max_regression_vs_champion"]
        )
        model_mae, baseline_mae = result.metrics["model"]["mae"], result.metrics["baseline"]["mae"]
        yield dg.Output(
            {"metrics": result.metrics, "model_uri": trained_model["model_uri"]},
            metadata={"metrics": dg.MetadataValue.md(result.table), **result.plots},
        )
        bar = baseline_mae * (1 - margin)
        yield dg.AssetCheckResult(
            check_name=BEATS_BASELINE,
            passed=model_mae <= bar,
            description=(
                f"model MAE {model_mae:.2f} vs bar {bar:.2f} "
                f"(baseline {baseline_mae:.2f} minus {margin:.0%})"
            ),
            metadata={"model_mae": model_mae, "baseline_mae": baseline_mae, "bar": bar},
        )
        champion = result.metrics.get("champion")
        if champion is None:
            yield dg.AssetCheckResult(
                check_name=NOT_WORSE_THAN_CHAMPION, passed=True, description="no champion yet"
            )
        else:
            limit = champion["mae"] * (1 + regression)
            yield dg.AssetCheckResult(
                check_name=NOT_WORSE_THAN_CHAMPION,
                passed=model_mae <= limit,
                description=f"model MAE {model_mae:.2f} vs champion {champion['mae']:.2f}",
                metadata={
                    "model_mae": model_mae,
                    "champion_mae": champion["mae"],
                    "limit": limit,
                    "champion_version": result.champion_version,
                },
            )

    @dg.asset(
        key=spec.key("registered_model"),
        description=f"A new version of {model_name} in the MLflow registry, aliased challenger.",
        kinds={"mlflow"},
        ins={
            "trained_model": dg.AssetIn(spec.key("trained_model")),
            "model_evaluation": dg.AssetIn(spec.key("model_evaluation")),
        },
        io_manager_key="json_io_manager",
        required_resource_keys={"mlflow"},
        automation_condition=follow_upstream(),
        **common,
    )
    def registered_model(
        context: dg.AssetExecutionContext, trained_model: dict, model_evaluation: dict
    ) -> dg.Output[dict]:
        from ml_assets.modeling.tracking_logs import register

        code_versions = {
            key.to_user_string(): _materialized_code_version(context.instance, key)
            for key in (spec.features_asset, *(spec.key(n) for n in MODEL_ASSET_NAMES[:-1]))
        }
        code_versions[context.asset_key.to_user_string()] = CODE_VERSION
        tags = {
            "dagster_run_id": context.run.run_id,
            "feature_partitions": trained_model["feature_partitions"],
            "model_family": trained_model["family"],
            "test_mae": f"{model_evaluation['metrics']['model']['mae']:.4f}",
            **{f"code_version/{k}": str(v) for k, v in code_versions.items()},
        }
        version = register(model_name, trained_model["model_uri"], tags, CHALLENGER)
        return dg.Output(
            {"name": model_name, "version": version, "alias": CHALLENGER, "tags": tags},
            metadata={"model": model_name, "version": version, "alias": CHALLENGER, **tags},
        )

    return [training_set, hyperparameter_study, trained_model, model_evaluation, registered_model]


def _training_set_schema(features: dg.TableSchema | None) -> dict[str, dg.TableSchema]:
    if features is None:
        return {}
    extra = [
        dg.TableColumn(PARTITION_COLUMN, "string", "The feature partition (day) of the row."),
        dg.TableColumn(SPLIT_COLUMN, "string", "train, validation or test, by day."),
    ]
    return {"dagster/column_schema": dg.TableSchema(columns=[*features.columns, *extra])}


def _materialized_code_version(instance: dg.DagsterInstance, key: dg.AssetKey) -> str:
    """The code version the latest materialization of ``key`` was made with."""
    event = instance.get_latest_materialization_event(key)
    materialization = event.asset_materialization if event else None
    return (
        (materialization.tags or {}).get("dagster/code_version", "unknown")
        if materialization
        else "unknown"
    )


MODEL_ASSET_NAMES = (
    "training_set", "hyperparameter_study", "trained_model", "model_evaluation", "registered_model",
)  # fmt: skip
