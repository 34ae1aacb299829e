"""The deploy layer as assets: ``deployed_endpoint`` (group ``deploy``) and ``batch_predictions``.

``deployed_endpoint`` makes the newly registered version the champion, has the running service
load it, and smoke-tests the live endpoint: its predictions for held-out flights must equal
the registered model's (scikit-learn, loaded from the registry) and single requests must
answer within the latency budget. On any failure the previous champion is restored and
reloaded and the step fails saying what went wrong, so a bad model never stays live.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from ml_assets.automation import refresh_stale_partitions
from ml_assets.deployment import registry
from ml_assets.deployment.endpoint import ServingEndpoint
from ml_assets.home import warehouse_url
from ml_assets.modeling.estimators import Features
from ml_assets.modeling.tracking import use_platform_store
from resources.parquet_io_manager import read_partition

DEPLOY = "deploy"
CODE_VERSION = "1"


@dataclass(frozen=True)
class DeploySpec:
    """What the deploy layer needs to know about a pipeline's served model."""

    key_prefix: str
    model_name: str
    features: Features
    registered_model: dg.AssetKey
    features_asset: dg.AssetKey
    """Feature rows: the smoke test's expected values and what batch predictions score."""
    requests_asset: dg.AssetKey
    """Rows a caller would send (e.g. the clean flights of a day)."""
    request_items: Callable[[pd.DataFrame], list[dict[str, Any]]]
    id_column: str
    prediction: str
    partitions_def: dg.PartitionsDefinition
    batch_columns: Sequence[str]
    """Feature-row columns copied into the batch predictions beside the prediction."""
    batch_schema: dg.TableSchema
    owners: list[str] = field(default_factory=list)

    def key(self, name: str) -> dg.AssetKey:
        return dg.AssetKey([self.key_prefix, name])


class SmokeTest(dg.Config):
    """How the live endpoint is verified after it loads a new champion."""

    rows: int = 200
    """Held-out flights (of the snapshot's day) compared with the registered model."""
    tolerance: float = 0.01
    """Largest accepted difference from the registered model's prediction (target units)."""
    latency_requests: int = 50
    latency_budget_ms: float = 50.0
    """Budget for the 95th percentile of single-flight request latency."""


class SmokeTestFailed(Exception):
    pass


def build_deployment_assets(spec: DeploySpec) -> list[dg.AssetsDefinition]:
    common = {"group_name": DEPLOY, "code_version": CODE_VERSION, "owners": spec.owners}

    @dg.asset(
        key=spec.key("deployed_endpoint"),
        description=(
            "The live prediction endpoint serving the registered model as champion: promoted, "
            "reloaded and smoke-tested (parity with the registry, latency budget); rolled back "
            "to the previous champion when any step fails."
        ),
        kinds={"fastapi", "mlflow"},
        ins={"registered_model": dg.AssetIn(spec.registered_model)},
        io_manager_key="json_io_manager",
        automation_condition=dg.AutomationCondition.eager(),
        **common,
    )
    def deployed_endpoint(
        context: dg.AssetExecutionContext,
        config: SmokeTest,
        endpoint: ServingEndpoint,
        registered_model: dict,
    ) -> dg.Output[dict]:
        use_platform_store()
        version = str(registered_model["version"])
        endpoint.ensure_running(context.log)
        before = registry.promote(spec.model_name, version)
        previous = before.champion
        context.log.info(f"{spec.model_name}: champion v{version} (previous: v{previous})")
        try:
            served = endpoint.reload()
            if served.get("version") != version:
                raise SmokeTestFailed(f"the service loaded {served.get('version')}, not {version}")
            smoke = _smoke_test(spec, endpoint, served, config)
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"
            registry.restore(spec.model_name, before, version, reason)
            restored = _reload_quietly(endpoint, context)
            raise dg.Failure(
                description=(
                    f"Deploying {spec.model_name} v{version} failed and was rolled back: "
                    f"{reason}. The service now serves {restored}."
                ),
                metadata={"failed_version": version, "restored_version": str(previous)},
            ) from error
        handle = {
            "name": spec.model_name,
            "version": version,
            "previous_version": previous,
            "url": endpoint.url,
            "predictor": served["predictor"],
            "snapshot": served["snapshot"],
            "smoke_test": smoke,
        }
        return dg.Output(
            handle,
            metadata={
                "url": dg.MetadataValue.url(endpoint.url),
                "version": version,
                "previous_version": str(previous),
                "predictor": served["predictor"],
                "snapshot": served["snapshot"],
                **{f"smoke/{k}": v for k, v in smoke.items()},
            },
        )

    @dg.asset(
        key=spec.key("batch_predictions"),
        description=(
            "The champion's predicted arrival delay for every flight of the day, with the "
            "model version on every row; rescored when the features or the champion change."
        ),
        kinds={"pandas", "parquet"},
        ins={"features": dg.AssetIn(spec.features_asset)},
        deps=[spec.key("deployed_endpoint")],
        partitions_def=spec.partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        automation_condition=refresh_stale_partitions(),
        metadata={"dagster/column_schema": spec.batch_schema},
        **common,
    )
    def batch_predictions(
        context: dg.AssetExecutionContext, features: dict[str, pd.DataFrame]
    ) -> dg.Output[dict[str, pd.DataFrame]]:
        from serving.predictors import load_version, resolve_alias

        use_platform_store()
        version = resolve_alias(spec.model_name, registry.CHAMPION)
        model = load_version(spec.model_name, version, spec.features)
        scored = {}
        for day in context.partition_keys:
            rows = features[day]
            frame = rows.loc[:, list(spec.batch_columns)].reset_index(drop=True)
            predicted = model.predictor.predict({c: rows[c].to_numpy() for c in rows.columns})
            frame[f"predicted_{spec.prediction}"] = predicted
            frame["model_version"] = version
            scored[day] = frame
        return dg.Output(
            scored,
            metadata={"model_version": version, "predictor": model.predictor.kind},
        )

    return [deployed_endpoint, batch_predictions]


def _reload_quietly(endpoint: ServingEndpoint, context: dg.AssetExecutionContext) -> str:
    try:
        served = endpoint.reload()
    except Exception as error:  # the rollback is reported; the original failure matters more
        context.log.error(f"reloading the restored champion failed: {error}")
        return "an unknown version (the reload failed)"
    return f"v{served['version']}" if served.get("ready") else "no model (there is no champion)"


def _smoke_test(
    spec: DeploySpec, endpoint: ServingEndpoint, served: dict, config: SmokeTest
) -> dict[str, Any]:
    """Compare the live endpoint with the registered model on flights of the snapshot's day."""
    from serving.predictors import load_version

    day = served["snapshot"]
    requests = read_partition(warehouse_url(), spec.requests_asset, day)
    features = read_partition(warehouse_url(), spec.features_asset, day)
    sample = features.sample(n=min(config.rows, len(features)), random_state=0)
    items = spec.request_items(requests)
    by_id = dict(zip(features[spec.id_column], items, strict=True))
    chosen = [by_id[i] for i in sample[spec.id_column]]

    answer, _ = endpoint.predict(chosen)
    versions = {answer["model_version"]}
    live = np.array([p[spec.prediction] for p in answer["predictions"]])
    reference = load_version(spec.model_name, served["version"], spec.features, prefer_onnx=False)
    expected = reference.predictor.predict({c: sample[c].to_numpy() for c in sample.columns})
    difference = float(np.max(np.abs(live - expected), initial=0.0))
    latencies = np.array(endpoint.latencies(chosen[: config.latency_requests])) * 1000
    p50, p95 = (float(np.percentile(latencies, q)) for q in (50, 95))
    result = {
        "rows": len(chosen),
        "max_abs_difference": difference,
        "latency_p50_ms": round(p50, 3),
        "latency_p95_ms": round(p95, 3),
    }
    if versions != {served["version"]}:
        raise SmokeTestFailed(f"answers came from versions {versions}, not {served['version']}")
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
