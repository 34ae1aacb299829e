"""``hyperparameter_study``: an Optuna study over the declared search space."""

import dagster as dg
import pandas as pd

from ml_assets.automation import follow_upstream
from ml_assets.home import ml_assets_home
from ml_assets.modeling.layer import SPLIT_COLUMN, ModelLayer
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
            f"parameters): seeded TPE, median pruning on validation {metric}, parallel workers."
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
        from ml_assets.modeling.study import StudySettings, run_study
        from ml_assets.modeling.tracking_logs import log_study

        base_name = f"{layer.declaration.prefix}-{model.registered_model_name}"
        study_name = base_name if config.resume else f"{base_name}-{context.run.run_id[:8]}"
        settings = StudySettings(
            study_name=study_name,
            storage=optuna_storage.for_study(study_name),
            n_trials=config.n_trials,
            timeout_seconds=config.timeout_seconds,
            workers=config.workers,
            seed=config.seed,
            n_startup_trials=config.pruner_startup_trials,
            n_warmup_steps=config.pruner_warmup_steps,
        )
        train = training_set[training_set[SPLIT_COLUMN] == "train"]
        sample = train.sample(n=min(len(train), config.sample_rows), random_state=settings.seed)
        data = pd.concat([sample, training_set[training_set[SPLIT_COLUMN] == "validation"]])
        scratch = ml_assets_home() / "tmp"
        study, numbers = run_study(
            settings,
            model.search_space,
            layer.features,
            data[[*model.features, model.target, SPLIT_COLUMN]],
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
                "mlflow_run_id": logged.run_id,
            },
            metadata={
                f"best_value (validation {metric})": study.best_value,
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

    return hyperparameter_study
