"""The deploy layer against a real service process: rollout, rollback, bad input, batch scores.

One module-scoped world: four weeks of flights, a tiny model registered through the model
assets, and the prediction service that ``deployed_endpoint`` starts (``ml-assets serve`` on a
free port). Tests that change the champion set the state they need first.
"""

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import httpx
import numpy as np
import pandas as pd
import pytest

from ml_assets.deployment import registry
from ml_assets.deployment.endpoint import ServingEndpoint
from ml_assets.home import online_store_url, warehouse_url
from ml_assets.modeling.assets import MODEL_ASSET_NAMES
from ml_assets.modeling.tracking import use_platform_store
from ml_assets.modeling.tracking_logs import ONNX_ARTIFACT
from ml_assets.pipelines.flights.assets import data_assets, key
from ml_assets.pipelines.flights.definitions import (
    defs as flights_defs,
)
from ml_assets.pipelines.flights.definitions import (
    deployment_assets,
    model_assets,
    rollback_job,
)
from ml_assets.pipelines.flights.publish import publish
from ml_assets.pipelines.flights.serving import (
    FlightRequest,
    lookups,
    request_items,
    served_model,
)
from resources.json_io_manager import JsonIOManager
from resources.landing_zone import default_landing_zone
from resources.parquet_io_manager import ParquetIOManager, read_partition
from resources.table_snapshots import TableSnapshots, TableSnapshotStore
from serving.settings import URL_ENV_VAR, admin_token, is_local_service

FIRST, LAST = "2013-01-01", "2013-01-28"
REFERENCE = [key("planes"), key("airports"), key("airlines")]
MODEL = "flights-arrival-delay"


def _op(name: str) -> str:
    return f"flights__{name}"


TINY = {
    "ops": {
        _op("training_set"): {
            "config": {
                "window_start": "2013-01-08",
                "window_end": LAST,
                "validation_days": 5,
                "test_days": 5,
            }
        },
        _op("hyperparameter_study"): {"config": {"n_trials": 3, "workers": 1}},
    }
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class World:
    home: Path
    instance: dg.DagsterInstance
    endpoint: ServingEndpoint
    first_version: str

    def resources(self, endpoint: ServingEndpoint | None = None) -> dict:
        return {
            "io_manager": ParquetIOManager(base_url=warehouse_url()),
            "json_io_manager": JsonIOManager(base_url=warehouse_url()),
            "landing_zone": default_landing_zone(),
            "online_store": TableSnapshotStore(base_url=online_store_url()),
            "mlflow": flights_defs.resources["mlflow"],
            "endpoint": endpoint or self.endpoint,
        }

    def deploy(self, registered: dg.AssetsDefinition | None = None, **smoke):
        """Materialize ``deployed_endpoint`` (after a stand-in ``registered_model`` if given)."""
        assets = [*data_assets, *model_assets, *deployment_assets]
        if registered is not None:
            assets = [a for a in assets if key("registered_model") not in a.keys] + [registered]
        return dg.materialize(
            assets,
            selection=[key("deployed_endpoint")] + ([registered.key] if registered else []),
            run_config={"ops": {_op("deployed_endpoint"): {"config": smoke}}},
            resources=self.resources(),
            instance=self.instance,
            raise_on_error=False,
        )

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.endpoint.url}{path}", timeout=30)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return httpx.post(f"{self.endpoint.url}{path}", timeout=30, **kwargs)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("deploy")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ML_ASSETS_HOME", str(home))
        for var in ("ML_ASSETS_LANDING_URL", "ML_ASSETS_WAREHOUSE_URL", "MLFLOW_TRACKING_URI",
                    "ML_ASSETS_ONLINE_STORE_URL", "ML_ASSETS_SERVING_URL",
                    "ML_ASSETS_SERVING_TOKEN"):  # fmt: skip
            patch.delenv(var, raising=False)
        publish(default_landing_zone(), date.fromisoformat(FIRST), date.fromisoformat(LAST))
        endpoint = ServingEndpoint(url=f"http://127.0.0.1:{_free_port()}", start_if_down=True)
        with dg.instance_for_test() as instance:
            world = World(home, instance, endpoint, "")
            resources = world.resources()
            assets = [*data_assets, *model_assets]
            assert dg.materialize(assets, selection=REFERENCE, resources=resources,
                                  instance=instance).success  # fmt: skip
            assert dg.materialize(
                assets,
                selection=dg.AssetSelection.groups("ingest", "clean", "features")
                - dg.AssetSelection.assets(*REFERENCE),
                tags={"dagster/asset_partition_range_start": FIRST,
                      "dagster/asset_partition_range_end": LAST},
                resources=resources, instance=instance,
            ).success  # fmt: skip
            models = dg.materialize(
                assets, selection=[key(n) for n in MODEL_ASSET_NAMES], run_config=TINY,
                resources=resources, instance=instance,
            )  # fmt: skip
            assert models.success
            world.first_version = models.output_for_node(_op("registered_model"))["version"]
            try:
                yield world
            finally:
                _stop_service(world)
                # mlflow.set_tracking_uri also sets this; later modules must not inherit it
                os.environ.pop("MLFLOW_TRACKING_URI", None)


def _flights_of(day: str) -> pd.DataFrame:
    return read_partition(warehouse_url(), key("flights_clean"), day)


def _features_of(day: str) -> pd.DataFrame:
    return read_partition(warehouse_url(), key("flight_features"), day)


def _deployed(world: World, version: str) -> None:
    """Make ``version`` the live champion (the state a test starts from)."""
    world.endpoint.ensure_running(dg.get_dagster_logger())
    registry.promote(MODEL, version)
    assert world.endpoint.reload()["version"] == version


def _register_copy(world: World, source_version: str) -> str:
    """A new registry version of the same trained model: a good model to roll out."""
    import mlflow

    source = mlflow.tracking.MlflowClient().get_model_version(MODEL, source_version)
    return str(mlflow.register_model(f"runs:/{source.run_id}/model", MODEL).version)


def _register_broken(world: World, onnx: bytes) -> str:
    """A version whose ONNX export is not the model it was registered with."""
    import mlflow
    from mlflow.models import infer_signature

    from ml_assets.modeling.estimators import build_pipeline
    from ml_assets.pipelines.flights.model import FLIGHTS_MODEL

    features = pd.concat([_features_of(d) for d in ("2013-01-20", "2013-01-21")])
    features = features[features["arr_delay"].notna()]
    X = features[FLIGHTS_MODEL.columns]
    pipeline = build_pipeline("ridge", {"alpha": 1.0}, FLIGHTS_MODEL.features)
    pipeline.fit(X, features["arr_delay"])
    mlflow.set_experiment(FLIGHTS_MODEL.settings["experiment_name"])
    with mlflow.start_run(run_name="broken-export"):
        info = mlflow.sklearn.log_model(
            pipeline, name="model", serialization_format="skops",
            skops_trusted_types=["numpy.dtype"],
            signature=infer_signature(X.head(), pipeline.predict(X.head())),
        )  # fmt: skip
        scratch = world.home / "tmp" / "model.onnx"
        scratch.parent.mkdir(parents=True, exist_ok=True)
        scratch.write_bytes(onnx)
        mlflow.log_artifact(str(scratch), ONNX_ARTIFACT.rsplit("/", 1)[0])
    return str(mlflow.register_model(info.model_uri, MODEL).version)


def _forget_tracking_store(world: World) -> None:
    """As in a fresh step process: MLflow points at its own default store, not the platform's
    (``set_tracking_uri`` also sets ``MLFLOW_TRACKING_URI``, which a fresh process lacks)."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{world.home / 'elsewhere.db'}")
    os.environ.pop("MLFLOW_TRACKING_URI", None)


def _registered_stub(version: str) -> dg.AssetsDefinition:
    """``registered_model`` as if the model chain had just registered ``version``."""

    @dg.asset(key=key("registered_model"), io_manager_key="json_io_manager", group_name="models")
    def registered_model() -> dict:
        return {"name": MODEL, "version": version}

    return registered_model


# deploying


def _stop_service(world: World) -> None:
    pid_file = world.home / "serving" / "service.pid"
    if pid_file.exists():
        os.killpg(int(pid_file.read_text()), signal.SIGTERM)
        pid_file.unlink()
    deadline = time.monotonic() + 30
    while world.endpoint.is_up() and time.monotonic() < deadline:
        time.sleep(0.1)


def test_deploying_starts_the_service_and_serves_the_champion(world: World) -> None:
    _stop_service(world)
    assert not world.endpoint.is_up()

    result = world.deploy()

    assert result.success, result.get_step_failure_events()
    handle = result.output_for_node(_op("deployed_endpoint"))
    assert handle["version"] == world.first_version
    assert handle["predictor"] == "onnx"
    assert handle["smoke_test"]["max_abs_difference"] <= 0.01
    assert registry.alias_version(MODEL, "champion") == world.first_version
    described = world.get("/model").json()
    assert described["version"] == world.first_version
    assert described["trained_on"] == f"2013-01-08…{LAST}"
    assert described["run_id"]
    assert described["snapshot"] == LAST
    assert world.get("/ready").status_code == 200
    assert world.get("/health").json() == {"status": "ok"}


def test_service_features_equal_the_feature_asset_rows(world: World) -> None:
    """The service's path (request model, snapshot from storage, feature code) gives exactly
    the ``flight_features`` rows of the snapshot's day."""
    served = served_model()
    snapshot = TableSnapshots(online_store_url()).read(served.snapshot_asset, LAST)
    items = [FlightRequest.model_validate(i) for i in request_items(_flights_of(LAST))]

    columns = served.columns(lookups(snapshot), items)

    names = ["flight_id", *served.features.categorical, *served.features.numeric]
    online = pd.DataFrame({name: columns[name] for name in names})
    online = online.astype({c: "string" for c in served.features.categorical})
    pd.testing.assert_frame_equal(online, _features_of(LAST)[names])


def test_predictions_over_http_equal_the_registered_model(world: World) -> None:
    from serving.predictors import load_version

    _deployed(world, world.first_version)
    flights = _flights_of(LAST)
    answer = world.post("/predict", json=request_items(flights)).json()
    features = _features_of(LAST)
    model = load_version(MODEL, world.first_version, served_model().features, prefer_onnx=False)
    expected = model.predictor.predict({c: features[c].to_numpy() for c in features.columns})

    assert answer["model_version"] == world.first_version
    assert [p["flight_id"] for p in answer["predictions"]] == features["flight_id"].tolist()
    live = np.array([p["arr_delay"] for p in answer["predictions"]])
    np.testing.assert_allclose(live, expected, atol=0.01)
    one = world.post("/predict", json=request_items(flights)[0]).json()
    assert one["predictions"][0]["arr_delay"] == pytest.approx(expected[0], abs=0.01)


def test_unknown_lookups_get_the_documented_defaults(world: World) -> None:
    """A plane, route and carrier the snapshot has never seen still get a prediction."""
    _deployed(world, world.first_version)
    item = {
        **request_items(_flights_of(LAST))[0],
        **{"carrier": "Q9", "tailnum": "N0NE", "origin": "EWR", "dest": "ZZZ"},
    }
    response = world.post("/predict", json=item)
    assert response.status_code == 200
    assert np.isfinite(response.json()["predictions"][0]["arr_delay"])


# bad input


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sched_dep_time": 1275}, "sched_dep_time"),  # 75 minutes
        ({"sched_arr_time": 2400}, "sched_arr_time"),
        ({"carrier": "united"}, "carrier"),
        ({"distance": -3}, "distance"),
        ({"date": "2013-02-30"}, "date"),
        ({"origin": None}, "origin"),
        ({"arr_delay": 12}, "arr_delay"),  # the target is not an input
    ],
)
def test_bad_fields_get_422_naming_the_field(world: World, change: dict, field: str) -> None:
    item = {**request_items(_flights_of(LAST))[0], **change}
    response = world.post("/predict", json=[item])
    assert response.status_code == 422
    assert [e["loc"][-1] for e in response.json()["detail"]] == [field]


def test_missing_field_and_malformed_json_get_422(world: World) -> None:
    item = request_items(_flights_of(LAST))[0]
    del item["dest"]
    missing = world.post("/predict", json=item)
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["dest"]
    assert world.post("/predict", content=b"{not json").status_code == 422


def test_oversize_batches_get_413(world: World) -> None:
    item = request_items(_flights_of(LAST))[0]
    assert world.post("/predict", json=[item] * 1001).status_code == 413
    assert world.post("/predict", json=[item] * 1000).status_code == 200


def test_admin_calls_need_the_token(world: World) -> None:
    assert world.post("/admin/reload").status_code == 401
    wrong = world.post("/admin/reload", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401
    right = world.post("/admin/reload", headers={"Authorization": f"Bearer {admin_token()}"})
    assert right.status_code == 200


def test_metrics_count_requests_errors_and_latency_by_version(world: World) -> None:
    _deployed(world, world.first_version)
    item = request_items(_flights_of(LAST))[0]
    for _ in range(3):
        world.post("/predict", json=item)
    world.post("/predict", json={"bad": 1})
    text = world.get("/metrics").text
    version = world.first_version

    assert (
        f'prediction_service_requests_total{{model_version="{version}",route="/predict",'
        f'status="200"}}' in text
    )
    assert f'prediction_service_errors_total{{model_version="{version}",route="/predict",' in text
    assert (
        f'prediction_service_request_duration_seconds_bucket{{le="0.005",'
        f'model_version="{version}",route="/predict"}}' in text
    )


# rollout under load


class Traffic:
    """Single-flight requests in a loop on each of ``clients`` threads, every answer kept."""

    def __init__(self, url: str, item: dict, clients: int = 2) -> None:
        self.url, self.item, self.stop = url, item, threading.Event()
        self.answers: list[list[tuple[float, int, str | None]]] = [[] for _ in range(clients)]
        self.threads = [threading.Thread(target=self._run, args=(a,)) for a in self.answers]

    def _run(self, answers: list) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                try:
                    response = client.post("/predict", json=self.item)
                    version = response.json().get("model_version")
                    answers.append((time.monotonic(), response.status_code, version))
                except httpx.HTTPError:
                    answers.append((time.monotonic(), 0, None))

    def __enter__(self) -> "Traffic":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def _runs_of(versions: list[str | None]) -> list[str | None]:
    """Consecutive distinct values: [1, 1, 2, 2, 1] -> [1, 2, 1]."""
    return [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]


def test_rollouts_under_load_lose_no_request(world: World) -> None:
    """A good version goes live at one instant; a broken one is rolled back automatically;
    and a version the service cannot load never goes live. No request fails throughout."""
    import mlflow

    _deployed(world, world.first_version)
    first_run = mlflow.tracking.MlflowClient().get_model_version(MODEL, world.first_version)
    onnx = Path(
        mlflow.artifacts.download_artifacts(run_id=first_run.run_id, artifact_path=ONNX_ARTIFACT)
    ).read_bytes()
    good = _register_copy(world, world.first_version)
    mismatched = _register_broken(world, onnx)
    unloadable = _register_broken(world, b"not an onnx model")
    item = request_items(_flights_of(LAST))[0]

    with Traffic(world.endpoint.url, item) as traffic:
        time.sleep(1)
        rolled_out = world.deploy(_registered_stub(good))
        time.sleep(1)
        wrong = world.deploy(_registered_stub(mismatched))
        time.sleep(1)
        refused = world.deploy(_registered_stub(unloadable))
        time.sleep(1)

    assert rolled_out.success
    assert not wrong.success
    assert "differ from the registered model" in str(wrong.get_step_failure_events()[0])
    assert not refused.success
    assert "reload refused (422)" in str(refused.get_step_failure_events()[0])
    assert registry.alias_version(MODEL, "champion") == good
    assert registry.alias_version(MODEL, "previous_champion") == world.first_version
    assert world.get("/model").json()["version"] == good
    answers = [a for client in traffic.answers for a in client]
    assert len(answers) > 100
    assert {status for _, status, _ in answers} == {200}, "a request failed during a rollout"
    for client in traffic.answers:
        # each client saw the versions switch once per swap, never back and forth
        assert _runs_of([v for _, _, v in client]) == [world.first_version, good, mismatched,
                                                       good]  # fmt: skip


def test_rollback_job_restores_the_previous_champion(world: World) -> None:
    second = _register_copy(world, world.first_version)
    _deployed(world, world.first_version)
    _deployed(world, second)

    _forget_tracking_store(world)
    result = rollback_job.execute_in_process(
        resources={"endpoint": world.endpoint}, instance=world.instance
    )

    assert result.success
    assert registry.alias_version(MODEL, "champion") == world.first_version
    assert world.get("/model").json()["version"] == world.first_version
    observation = world.instance.fetch_observations(key("deployed_endpoint"), limit=1).records[0]
    assert observation.asset_observation.metadata["rolled_back_from"].value == second
    again = rollback_job.execute_in_process(
        resources={"endpoint": world.endpoint}, instance=world.instance, raise_on_error=False
    )
    assert not again.success  # nothing left to roll back to: says so, changes nothing
    assert registry.alias_version(MODEL, "champion") == world.first_version


@pytest.mark.parametrize(
    ("url", "local"),
    [(None, True), ("http://127.0.0.1:9999", True), ("http://localhost:8700", True),
     ("https://predict.internal.example:443", False)],
)  # fmt: skip
def test_only_a_service_on_this_machine_may_be_started(
    monkeypatch: pytest.MonkeyPatch, url: str | None, local: bool
) -> None:
    if url is None:
        monkeypatch.delenv(URL_ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(URL_ENV_VAR, url)
    assert is_local_service() is local


def test_production_profile_does_not_start_the_service(world: World) -> None:
    absent = ServingEndpoint(url=f"http://127.0.0.1:{_free_port()}", start_if_down=False)
    before = registry.alias_version(MODEL, "champion")

    result = dg.materialize(
        [*data_assets, *model_assets, *deployment_assets],
        selection=[key("deployed_endpoint")],
        resources=world.resources(absent),
        instance=world.instance,
        raise_on_error=False,
    )

    assert not result.success
    assert "does not answer" in str(result.get_step_failure_events()[0])
    assert registry.alias_version(MODEL, "champion") == before


# batch predictions


def test_batch_predictions_score_every_flight_with_the_champion(world: World) -> None:
    from serving.predictors import load_version

    _deployed(world, world.first_version)
    _forget_tracking_store(world)
    days = ("2013-01-27", LAST)
    result = dg.materialize(
        [*data_assets, *model_assets, *deployment_assets],
        selection=[key("batch_predictions")],
        tags={"dagster/asset_partition_range_start": days[0],
              "dagster/asset_partition_range_end": days[1]},
        resources=world.resources(), instance=world.instance,
    )  # fmt: skip

    assert result.success
    use_platform_store()
    model = load_version(MODEL, world.first_version, served_model().features, prefer_onnx=False)
    for day in days:
        scored = read_partition(warehouse_url(), key("batch_predictions"), day)
        features = _features_of(day)
        assert scored["flight_id"].tolist() == features["flight_id"].tolist()
        assert set(scored["model_version"]) == {world.first_version}
        expected = model.predictor.predict({c: features[c].to_numpy() for c in features.columns})
        np.testing.assert_allclose(scored["predicted_arr_delay"], expected, atol=0.01)


def test_a_model_needing_unreviewed_types_is_refused_not_unpickled(world: World) -> None:
    """The service trusts the reviewed types only, whatever the model's files declare."""
    import operator

    import mlflow
    import skops.io
    from sklearn.dummy import DummyRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from ml_assets.pipelines.flights.model import FLIGHTS_MODEL
    from serving.predictors import load_version

    use_platform_store()
    features = _features_of(LAST)
    X = features[list(FLIGHTS_MODEL.features.numeric)].fillna(0)
    pipeline = make_pipeline(FunctionTransformer(operator.neg), DummyRegressor()).fit(
        X, features["arr_delay"].fillna(0)
    )
    declared = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
    assert declared == ["_operator.neg"]  # declared by the model itself, reviewed by nobody
    with mlflow.start_run(run_name="unreviewed-types"):
        info = mlflow.sklearn.log_model(
            pipeline, name="model", serialization_format="skops", skops_trusted_types=declared
        )
    version = str(mlflow.register_model(info.model_uri, MODEL).version)

    with pytest.raises(skops.io.exceptions.UntrustedTypesFoundException):
        load_version(MODEL, version, FLIGHTS_MODEL.features)
