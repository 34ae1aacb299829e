"""The deploy layer as assets: ``deployed_endpoint`` and ``batch_predictions``.

``deployed_endpoint`` puts the newly registered version live. The first version becomes the
champion at once; a later one starts its staged rollout beside the champion (in shadow, as
``rollout`` declares: ``staged_rollout``; the rollout sensor takes it on to the canary and to
full, or back). Either way the running service loads it and is smoke-tested on it: its
predictions for held-out rows must equal the registered model's (scikit-learn, loaded from the
registry) and single requests must answer within the latency budget. On any failure the
service is put back as it was and the step fails saying what went wrong, so a bad model never
serves.
"""

from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from ml_assets.automation import deploy_new_registrations, refresh_stale_partitions
from ml_assets.contract.declaration import ModelDeclaration, PipelineDeclaration
from ml_assets.contract.names import FULL
from ml_assets.contract.overrides import declared_defaults
from ml_assets.contract.pipeline import ServingHooks
from ml_assets.deployment import registry, staged_rollout
from ml_assets.deployment.endpoint import PredictionServices, ServingEndpoint
from ml_assets.deployment.rollout import undone_on_failure
from ml_assets.home import warehouse_url
from ml_assets.modeling.estimators import Features, model_inputs
from resources.mlflow_tracking import MlflowTracking
from resources.parquet_io_manager import read_partition
from serving.spec import score_field

DEPLOY = "deploy"
CODE_VERSION = "1"


class SmokeTestFailed(Exception):
    pass


def batch_schema(declaration: PipelineDeclaration, features: dg.TableSchema) -> dg.TableSchema:
    """The columns of ``batch_predictions``: the declared feature columns, the prediction and
    the version that made it."""
    by_name = {column.name: column for column in features.columns}
    prediction = declaration.serving.prediction
    if declaration.model.task == "binary_classification":
        scored = [
            dg.TableColumn(f"{prediction}_probability", "float64",
                           f"The champion's probability that {prediction} is 1."),
            dg.TableColumn(f"predicted_{prediction}", "bool",
                           "The champion's decision at its threshold chosen on validation."),
        ]  # fmt: skip
    else:
        scored = [
            dg.TableColumn(f"predicted_{prediction}", "float64", f"The champion's {prediction}.")
        ]
    return dg.TableSchema(
        columns=[
            *(by_name[c] for c in declaration.serving.batch_columns),
            *scored,
            dg.TableColumn("model_version", "string", "Registry version of the champion."),
        ]
    )


def build_deployment_assets(
    declaration: PipelineDeclaration, hooks: ServingHooks, features_schema: dg.TableSchema
) -> list[dg.AssetsDefinition]:
    """``deployed_endpoint`` and ``batch_predictions`` of ``declaration``'s pipeline."""
    model = declaration.model
    name = model.registered_model_name
    inputs = model_inputs(declaration)
    DeployConfig = declared_defaults(
        declaration.deploy, f"{declaration.prefix.title().replace('_', '')}Deploy"
    )
    common = {
        "group_name": f"{declaration.prefix}_{DEPLOY}",
        "code_version": CODE_VERSION,
        "owners": declaration.owners,
    }

    @dg.asset(
        key=declaration.key("deployed_endpoint"),
        description=(
            f"The live prediction endpoint of {declaration.name}: the registered version is "
            "loaded and smoke-tested (parity with the registry, latency budget), as the first "
            "champion or in a staged rollout beside the champion (shadow, canary, full; the "
            "rollout sensor decides on its live figures); undone when any step fails."
        ),
        kinds={"fastapi", "mlflow"},
        ins={"registered_model": dg.AssetIn(declaration.key("registered_model"))},
        io_manager_key="json_io_manager",
        automation_condition=deploy_new_registrations(),
        **common,
    )
    def deployed_endpoint(
        context: dg.AssetExecutionContext,
        config: DeployConfig,
        mlflow: MlflowTracking,
        prediction_services: PredictionServices,
        registered_model: dict,
    ) -> dg.Output[dict]:
        mlflow.use()
        endpoint = prediction_services.endpoint(declaration.name)
        version = str(registered_model["version"])
        endpoint.ensure_running(context.log)
        champion = registry.aliases(name).champion
        staged = config.staged and champion not in (None, version)
        if staged and staged_rollout.first_stage(declaration.rollout) != FULL:
            stage = staged_rollout.start(endpoint, name, version, declaration.rollout)
            served = endpoint.describe() or {}
            context.log.info(f"{name}: v{version} in {stage} beside champion v{champion}")
            try:
                smoke = _smoke_test(declaration, hooks, inputs, endpoint, served, config, version)
            except Exception as error:
                reason = f"{type(error).__name__}: {error}"
                staged_rollout.take_out(endpoint, name, version, reason)
                raise dg.Failure(
                    f"The {stage} of {name} v{version} failed its smoke test and was rolled "
                    f"back: {reason}. The service serves v{champion} alone."
                ) from error
            previous = champion
        else:
            before = registry.promote(name, version)
            previous, stage = before.champion, FULL
            context.log.info(f"{name}: champion v{version} (previous: v{previous})")
            with undone_on_failure(
                endpoint, name, before, version, f"Deploying {name} v{version}", context.log
            ):
                served = endpoint.reload_champion(version)
                smoke = _smoke_test(declaration, hooks, inputs, endpoint, served, config, version)
            registry.set_stage(name, version, FULL)
        handle = {
            "name": name,
            "version": version,
            "previous_version": previous,
            "stage": stage,
            "url": endpoint.url,
            "predictor": served["predictor"],
            "snapshot": served.get("snapshot"),
            "smoke_test": smoke,
        }
        return dg.Output(
            handle,
            metadata={
                "url": dg.MetadataValue.url(endpoint.url),
                "version": version,
                "previous_version": str(previous),
                "rollout/stage": stage,
                "champion": version if stage == FULL else str(champion),
                "predictor": served["predictor"],
                "snapshot": str(served.get("snapshot")),
                **{f"smoke/{k}": v for k, v in smoke.items()},
            },
        )

    prediction = declaration.serving.prediction

    @dg.asset(
        key=declaration.key("batch_predictions"),
        description=(
            f"The champion's {prediction} for every row of each {model.features_asset} "
            "partition, with the model version on every row; rescored when the features or "
            "the champion change."
        ),
        kinds={"pandas", "parquet"},
        ins={"features": dg.AssetIn(declaration.key(model.features_asset))},
        deps=[declaration.key("deployed_endpoint")],
        partitions_def=declaration.partitions.definition(),
        backfill_policy=dg.BackfillPolicy.single_run(),
        automation_condition=refresh_stale_partitions(),
        metadata={"dagster/column_schema": batch_schema(declaration, features_schema)},
        **common,
    )
    def batch_predictions(
        context: dg.AssetExecutionContext,
        mlflow: MlflowTracking,
        features: dict[str, pd.DataFrame],
    ) -> dg.Output[dict[str, pd.DataFrame]]:
        from serving.predictors import load_version, resolve_alias

        mlflow.use()
        version = resolve_alias(name, registry.CHAMPION)
        loaded = load_version(name, version, inputs, model.task)
        scored = {}
        for key in context.partition_keys:
            rows = features[key]
            frame = rows.loc[:, list(declaration.serving.batch_columns)].reset_index(drop=True)
            values = loaded.predictor.predict({c: rows[c].to_numpy() for c in rows.columns})
            if model.task == "binary_classification":
                frame[f"{prediction}_probability"] = values
                frame[f"predicted_{prediction}"] = values >= loaded.threshold
            else:
                frame[f"predicted_{prediction}"] = values
            frame["model_version"] = version
            scored[key] = frame
        return dg.Output(
            scored,
            metadata={"model_version": version, "predictor": loaded.predictor.kind},
        )

    return [deployed_endpoint, batch_predictions]


def _smoke_test(
    declaration: PipelineDeclaration,
    hooks: ServingHooks,
    features: Features,
    endpoint: ServingEndpoint,
    served: dict,
    config: Any,
    version: str,
) -> dict[str, Any]:
    """Compare the endpoint's answers from ``version`` (the champion, or the challenger beside
    it) with the registered model on rows of the served partition (the snapshot's, or the
    latest feature partition): a sample of the requests a caller would send for that
    partition, each answer matched to its feature row by the id the service answers with
    (``model.id_column``), so requests and feature rows need not line up."""
    from serving.predictors import load_version

    model = declaration.model
    partition = served.get("snapshot") or _latest_partition(declaration)
    requests = read_partition(
        warehouse_url(), declaration.key(declaration.serving.requests_asset), partition
    )
    rows = read_partition(warehouse_url(), declaration.key(model.features_asset), partition)
    items = hooks.request_items(requests)
    picked = np.random.default_rng(0).permutation(len(items))[: config.smoke_rows]
    chosen = [items[i] for i in sorted(picked)]

    answer, _ = endpoint.predict(chosen, version)
    versions = {answer["model_version"]}
    sample = _feature_rows(rows, [p[model.id_column] for p in answer["predictions"]], model)
    field = score_field(model.task, declaration.serving.prediction)
    live = np.array([p[field] for p in answer["predictions"]], dtype="float64")
    reference = load_version(
        model.registered_model_name, version, features, model.task, prefer_onnx=False
    )
    expected = reference.predictor.predict({c: sample[c].to_numpy() for c in sample.columns})
    difference = float(np.max(np.abs(live - expected), initial=0.0))
    latencies = np.array(endpoint.latencies(chosen[: config.latency_requests], version)) * 1000
    p50, p95 = (float(np.percentile(latencies, q)) for q in (50, 95))
    result = {
        "rows": len(chosen),
        "partition": partition,
        "max_abs_difference": difference,
        "latency_p50_ms": round(p50, 3),
        "latency_p95_ms": round(p95, 3),
    }
    if versions != {version}:
        raise SmokeTestFailed(f"answers came from versions {versions}, not {version}")
    if difference > config.tolerance:
        raise SmokeTestFailed(
            f"live predictions differ from the registered model's by up to {difference:.4g} "
            f"(tolerance {config.tolerance})"
        )
    if p95 > config.latency_budget_ms:
        raise SmokeTestFailed(
            f"p95 latency {p95:.1f} ms is over the budget of {config.latency_budget_ms} ms"
        )
    return result


def _feature_rows(rows: pd.DataFrame, ids: list[str], model: ModelDeclaration) -> pd.DataFrame:
    """The feature rows of ``ids`` (as the service answers them: text), in that order."""
    by_id = rows.set_index(rows[model.id_column].astype(str))
    if not by_id.index.is_unique:
        raise SmokeTestFailed(f"{model.features_asset} repeats ids of {model.id_column}")
    unknown = [i for i in ids if i not in by_id.index]
    if unknown:
        raise SmokeTestFailed(
            f"the service answered {len(unknown)} {model.id_column}s that no "
            f"{model.features_asset} row has (first: {unknown[:3]})"
        )
    return by_id.loc[ids].reset_index(drop=True)


def _latest_partition(declaration: PipelineDeclaration) -> str:
    """The newest stored partition of the features asset."""
    from resources.paths import to_upath

    folder = to_upath(warehouse_url()).joinpath(
        *declaration.key(declaration.model.features_asset).path
    )
    stored = sorted(
        p.name.removesuffix(".parquet") for p in folder.iterdir() if p.name.endswith(".parquet")
    )
    if not stored:
        raise SmokeTestFailed(f"no {declaration.model.features_asset} partition is stored")
    return stored[-1]
