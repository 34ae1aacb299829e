"""A statistical forecasting family beside the regressors, end to end: a small daily-series
pipeline (a declaration in a temporary file and a stand-in features asset over two years of a
realistic daily demand series, monthly partitions) materialized through the generic model
layer with rolling cross-validation as the study's objective — study → trained model →
evaluation → registered model — then its batch predictions and its prediction service, which
must answer the same for the same rows."""

import asyncio
import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg
import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import platform_test_instance
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG as RANGE_END
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG as RANGE_START
from pydantic import BaseModel

from ml_assets.contract.dagster_terms import asset_key
from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.contract.loading import load_declaration
from ml_assets.contract.names import CHAMPION
from ml_assets.contract.pipeline import ServingHooks
from ml_assets.data.data_layers import partitioned
from ml_assets.deployment.batch_predictions import build_batch_predictions
from ml_assets.home import online_store_url, tracking_uri
from ml_assets.modeling.assets import build_model_assets
from resources.builder import platform_resources
from resources.partition_frames import PartitionStream
from resources.table_snapshots import TableSnapshots
from serving.app import create_app
from serving.spec import served_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAYS = pd.date_range("2022-01-01", "2023-12-31", freq="D")
MONTHS = [f"{y}-{m:02d}-01" for y in (2022, 2023) for m in range(1, 13)]
DECLARATION: dict[str, Any] = {
    "name": "demand",
    "description": "Daily demand at one site (synthetic, realistic shape).",
    "partitions": {"kind": "monthly", "start": "2022-01-01", "end": "2024-01-01"},
    "sources": [{"name": "demand", "description": "Daily demand."}],
    "model": {
        "registered_model_name": "demand",
        "task": "regression",
        "features_asset": "demand_features",
        "target": "demand",
        "id_column": "row_id",
        "time_column": "day",
        "numeric": ["dayofweek"],
        "baseline": {"kind": "column", "column": "demand_lag_7"},
        "compare_with": {"seasonal_naive": "demand_lag_7", "last_value": "demand_lag_1"},
        "training": {
            "window_start": "2022-01-01",
            "window_end": "2023-12-01",
            "validation_partitions": 2,
            "test_partitions": 2,
            "min_train_partitions": 6,
            "horizon_partitions": 2,
        },
        "tuning": {
            "n_trials": 4,
            "sample_rows": 100_000,
            "timeout_seconds": 300,
            "workers": 1,
            "seed": 1,
            "cross_validation": {"folds": 3, "horizon_partitions": 2},
        },
        "acceptance": {"min_improvement_over_baseline": 0.05},
        "search_space": [
            {"family": "ridge", "alpha": {"type": "float", "low": 0.1, "high": 10, "log": True}},
            {
                "family": "auto_ets",
                "season_length": {"type": "categorical", "choices": [7]},
                "model": {"type": "categorical", "choices": ["ZZZ", "AAA"]},
            },
        ],
    },
    "serving": {
        "port": 8797,
        "prediction": "demand",
        "requests_asset": "demand_features",
        "request_fields": [{"name": "day", "type": "date", "description": "The day."}],
        "warm_up": [{"day": "2023-06-01"}],
        "batch_columns": ["row_id"],
    },
    "deploy": {"tolerance": 1e-9},
}
FEATURES_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("row_id", "string"),
        dg.TableColumn("day", "datetime64[ns]"),
        dg.TableColumn("dayofweek", "int"),
        dg.TableColumn("demand", "float"),
        dg.TableColumn("demand_lag_1", "float"),
        dg.TableColumn("demand_lag_7", "float"),
    ]
)


def demand() -> pd.DataFrame:
    """Two years of daily demand: a level that drifts up, a weekly pattern (quiet weekends),
    a yearly swing and autocorrelated noise, as a transit station's or a shop's counts look."""
    rng = np.random.default_rng(3)
    t = np.arange(len(DAYS))
    weekly = np.array([1.0, 1.05, 1.05, 1.0, 0.95, 0.45, 0.35])[DAYS.dayofweek]
    noise = np.zeros(len(t))
    for i in range(1, len(t)):
        noise[i] = 0.3 * noise[i - 1] + rng.normal(0, 60)
    level = 1500 + 0.4 * t + 50 * np.sin(2 * np.pi * t / 365.25)
    frame = pd.DataFrame({"day": DAYS, "demand": level * weekly + noise})
    frame["row_id"] = frame["day"].dt.strftime("%Y-%m-%d")
    frame["dayofweek"] = frame["day"].dt.dayofweek
    frame["demand_lag_1"] = frame["demand"].shift(1)
    frame["demand_lag_7"] = frame["demand"].shift(7)
    return frame[[c.name for c in FEATURES_SCHEMA.columns]]


def request_columns(lookups: Any, items: Sequence[BaseModel]) -> Mapping[str, np.ndarray]:
    """What the service computes from a request: the day, its id and its weekday."""
    days = pd.to_datetime(pd.Series([item.day for item in items]))  # type: ignore[attr-defined]
    return {
        "row_id": days.dt.strftime("%Y-%m-%d").to_numpy(),
        "day": days.to_numpy(),
        "dayofweek": days.dt.dayofweek.to_numpy(),
    }


HOOKS = ServingHooks(
    columns=request_columns,
    request_items=lambda rows: [{"day": d.date()} for d in rows["day"]],
)


def _features_asset(declaration: PipelineDeclaration) -> dg.AssetsDefinition:
    rows = demand()

    @dg.asset(name="demand_features", key_prefix=declaration.prefix, **partitioned(declaration))
    def demand_features(context: dg.AssetExecutionContext) -> PartitionStream:
        def month(key: str) -> pd.DataFrame:
            first = pd.Timestamp(key)
            return rows[(rows["day"] >= first) & (rows["day"] < first + pd.offsets.MonthBegin())]

        return PartitionStream(context.partition_keys, month)

    return demand_features


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The pipeline materialized once: features, the model layer, batch predictions of the
    test months; the registered version crowned champion."""
    import mlflow

    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ML_ASSETS_HOME", str(home))
        patch.setenv("DAGSTER_HOME", str(home / "dagster"))
        path = home / "pipeline.yaml"
        path.write_text(yaml.safe_dump(copy.deepcopy(DECLARATION)))
        declaration = load_declaration(path)
        features = _features_asset(declaration)
        models = build_model_assets(declaration, FEATURES_SCHEMA)
        batch = build_batch_predictions(declaration, FEATURES_SCHEMA)
        resources = platform_resources([declaration])
        everything = [features, *models, batch]
        with platform_test_instance() as instance:
            assert dg.materialize(
                everything, selection=[features.key], resources=resources, instance=instance,
                tags={RANGE_START: MONTHS[0], RANGE_END: MONTHS[-1]},
            ).success  # fmt: skip
            layer = dg.materialize(
                everything, selection=[m.key for m in models], resources=resources,
                instance=instance,
            )  # fmt: skip
            assert layer.success
            mlflow.set_tracking_uri(tracking_uri())
            registered = layer.output_for_node(models[-1].node_def.name)
            mlflow.tracking.MlflowClient().set_registered_model_alias(
                registered["name"], CHAMPION, registered["version"]
            )
            batched = dg.materialize(
                everything, selection=[batch.key], resources=resources, instance=instance,
                tags={RANGE_START: MONTHS[-2], RANGE_END: MONTHS[-1]},
            )  # fmt: skip
            assert batched.success
            yield {
                "declaration": declaration,
                "study": layer.output_for_node(models[1].node_def.name),
                "study_metadata": _metadata(layer, asset_key(declaration, "hyperparameter_study")),
                "trained": layer.output_for_node(models[2].node_def.name),
                "evaluation": layer.output_for_node(models[3].node_def.name),
                "registered": registered,
                "batch": pd.concat(
                    [
                        pd.read_parquet(
                            home / "warehouse" / "demand" / "batch_predictions" / f"{k}.parquet"
                        )
                        for k in MONTHS[-2:]
                    ],
                    ignore_index=True,
                ),
            }


def _metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict[str, Any]:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_the_study_cross_validates_over_rolling_cutoffs(chain: dict[str, Any]) -> None:
    import optuna

    study_output, metadata = chain["study"], chain["study_metadata"]
    study = optuna.load_study(
        study_name=study_output["study_name"],
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(study_output["storage"])
        ),
    )
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert {t.params["family"] for t in finished} == {"ridge", "auto_ets"}
    for trial in finished:  # the objective is the mean over the three folds
        assert len(trial.user_attrs["fold_values"]) == 3
        assert trial.value == pytest.approx(np.mean(trial.user_attrs["fold_values"]))
    best = study.best_trial
    assert best.params["family"] == "auto_ets"  # weekday alone cannot follow the level
    assert study_output["best_fold_values"] == best.user_attrs["fold_values"]
    assert [metadata[f"fold_{n}/mae"] for n in range(3)] == best.user_attrs["fold_values"]
    # three windows of two months, the last ending with the validation months (Sep, Oct 2023)
    assert "2023-09-01…2023-10-01" in metadata["folds"]
    assert "2023-05-01…2023-06-01" in metadata["folds"]


def test_the_forecaster_is_evaluated_registered_and_saved_without_onnx(
    chain: dict[str, Any],
) -> None:
    trained, evaluation, registered = chain["trained"], chain["evaluation"], chain["registered"]
    assert trained["family"] == "auto_ets"
    assert trained["onnx"].startswith("none: no ONNX converter")
    assert trained["forecaster"].startswith("ETS(")
    metrics = evaluation["metrics"]
    assert set(metrics) >= {"model", "baseline", "seasonal_naive", "last_value"}
    for name in ("model", "seasonal_naive", "last_value"):
        assert set(metrics[name]) >= {"mae", "rmse", "smape", "mase"}
    assert metrics["seasonal_naive"]["mase"] == pytest.approx(1.0)  # the baseline is it
    assert metrics["model"]["mase"] < 0.95  # beats the seasonal naive by the declared margin
    assert registered["tags"]["model_family"] == "auto_ets"


def test_served_predictions_equal_the_batch_predictions(chain: dict[str, Any]) -> None:
    """The parity check of a family without ONNX: the service's answers for the test months'
    days equal the batch predictions of those rows; a day past the horizon gets 422."""
    declaration, batch = chain["declaration"], chain["batch"]
    app = create_app(
        served_model(declaration, HOOKS), TableSnapshots(online_store_url()), token="t", home="test"
    )
    days = [{"day": row_id} for row_id in batch["row_id"]]

    async def ask() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://app") as client,
        ):
            return (
                await client.post("/predict", json=days),
                await client.post("/predict", json={"day": "2024-03-01"}),
                await client.post("/predict", json={"day": "2022-06-15"}),
            )

    answered, too_far, in_sample = asyncio.run(ask())
    assert answered.status_code == 200, answered.text
    served = pd.DataFrame(answered.json()["predictions"])
    assert served["row_id"].tolist() == batch["row_id"].tolist()
    difference = np.abs(served["demand"].to_numpy() - batch["predicted_demand"].to_numpy())
    assert difference.max() == 0.0  # the same lookup in the same saved forecast path
    assert too_far.status_code == 422
    assert too_far.json()["detail"][0]["type"] == "no_prediction"
    assert in_sample.status_code == 200 and np.isfinite(
        in_sample.json()["predictions"][0]["demand"]
    )
