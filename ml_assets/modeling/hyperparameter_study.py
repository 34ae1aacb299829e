"""``hyperparameter_study``: an Optuna study over the declared search space."""

import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd

from ml_assets.automation import follow_upstream
from ml_assets.contract.dagster_terms import declared_section
from ml_assets.contract.declaration import ModelDeclaration, Tuning
from ml_assets.modeling.folds import Fold, fold_columns, rolling_folds
from ml_assets.modeling.layer import PARTITION_COLUMN, SPLIT_COLUMN, ModelLayer
from ml_assets.modeling.trials import FOLD_VALUES
from resources.mlflow_tracking import MlflowTracking
from resources.optuna_storage import OptunaStorage


def build(layer: ModelLayer) -> dg.AssetsDefinition:
    model = layer.model
    TuningConfig = layer.tuning_config
    metric = model.objective_metric

    @dg.asset(
        key=layer.key("hyperparameter_study"),
        description=(
            "An Optuna study over the declared search space (model families and their "
            f"parameters): seeded TPE, median pruning on validation {metric} (with "
            "cross-validation: its mean over the rolling folds), parallel workers."
        ),
        kinds={"optuna", "mlflow"},
        ins={"training_set": dg.AssetIn(layer.key("training_set"))},
        io_manager_key="json_io_manager",
        automation_condition=follow_upstream(),
        **layer.common(),
    )
    def hyperparameter_study(
        context: dg.AssetExecutionContext,
        config: TuningConfig,
        mlflow: MlflowTracking,
        optuna_storage: OptunaStorage,
        training_set: pd.DataFrame,
    ) -> dg.Output[dict]:
        from ml_assets.modeling.study import run_study
        from ml_assets.modeling.tracking_logs import log_study
        from ml_assets.modeling.trials import StudySettings

        tuning = declared_section(config, Tuning)
        base_name = f"{layer.declaration.prefix}-{model.registered_model_name}"
        study_name = base_name if tuning.resume else f"{base_name}-{context.run.run_id[:8]}"
        settings = StudySettings(
            study_name=study_name,
            storage=optuna_storage.for_study(study_name),
            n_trials=tuning.n_trials,
            timeout_seconds=tuning.timeout_seconds,
            workers=tuning.workers,
            seed=tuning.seed,
            n_startup_trials=tuning.pruner_startup_trials,
            n_warmup_steps=tuning.pruner_warmup_steps,
        )
        data, folds = study_data(training_set, tuning, model)
        # the training data for spawned workers and the plots before they are logged
        with tempfile.TemporaryDirectory(prefix="ml-assets-study-") as folder:
            scratch = Path(folder)
            study, numbers = run_study(
                settings,
                model.search_space,
                layer.features,
                data,
                model.target,
                model.task,
                metric,
                scratch=scratch,
            )
            with mlflow.dagster_run(context, model.experiment):
                logged = log_study(study, numbers, metric, scratch)
        return dg.Output(
            {
                "study_name": settings.study_name,
                "storage": settings.storage,
                "best_params": study.best_params,
                "best_value": study.best_value,
                "best_trial": study.best_trial.number,
                "best_fold_values": study.best_trial.user_attrs.get(FOLD_VALUES),
                "mlflow_run_id": logged.run_id,
            },
            metadata={
                f"best_value (validation {metric})": study.best_value,
                "best_params": study.best_params,
                "trials_completed": logged.completed,
                "trials_pruned": logged.pruned,
                "trials_this_run": len(numbers),
                "trials_in_study": len(study.trials),
                **_fold_metadata(study.best_trial, folds, metric),
                "study": settings.study_name,
                "mlflow_run_id": logged.run_id,
                **logged.plots,
            },
        )

    return hyperparameter_study


def study_data(
    training_set: pd.DataFrame, config: Tuning, model: ModelDeclaration
) -> tuple[pd.DataFrame, list[Fold]]:
    """What the trials fit and score: a sample of train (at most ``config.sample_rows`` rows)
    and the validation rows, labelled by ``split``; or, with cross-validation, every train and
    validation row labelled by each rolling fold (its train rows sampled likewise), and
    the folds."""
    columns = [*model.inputs, model.target]
    cv = config.cross_validation
    if cv is None:
        train = training_set[training_set[SPLIT_COLUMN] == "train"]
        sample = train.sample(n=min(len(train), config.sample_rows), random_state=config.seed)
        data = pd.concat([sample, training_set[training_set[SPLIT_COLUMN] == "validation"]])
        return data[[*columns, SPLIT_COLUMN]], []
    rows = training_set[training_set[SPLIT_COLUMN] != "test"]
    try:
        folds = rolling_folds(
            rows[PARTITION_COLUMN].unique(),
            cv.folds,
            cv.horizon_partitions,
            cv.gap_partitions,
            cv.window,
            cv.train_partitions or model.training.min_train_partitions,
        )
    except ValueError as error:
        raise dg.Failure(f"Cannot cross-validate on the training set: {error}") from error
    labels = fold_columns(rows[PARTITION_COLUMN], folds)
    for column in labels:  # each fold's train sampled as one split's would be
        train = labels.index[labels[column] == "train"]
        kept = train.to_series().sample(
            n=min(len(train), config.sample_rows), random_state=config.seed
        )
        labels.loc[train.difference(kept), column] = pd.NA
    data = pd.concat([rows[columns], labels], axis=1)
    return data, folds


def _fold_metadata(best, folds: list[Fold], metric: str) -> dict:
    """The folds' windows and the best trial's value on each (nothing without folds)."""
    if not folds:
        return {}
    values = best.user_attrs.get(FOLD_VALUES, [])
    table = pd.DataFrame(
        {
            "train": [f"{f.train[0]}…{f.train[-1]} ({len(f.train)})" for f in folds],
            "validation": [f"{f.validation[0]}…{f.validation[-1]}" for f in folds],
            f"best trial's {metric}": [*values, *[None] * (len(folds) - len(values))],
        }
    )
    return {
        "folds": dg.MetadataValue.md(table.rename_axis("fold").to_markdown()),
        **{f"fold_{n}/{metric}": float(v) for n, v in enumerate(values)},
    }
