"""The model layer through Dagster: study, training, evaluation, registry, MLflow hygiene."""

import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
from conftest import platform_test_instance

from ml_assets.definitions import defs
from ml_assets.modeling.layer import MODEL_ASSET_NAMES
from ml_assets.pipelines import declaration
from ml_assets.pipelines.flights.assets import data_assets, key
from ml_assets.pipelines.flights.publish import day_keys, publish
from resources.builder import platform_resources
from resources.landing_zone import default_landing_zone
from resources.mlflow_tracking import MlflowTracking

pytestmark = [pytest.mark.unit, pytest.mark.slow]

FIRST, LAST = "2013-01-01", "2013-02-14"
DATA_LAYERS = dg.AssetSelection.groups("flights_ingest", "flights_clean", "flights_features")
MODEL_KEYS = [key(n) for n in MODEL_ASSET_NAMES]
model_assets = [a for a in defs.assets if set(a.keys) & set(MODEL_KEYS)]  # type: ignore[union-attr]
REFERENCE = [key("planes"), key("airports"), key("airlines")]


def _op(name: str) -> str:
    return f"flights__{name}"


TINY = {
    "ops": {
        _op("training_set"): {
            "config": {
                "window_start": "2013-01-08",
                "window_end": LAST,
                "validation_partitions": 7,
                "test_partitions": 7,
            }
        },
        _op("hyperparameter_study"): {
            "config": {"n_trials": 4, "workers": 2, "timeout_seconds": 120}
        },
    }
}


TRAINING = {"ops": {_op("training_set"): TINY["ops"][_op("training_set")]}}
JUDGED = {"ops": {}}
"""Run config of runs that start at trained_model: nothing to configure upstream."""


@pytest.fixture(scope="module")
def model_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dg.DagsterInstance]:
    """A home and instance with features for six weeks, shared by the module (slow to build)."""
    home = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ML_ASSETS_HOME", str(home))
        for var in ("ML_ASSETS_LANDING_URL", "ML_ASSETS_WAREHOUSE_URL", "MLFLOW_TRACKING_URI"):
            patch.delenv(var, raising=False)
        first, last = date.fromisoformat(FIRST), date.fromisoformat(LAST)
        publish(default_landing_zone(), day_keys(first, last))
        with platform_test_instance() as instance:
            resources = _resources()
            assert dg.materialize(data_assets, selection=REFERENCE, resources=resources,
                                  instance=instance).success  # fmt: skip
            assert dg.materialize(
                data_assets,
                selection=DATA_LAYERS - dg.AssetSelection.assets(*REFERENCE),
                tags={"dagster/asset_partition_range_start": FIRST,
                      "dagster/asset_partition_range_end": LAST},
                resources=resources, instance=instance,
            ).success  # fmt: skip
            try:
                yield instance
            finally:
                # mlflow.set_tracking_uri also sets this; later modules must not inherit it
                os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(scope="module")
def first_chain(model_instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """The module's first run of the model chain (``TINY``): the challenger it registers is the
    real model the champion test crowns (one chain fewer: a run is ~30 CPU s)."""
    return _materialize_models(model_instance)


@pytest.fixture
def model_home(model_instance: dg.DagsterInstance) -> Path:
    from ml_assets.home import ml_assets_home

    return ml_assets_home()


def _resources() -> dict:
    return platform_resources([declaration("flights")])


def _materialize_models(instance, run_config=TINY, selection=None, assets=None):
    return dg.materialize(
        [*data_assets, *(assets or model_assets)],
        selection=selection or [key(n) for n in MODEL_ASSET_NAMES],
        run_config=run_config,
        resources=_resources(),
        instance=instance,
        raise_on_error=False,
    )


def _mlflow_runs(home: Path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    return mlflow.search_runs(search_all_experiments=True)


def test_model_chain_registers_a_challenger(
    model_home: Path, first_chain: dg.ExecuteInProcessResult
) -> None:
    import mlflow

    result = first_chain
    assert result.success
    handle = result.output_for_node(_op("registered_model"))
    client = mlflow.tracking.MlflowClient()
    version = client.get_model_version_by_alias("flights-arrival-delay", "challenger")
    assert str(version.version) == handle["version"]
    assert version.tags["dagster_run_id"] == result.run_id
    assert version.tags["feature_partitions"] == f"2013-01-08…{LAST}"
    assert version.tags["code_version/flights/flight_features"] == "2"
    runs = _mlflow_runs(model_home)
    assert not (runs["status"] == "RUNNING").any(), runs[["run_id", "status"]]
    trials = runs[runs["tags.optuna.trial"].notna()]
    assert len(trials) == 4


def _study_handle(model_instance, **tuning) -> dict:
    config = {"ops": {**TINY["ops"], _op("hyperparameter_study"): {"config": tuning}}}
    result = _materialize_models(
        model_instance, config, selection=[key("training_set"), key("hyperparameter_study")]
    )
    assert result.success
    return result.output_for_node(_op("hyperparameter_study"))


def _trials(handle: dict) -> list:
    import optuna

    from ml_assets.modeling.trials import open_storage

    study = optuna.load_study(
        study_name=handle["study_name"], storage=open_storage(handle["storage"])
    )
    return study.trials


def test_study_continues_or_restarts_as_configured(
    model_home: Path, model_instance: dg.DagsterInstance
) -> None:
    first = _study_handle(model_instance, n_trials=2, workers=1, resume=True)
    before = len(_trials(first))
    again = _study_handle(model_instance, n_trials=2, workers=1, resume=True)
    assert again["study_name"] == first["study_name"]
    assert len(_trials(again)) == before + 2
    fresh = _study_handle(model_instance, n_trials=2, workers=1, resume=False)
    other = _study_handle(model_instance, n_trials=2, workers=1, resume=False)
    assert fresh["study_name"] != first["study_name"] != other["study_name"]
    assert len(_trials(fresh)) == 2
    # seeded TPE: a restarted study proposes the same trials
    assert [t.params for t in _trials(fresh)] == [t.params for t in _trials(other)]


def _bad_trained_model(constant: float) -> dg.AssetsDefinition:
    """A deliberately bad model under the trained_model key: always predicts ``constant``."""

    @dg.asset(
        key=key("trained_model"),
        group_name="flights_models",
        ins={"training_set": dg.AssetIn(key("training_set"))},
        io_manager_key="json_io_manager",
    )
    def trained_model(
        context: dg.AssetExecutionContext, mlflow: MlflowTracking, training_set
    ) -> dict:
        import mlflow as client
        from sklearn.compose import ColumnTransformer
        from sklearn.dummy import DummyRegressor
        from sklearn.pipeline import make_pipeline

        rows = training_set[training_set["split"] != "test"]
        model = make_pipeline(
            ColumnTransformer([("distance", "passthrough", ["distance"])]),
            DummyRegressor(strategy="constant", constant=constant),
        ).fit(rows, rows["arr_delay"])
        experiment = declaration("flights").model.experiment
        with (
            mlflow.dagster_run(context, experiment),
            client.start_run(run_name="bad_model", nested=True) as run,
        ):
            info = client.sklearn.log_model(model, name="model", serialization_format="skops")
        return {"run_id": run.info.run_id, "model_uri": info.model_uri, "family": "constant",
                "params": {}, "trained_rows": len(rows), "skops_trusted_types": [],
                "feature_partitions": "test"}  # fmt: skip

    return trained_model


def _with_bad_model(constant: float) -> list:
    return [a for a in model_assets if key("trained_model") not in a.keys] + [
        _bad_trained_model(constant)
    ]


def _versions() -> int:
    import mlflow

    return len(mlflow.tracking.MlflowClient().search_model_versions("name='flights-arrival-delay'"))


def _check(result, name: str):
    return next(
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.event_specific_data.check_name == name
    )


def test_a_model_worse_than_the_baseline_is_not_registered(
    model_home: Path, model_instance: dg.DagsterInstance
) -> None:
    assert _materialize_models(model_instance, TRAINING, [key("training_set")]).success
    before = _versions()
    result = _materialize_models(
        model_instance,
        JUDGED,
        selection=[key("trained_model"), key("model_evaluation"), key("registered_model")],
        assets=_with_bad_model(300.0),
    )
    assert not result.success
    assert not _check(result, "beats_baseline").passed
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert key("registered_model") not in materialized
    assert _versions() == before
    runs = _mlflow_runs(model_home)
    assert not (runs["status"] == "RUNNING").any()
    assert (runs[runs["tags.dagster_run_id"] == result.run_id]["status"] == "FAILED").any()


def test_a_model_worse_than_the_champion_is_not_registered(
    model_home: Path, model_instance: dg.DagsterInstance, first_chain: dg.ExecuteInProcessResult
) -> None:
    import mlflow

    client = mlflow.tracking.MlflowClient()
    assert first_chain.success  # a real model, then crowned champion
    registered = first_chain.output_for_node(_op("registered_model"))["version"]
    challenger = client.get_model_version("flights-arrival-delay", registered)
    client.set_registered_model_alias("flights-arrival-delay", "champion", challenger.version)
    before = _versions()
    lenient = {
        "ops": {_op("model_evaluation"): {"config": {"min_improvement_over_baseline": -100.0}}}
    }
    result = _materialize_models(
        model_instance,
        lenient,
        selection=[key("trained_model"), key("model_evaluation"), key("registered_model")],
        assets=_with_bad_model(30.0),
    )
    assert not result.success
    assert _check(result, "beats_baseline").passed
    champion_check = _check(result, "not_worse_than_champion")
    assert not champion_check.passed
    assert champion_check.metadata["champion_version"].value == str(challenger.version)
    assert _versions() == before


def test_no_mlflow_run_left_running_by_the_model_job_from_the_cli(
    model_home: Path, model_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    """``dagster job execute`` of the model job, every step in its own process."""
    import json
    import os
    import subprocess
    import sys

    config = tmp_path / "run.json"
    # any model passes the checks: this test is about MLflow, not about a champion left by others
    lenient = {
        _op("model_evaluation"): {
            "config": {"min_improvement_over_baseline": -100.0, "max_regression_vs_champion": 100.0}
        }
    }
    config.write_text(json.dumps({"ops": {**TINY["ops"], **lenient}}))
    (tmp_path / "dagster").mkdir()
    completed = subprocess.run(
        [sys.executable, "-m", "dagster", "job", "execute", "-m", "ml_assets.definitions",
         "-j", "flights_model", "-c", str(config)],
        env={**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster")},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    runs = _mlflow_runs(model_home)
    assert not (runs["status"] == "RUNNING").any()
    job_runs = runs[runs["tags.mlflow.runName"] == "flights_model"]
    assert len(job_runs) == 1 and (job_runs["status"] == "FINISHED").all()
