"""Binary classification through the model layer, on the taxi pipeline's real trips."""

import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from conftest import platform_test_instance

from ml_assets import pipelines
from ml_assets.contract.dagster_terms import asset_key, partitions_definition
from ml_assets.contract.model_format import THRESHOLD_TAG
from ml_assets.modeling.layer import MODEL_ASSET_NAMES
from ml_assets.platform import pipeline_definitions
from resources.builder import platform_resources
from resources.landing_zone import default_landing_zone

pytestmark = pytest.mark.unit

NAME = "taxi"
DECLARED = pipelines.declaration(NAME)
MODEL = DECLARED.model.registered_model_name
TUNING = {"ops": {"taxi__hyperparameter_study": {"config": {"n_trials": 4, "workers": 1}}}}


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dg.ExecuteInProcessResult]:
    """The four real months landed, every layer materialized, one model chain run."""
    home = tmp_path_factory.mktemp("taxi-models")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ML_ASSETS_HOME", str(home))
        for var in ("ML_ASSETS_LANDING_URL", "ML_ASSETS_WAREHOUSE_URL", "MLFLOW_TRACKING_URI"):
            patch.delenv(var, raising=False)
        pipeline = pipelines.load(NAME)
        keys = partitions_definition(DECLARED.partitions).get_partition_keys()
        pipeline.publish(default_landing_zone(), keys)
        assets = pipeline_definitions(pipeline).assets
        resources = platform_resources([DECLARED])
        with platform_test_instance() as instance:
            layers = dg.AssetSelection.groups("taxi_ingest", "taxi_clean", "taxi_features")
            assert dg.materialize(
                assets, selection=layers, resources=resources, instance=instance,
                tags={"dagster/asset_partition_range_start": keys[0],
                      "dagster/asset_partition_range_end": keys[-1]},
            ).success  # fmt: skip
            result = dg.materialize(
                assets, selection=[asset_key(DECLARED, n) for n in MODEL_ASSET_NAMES],
                run_config=TUNING, resources=resources, instance=instance,
            )  # fmt: skip
            try:
                yield result
            finally:
                os.environ.pop("MLFLOW_TRACKING_URI", None)


def _output(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    return result.output_for_node(f"taxi__{asset}")


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    event = next(
        e for e in result.get_asset_materialization_events()
        if e.asset_key == asset_key(DECLARED, asset)
    )  # fmt: skip
    return event.materialization.metadata


def test_the_classifier_is_split_by_month_and_registered(chain) -> None:
    import mlflow

    assert chain.success
    training = _metadata(chain, "training_set")
    assert training["feature_partitions"].value == "2022-01-01…2022-04-01 (4 partitions)"
    assert 0.85 < training["positive_rate"].value < 0.95  # most riders tip
    version = mlflow.tracking.MlflowClient().get_model_version_by_alias(MODEL, "challenger")
    assert version.tags["task"] == "binary_classification"
    assert 0 < float(version.tags[THRESHOLD_TAG]) < 1
    assert float(version.tags["test_log_loss"]) > 0
    assert mlflow.get_experiment_by_name(DECLARED.model.experiment) is not None
    runs = mlflow.search_runs(search_all_experiments=True)
    assert not (runs["status"] == "RUNNING").any()


def test_evaluation_reports_classification_metrics_and_plots(chain) -> None:
    metrics = _output(chain, "model_evaluation")["metrics"]
    for predictor in ("model", "baseline"):
        assert set(metrics[predictor]) == {"roc_auc", "pr_auc", "log_loss", "brier",
                                           "accuracy", "f1"}  # fmt: skip
    assert metrics["baseline"]["roc_auc"] == pytest.approx(0.5)  # the prior ranks nothing
    assert metrics["model"]["log_loss"] < metrics["baseline"]["log_loss"]
    plots = {k for k in _metadata(chain, "model_evaluation") if k.startswith("plot/")}
    assert plots == {"plot/roc_curve", "plot/precision_recall_curve", "plot/reliability_curve",
                     "plot/confusion_matrix", "plot/feature_importances"}  # fmt: skip
    checks = {e.check_name: e for e in chain.get_asset_check_evaluations()}
    assert checks["beats_baseline"].passed
    assert checks["not_worse_than_champion"].passed


def test_the_saved_model_states_its_requirements(chain) -> None:
    import sklearn
    from mlflow.artifacts import download_artifacts

    uri = _output(chain, "trained_model")["model_uri"]
    requirements = (Path(download_artifacts(uri)) / "requirements.txt").read_text().split()
    assert f"scikit-learn=={sklearn.__version__}" in requirements


def test_the_onnx_export_carries_probabilities_within_1e4(chain) -> None:
    trained = _output(chain, "trained_model")
    assert trained["threshold"] is not None
    assert trained["onnx"].startswith("max abs error"), trained["onnx"]
    assert float(trained["onnx"].split()[3]) <= 1e-4
