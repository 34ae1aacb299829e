"""The deploy layer of every pipeline against real service processes: rollout, rollback, bad
input, batch scores, and two pipelines side by side on one platform.

One module-scoped platform and, built once per pipeline on first use, a world with its tiny
model deployed (``serving_fixtures``). Generic tests run for every pipeline; tests that change
a champion set the state they need first.
"""

import json
import operator
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from serving_fixtures import (
    CLASSIFY,
    PIPELINES,
    SETUPS,
    Platform,
    World,
    deploy,
    free_ports,
    go_live,
    log_model,
    register_copy,
    register_linear,
    stop_service,
    wait_answering,
)

from jobs.rollback import build_rollback_job
from ml_assets import pipelines
from ml_assets.contract.model_format import ONNX_ARTIFACT
from ml_assets.contract.requests import parse_item
from ml_assets.definitions import defs
from ml_assets.deployment import registry
from ml_assets.home import (
    HOME_ENV_VAR,
    PROJECT_ROOT,
    TRACKING_URI_ENV_VAR,
    online_store_url,
    warehouse_url,
)
from ml_assets.processes import stop_groups
from resources.builder import platform_resources
from resources.parquet_io_manager import read_partition
from resources.table_snapshots import TableSnapshots
from serving.predictors import load_version
from serving.settings import TOKEN_ENV_VAR, admin_token, is_local, serving_url, url_env_var

pytestmark = pytest.mark.integration

GRAPH = defs.resolve_asset_graph()
"""A family of each task quick to fit: the model a mismatched ONNX export is registered with."""
JSON = {"content-type": "application/json"}
ABSENT = "http://192.0.2.1:8700"
"""A service on another machine (TEST-NET-1, where nothing answers): the production profile."""


def _forget_tracking_store(world: World) -> None:
    """As in a fresh step process: MLflow points at its own default store, not the platform's
    (``set_tracking_uri`` also sets ``MLFLOW_TRACKING_URI``, which a fresh process lacks)."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{world.platform.home / 'elsewhere.db'}")
    os.environ.pop(TRACKING_URI_ENV_VAR, None)


def _failure(result) -> str:
    return str(result.get_step_failure_events()[0])


# deploying


def test_deploying_starts_the_service_and_serves_the_champion(world: World) -> None:
    stop_service(world)
    assert not world.endpoint.is_up()

    result = world.deploy(world.first_version)

    assert result.success, result.get_step_failure_events()
    handle = result.output_for_node(world.op("deployed_endpoint"))
    assert handle["version"] == world.first_version
    assert handle["predictor"] == "onnx"
    assert handle["smoke_test"]["max_abs_difference"] <= world.tolerance
    assert registry.alias_version(world.model_name, "champion") == world.first_version
    last = world.setup.landed[1]
    described = world.get("/model").json()
    assert described["name"] == world.model_name
    assert described["version"] == world.first_version
    assert described["trained_on"] == f"{world.setup.training['window_start']}…{last}"
    assert described["run_id"]
    assert described["task"] == world.task
    has_snapshot = world.declaration.serving.snapshot_asset is not None
    assert described["snapshot"] == (last if has_snapshot else None)
    if world.task == CLASSIFY:
        assert described["decision_threshold"] == world.registered(world.first_version).threshold
    assert world.get("/ready").status_code == 200
    assert world.get("/health").json()["status"] == "ok"


def test_service_features_equal_the_feature_asset_rows(flights: World) -> None:
    """The service's path (request model, snapshot from storage, feature code) gives exactly
    the feature rows of the snapshot's day."""
    served = flights.served
    last = flights.setup.landed[1]
    snapshot = TableSnapshots(online_store_url()).read(served.snapshot_asset, last)
    items = [parse_item(served.request, i) for i in flights.requests()]

    columns = served.columns(served.lookups(snapshot), items)

    names = [served.id_column, *served.features.categorical, *served.features.numeric]
    online = pd.DataFrame({name: columns[name] for name in names})
    online = online.astype({c: "string" for c in served.features.categorical})
    pd.testing.assert_frame_equal(online, flights.features()[names])


def test_predictions_over_http_equal_the_registered_model(world: World) -> None:
    go_live(world, world.first_version)
    items, features = world.requests(), world.features()
    served = world.served
    model = world.registered(world.first_version)
    expected = model.predictor.predict({c: features[c].to_numpy() for c in features.columns})

    most = world.declaration.serving.max_batch
    answers = [world.post("/predict", json=items[i : i + most]).json()
               for i in range(0, len(items), most)]  # fmt: skip

    assert {answer["model_version"] for answer in answers} == {world.first_version}
    predictions = [p for answer in answers for p in answer["predictions"]]
    assert [p[served.id_column] for p in predictions] == features[served.id_column].tolist()
    live = np.array([p[served.score_field] for p in predictions])
    np.testing.assert_allclose(live, expected, rtol=0, atol=world.tolerance)
    if world.task == CLASSIFY:  # a probability and the label decided at the model's threshold
        assert np.all((live >= 0) & (live <= 1))
        labels = [p[served.prediction] for p in predictions]
        assert all(isinstance(label, bool) for label in labels)
        assert labels == (live >= model.threshold).tolist()
    one = world.post("/predict", json=items[0]).json()
    assert one["predictions"][0][served.score_field] == pytest.approx(
        expected[0], abs=world.tolerance
    )


def test_unknown_lookups_get_the_documented_defaults(flights: World) -> None:
    """A plane, route and carrier the snapshot has never seen still get a prediction."""
    go_live(flights, flights.first_version)
    item = {
        **flights.requests()[0],
        **{"carrier": "Q9", "tailnum": "N0NE", "origin": "EWR", "dest": "ZZZ"},
    }
    response = flights.post("/predict", json=item)
    assert response.status_code == 200
    assert np.isfinite(response.json()["predictions"][0]["arr_delay"])


# bad input


@pytest.mark.parametrize(
    ("world", "change", "field"),
    [
        pytest.param(name, change, field, id=f"{name}-{field}-{change[field]}")
        for name, setup in SETUPS.items()
        for change, field in setup.bad_fields
    ],
    indirect=["world"],
)
def test_bad_fields_get_422_naming_the_field(world: World, change: dict, field: str) -> None:
    item = {**world.requests()[0], **change}
    response = world.post("/predict", json=[item])
    assert response.status_code == 422
    assert [e["loc"][-1] for e in response.json()["detail"]] == [field]


def test_missing_fields_and_malformed_json_get_422(world: World) -> None:
    required = [f.name for f in world.declaration.serving.request_fields if f.required]
    for name in required:
        item = world.requests()[0]
        del item[name]
        missing = world.post("/predict", json=item)
        assert missing.status_code == 422
        assert [e["loc"] for e in missing.json()["detail"]] == [[name]]
    malformed = world.post("/predict", content=b"{not json", headers=JSON)
    assert malformed.status_code == 422
    assert [e["type"] for e in malformed.json()["detail"]] == ["json_invalid"]


WRONG_TYPES: dict[str, tuple[Any, ...]] = {
    "int": (True, False, "7", "1_000", "1,000", 7.0),
    "hhmm": (True, "900", "9_00", 900.0),
    "float": (True, "7", "7.5", "1_000", "1,000", " 7 "),
    "str": (7, 7.5, True),
    "bool": (1, 0, "true", "yes"),
    "date": (20130704, "2013-07-04T00:00:00", "20130704", True),
}
"""Values of another JSON type for each declared field type: booleans as numbers, numeric
strings, separators, whole floats for integers, numbers as strings, timestamps as dates."""


def test_a_field_takes_its_own_json_type_only(world: World) -> None:
    """Every declared field, sent each wrong value in one list: a 422 naming each item and its
    field, nothing coerced (the property tests on the model are in ``test_contract``)."""
    item = world.requests()[0]
    fields = world.declaration.serving.request_fields
    changed = [(f.name, value) for f in fields for value in WRONG_TYPES[f.type]]

    response = world.post("/predict", json=[{**item, name: value} for name, value in changed])

    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [
        [i, name] for i, (name, _) in enumerate(changed)
    ]
    numeric = next(f.name for f in fields if f.type in ("int", "hhmm"))
    one = world.post("/predict", json={**item, numeric: True})
    assert one.json() == {
        "detail": [{"type": "int_type", "loc": [numeric], "msg": "Input should be a valid integer"}]
    }


def test_a_number_field_takes_json_integers(world: World) -> None:
    """JSON has one number type: a float field takes ``2`` as it takes ``2.0``."""
    item = world.requests()[0]
    for field in world.declaration.serving.request_fields:
        if field.type == "float":
            whole = {**item, field.name: int(item[field.name])}
            assert isinstance(whole[field.name], int)
            response = world.post(
                "/predict", json=[whole, {**whole, field.name: float(whole[field.name])}]
            )
            assert response.status_code == 200, field.name
            first, second = response.json()["predictions"]
            assert first[world.served.score_field] == second[world.served.score_field]


JSON_TYPES = (
    "application/json",
    "application/json; charset=utf-8",
    "Application/JSON;charset=UTF-8",
)
OTHER_TYPES = (
    "text/plain",
    "application/x-www-form-urlencoded",
    "application/xml",
    "application/json; charset=latin-1",
    "application/jsonl",
    None,  # no content type
)


def test_bodies_that_are_not_declared_json_get_415(world: World) -> None:
    """``application/json`` (UTF-8, its type name in any case) only; another type, or a body
    without one, is refused before parsing with the accepted type, on both operations with a
    body; a reload without a body needs none."""
    go_live(world, world.first_version)
    body = json.dumps(world.requests()[0]).encode()
    for content_type in JSON_TYPES:
        answered = world.post("/predict", content=body, headers={"content-type": content_type})
        assert answered.status_code == 200, content_type
    token = {"Authorization": f"Bearer {admin_token()}"}
    for content_type in OTHER_TYPES:
        headers = {} if content_type is None else {"content-type": content_type}
        for path, sent in (("/predict", body), ("/admin/reload", b"{}")):
            refused = world.post(path, content=sent, headers={**headers, **token})
            assert refused.status_code == 415, (path, content_type)
            assert refused.headers["accept"] == "application/json"
            assert "send application/json" in refused.json()["detail"]
    assert world.post("/admin/reload", headers=token).status_code == 200


def test_oversize_batches_get_413(world: World) -> None:
    item = world.requests()[0]
    most = world.declaration.serving.max_batch
    assert world.post("/predict", json=[item] * (most + 1)).status_code == 413
    assert world.post("/predict", json=[item] * most).status_code == 200


def test_admin_calls_need_the_token(world: World) -> None:
    assert world.post("/admin/reload").status_code == 401
    wrong = world.post("/admin/reload", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401
    right = world.post("/admin/reload", headers={"Authorization": f"Bearer {admin_token()}"})
    assert right.status_code == 200


def test_metrics_count_requests_errors_and_latency_by_version(world: World) -> None:
    go_live(world, world.first_version)
    item = world.requests()[0]
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
    """Single-item requests in a loop on each of ``clients`` threads, every answer kept."""

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


def _onnx_of(world: World, version: str) -> bytes:
    import mlflow

    run_id = mlflow.tracking.MlflowClient().get_model_version(world.model_name, version).run_id
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=ONNX_ARTIFACT)
    return Path(path).read_bytes()


@pytest.mark.slow
def test_rollouts_under_load_lose_no_request(world: World) -> None:
    """A good version goes live at one instant; a mismatched one is rolled back automatically;
    and a version the service cannot load never goes live. No request fails throughout."""
    go_live(world, world.first_version)
    good = register_copy(world, world.first_version)
    mismatched = register_linear(world, _onnx_of(world, world.first_version))
    unloadable = register_linear(world, b"not an onnx model")
    item = world.requests()[0]

    with Traffic(world.endpoint.url, item) as traffic:
        time.sleep(1)
        rolled_out = world.deploy(good)
        time.sleep(1)
        wrong = world.deploy(mismatched)
        time.sleep(1)
        refused = world.deploy(unloadable)
        time.sleep(1)

    assert rolled_out.success, _failure(rolled_out)
    assert not wrong.success
    assert "differ from the registered model" in _failure(wrong)
    assert not refused.success
    assert "reload refused (422)" in _failure(refused)
    assert registry.aliases(world.model_name) == registry.Aliases(good, world.first_version)
    assert world.get("/model").json()["version"] == good
    answers = [a for client in traffic.answers for a in client]
    assert len(answers) > 100
    assert {status for _, status, _ in answers} == {200}, "a request failed during a rollout"
    for client in traffic.answers:
        # each client saw the versions switch once per swap, never back and forth
        assert _runs_of([v for _, _, v in client]) == [world.first_version, good, mismatched,
                                                       good]  # fmt: skip


def test_a_version_over_the_latency_budget_is_not_promoted(world: World) -> None:
    """The smoke test times single requests; past the budget, the champion stays live."""
    go_live(world, world.first_version)
    copy = register_copy(world, world.first_version)

    result = world.deploy(copy, latency_budget_ms=0.001)

    assert not result.success
    assert "over the budget of 0.001 ms" in _failure(result)
    assert registry.alias_version(world.model_name, "champion") == world.first_version
    assert world.get("/model").json()["version"] == world.first_version


def test_a_failed_first_deploy_leaves_no_model_answering(world: World) -> None:
    """With no champion to go back to, the undo takes the failed version out of the service."""
    go_live(world, world.first_version)
    copy = register_copy(world, world.first_version)
    world.platform.resources["mlflow"].use()
    MlflowClient().delete_registered_model_alias(world.model_name, "champion")

    result = world.deploy(copy, latency_budget_ms=0.001)

    assert not result.success
    assert "The service now serves no model (there is no champion)" in _failure(result)
    assert registry.alias_version(world.model_name, "champion") is None
    assert world.get("/ready").status_code == 503
    assert world.post("/predict", json=world.requests()[:1]).status_code == 503
    go_live(world, world.first_version)  # as the other tests expect it
    assert world.get("/model").json()["version"] == world.first_version


def test_rollback_job_restores_the_previous_champion(world: World) -> None:
    second = register_copy(world, world.first_version)
    go_live(world, world.first_version)
    go_live(world, second)

    _forget_tracking_store(world)
    result = world.roll_back()

    assert result.success, _failure(result)
    assert registry.alias_version(world.model_name, "champion") == world.first_version
    assert world.get("/model").json()["version"] == world.first_version
    observations = world.platform.instance.fetch_observations(
        world.key("deployed_endpoint"), limit=1
    )
    assert observations.records[0].asset_observation.metadata["rolled_back_from"].value == second
    again = world.roll_back()
    assert not again.success  # nothing left to roll back to: says so, changes nothing
    assert registry.alias_version(world.model_name, "champion") == world.first_version


def test_a_rollback_the_service_refuses_changes_nothing(world: World) -> None:
    """When the previous champion cannot be loaded, the champion and the live model stay."""
    go_live(world, world.first_version)
    unloadable = register_linear(world, b"not an onnx model")
    registry.promote(world.model_name, unloadable)
    registry.promote(world.model_name, world.first_version)  # unloadable is previous now
    before = registry.aliases(world.model_name)

    result = world.roll_back()

    assert not result.success
    assert "reload refused (422)" in _failure(result)
    assert registry.aliases(world.model_name) == before
    assert world.get("/model").json()["version"] == world.first_version


@pytest.mark.parametrize("name", pipelines.names())
@pytest.mark.parametrize(
    ("url", "local"),
    [(None, True), ("http://127.0.0.1:9999", True), ("http://localhost:8700", True),
     ("https://predict.internal.example:443", False)],
)  # fmt: skip
def test_only_a_service_on_this_machine_may_be_started(
    monkeypatch: pytest.MonkeyPatch, name: str, url: str | None, local: bool
) -> None:
    port = pipelines.declaration(name).serving.port
    if url is None:
        monkeypatch.delenv(url_env_var(name), raising=False)
    else:
        monkeypatch.setenv(url_env_var(name), url)
    resolved = serving_url(name, port)
    assert resolved == (url or f"http://127.0.0.1:{port}")
    assert is_local(resolved) is local
    services = platform_resources([pipelines.declaration(n) for n in pipelines.names()])
    assert services["prediction_services"].urls[name] == resolved


def test_every_process_of_a_fresh_home_gets_the_same_admin_token(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The platform's steps and the services they start ask for the token at once on a fresh
    home: each gets the one token, never an empty file or an error."""
    monkeypatch.delenv(TOKEN_ENV_VAR, raising=False)
    for attempt in range(10):
        monkeypatch.setenv(HOME_ENV_VAR, str(home / str(attempt)))
        barrier, tokens = threading.Barrier(8), []

        def ask(barrier=barrier, tokens=tokens) -> None:
            barrier.wait()
            try:
                tokens.append(admin_token())
            except OSError as error:
                tokens.append(repr(error))

        threads = [threading.Thread(target=ask) for _ in range(barrier.parties)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stored = (home / str(attempt) / "serving" / "admin-token").read_text()
        assert tokens == [stored] * barrier.parties and len(stored) >= 32


def test_production_profile_starts_no_service_and_changes_nothing(world: World) -> None:
    """With the service on another machine and down, neither a deploy nor a rollback starts
    one, and neither changes the registry."""
    go_live(world, world.first_version)
    candidate = register_copy(world, world.first_version)
    registry.promote(world.model_name, candidate)
    registry.promote(world.model_name, world.first_version)  # a rollback has work to do
    before = registry.aliases(world.model_name)
    elsewhere = world.platform.with_services(**{world.name: ABSENT})

    deployed = world.deploy(candidate, resources=elsewhere)
    rolled_back = world.roll_back(resources=elsewhere)

    for result in (deployed, rolled_back):
        assert not result.success
        assert "does not answer" in _failure(result)
        assert url_env_var(world.name) in _failure(result)
    assert registry.aliases(world.model_name) == before
    assert world.get("/model").json()["version"] == world.first_version


def test_a_service_another_home_left_on_the_port_is_neither_used_nor_reloaded(
    home: Path,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A start on this home finds the flights port held by the service a previous home left
    running: the deploy and the rollback fail before they change anything, naming that home
    and what to do, and the service is left as it was (not ours to stop)."""
    previous = tmp_path_factory.mktemp("previous-home")
    [port] = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, HOME_ENV_VAR: str(previous)}
    env.pop(TRACKING_URI_ENV_VAR, None)
    service = subprocess.Popen(
        [sys.executable, "-m", "ml_assets.cli", "serve", "flights", "--port", str(port)],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_answering(url, "/health", service)
        monkeypatch.setenv(url_env_var("flights"), url)
        flights = pipelines.declaration("flights")
        resources = platform_resources([pipelines.declaration(n) for n in pipelines.names()])

        deployed = deploy(flights, "1", resources, instance)
        rolled_back = build_rollback_job(flights).execute_in_process(
            resources=resources, instance=instance, raise_on_error=False
        )

        for result in (deployed, rolled_back):
            assert not result.success
            failure = _failure(result)
            assert f"belongs to the home {previous}, not to this one ({home})" in failure
            assert f"{previous}/serving/flights.pid" in failure
            assert url_env_var("flights") in failure
        assert service.poll() is None
        health = httpx.get(f"{url}/health").json()
        assert health == {"status": "ok", "pipeline": "flights", "home": str(previous)}
        assert httpx.get(f"{url}/model").status_code == 404  # nothing was loaded into it
    finally:
        stop_groups([service], 10)


# batch predictions


def test_batch_predictions_score_every_row_with_the_champion(world: World) -> None:
    go_live(world, world.first_version)
    _forget_tracking_store(world)
    keys = world.partitions()[-2:]
    target = world.key("batch_predictions")
    result = world.materialize(
        [target],
        tags={"dagster/asset_partition_range_start": keys[0],
              "dagster/asset_partition_range_end": keys[-1]},
    )  # fmt: skip

    assert result.success
    world.platform.resources["mlflow"].use()
    model = world.registered(world.first_version)
    prediction, id_column = world.served.prediction, world.served.id_column
    declared = [c.name for c in GRAPH.get(target).metadata["dagster/column_schema"].columns]
    for key in keys:
        scored = read_partition(warehouse_url(), target, key)
        features = world.features(key)
        assert list(scored.columns) == declared
        assert scored[id_column].tolist() == features[id_column].tolist()
        assert set(scored["model_version"]) == {world.first_version}
        expected = model.predictor.predict({c: features[c].to_numpy() for c in features.columns})
        if world.task == CLASSIFY:
            probability = scored[f"{prediction}_probability"]
            np.testing.assert_allclose(probability, expected, rtol=0, atol=world.tolerance)
            decided = (probability >= model.threshold).tolist()
            assert scored[f"predicted_{prediction}"].tolist() == decided
        else:
            predicted = scored[f"predicted_{prediction}"]
            np.testing.assert_allclose(predicted, expected, rtol=0, atol=world.tolerance)


def test_a_model_needing_unreviewed_types_is_refused_not_unpickled(world: World) -> None:
    """The service trusts the reviewed types only, whatever the model's files declare."""
    import skops.io
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    model = world.declaration.model
    features = world.features()
    X = features[list(model.numeric)].fillna(0)
    dummy = DummyClassifier() if world.task == CLASSIFY else DummyRegressor()
    pipeline = make_pipeline(FunctionTransformer(operator.neg), dummy)
    pipeline.fit(X, features[model.target].fillna(0))
    declared = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
    assert declared == ["_operator.neg"]  # declared by the model itself, reviewed by nobody
    version = log_model(world, pipeline, X, declared)

    with pytest.raises(skops.io.exceptions.UntrustedTypesFoundException):
        load_version(world.model_name, version, world.served.features, world.task)


# two pipelines, one platform


def _untouched_state(world: World) -> tuple[dict, registry.Aliases]:
    """What another pipeline's deploy must not change: the live model (loaded when), its
    rollout and the registry's aliases (the prediction log's figures move with any request)."""
    described = world.get("/model").json()
    described.pop("prediction_log")
    return described, registry.aliases(world.model_name)


def test_each_pipeline_has_its_own_service_model_and_version(platform: Platform) -> None:
    worlds = [platform.world(name) for name in PIPELINES]
    for world in worlds:
        go_live(world, world.first_version)

    assert len({w.endpoint.url for w in worlds}) == len(worlds)
    assert len({w.model_name for w in worlds}) == len(worlds)
    for world in worlds:
        described = world.get("/model").json()
        assert (described["name"], described["version"], described["task"]) == (
            world.model_name, world.first_version, world.task
        )  # fmt: skip
        assert world.get("/health").json()["pipeline"] == world.name
        # a service answers its own pipeline's requests only
        for other in worlds:
            response = world.post("/predict", json=other.requests()[0])
            assert response.status_code == (200 if other is world else 422)


@pytest.mark.parametrize("acting", PIPELINES)
def test_deploying_or_rolling_back_one_pipeline_leaves_the_others_alone(
    platform: Platform, acting: str
) -> None:
    worlds = {name: platform.world(name) for name in PIPELINES}
    for world in worlds.values():
        go_live(world, world.first_version)
    actor = worlds[acting]
    others = [w for w in worlds.values() if w is not actor]
    before = [_untouched_state(w) for w in others]
    candidate = register_copy(actor, actor.first_version)

    deployed = actor.deploy(candidate)
    assert deployed.success, _failure(deployed)
    assert actor.get("/model").json()["version"] == candidate
    assert [_untouched_state(w) for w in others] == before

    rolled_back = actor.roll_back()
    assert rolled_back.success, _failure(rolled_back)
    assert actor.get("/model").json()["version"] == actor.first_version
    assert [_untouched_state(w) for w in others] == before


def test_a_pipeline_pointed_at_another_pipelines_service_touches_neither(
    platform: Platform,
) -> None:
    """A misconfigured URL (flights at the taxi service) fails the deploy and the rollback
    before anything changes, naming the variable to fix."""
    flights, taxi = platform.world("flights"), platform.world("taxi")
    for world in (flights, taxi):
        go_live(world, world.first_version)
    candidate = register_copy(flights, flights.first_version)
    registry.promote(flights.model_name, candidate)
    registry.promote(flights.model_name, flights.first_version)  # a rollback has work to do
    before = [_untouched_state(w) for w in (flights, taxi)]
    crossed = platform.with_services(flights=taxi.endpoint.url)

    deployed = flights.deploy(candidate, resources=crossed)
    rolled_back = flights.roll_back(resources=crossed)

    for result in (deployed, rolled_back):
        assert not result.success
        assert "taxi" in _failure(result) and url_env_var("flights") in _failure(result)
    assert [_untouched_state(w) for w in (flights, taxi)] == before


def test_pipelines_keep_separate_experiments_models_and_studies(platform: Platform) -> None:
    import mlflow
    import optuna

    from ml_assets.modeling.trials import open_storage

    worlds = [platform.world(name) for name in PIPELINES]
    client = mlflow.tracking.MlflowClient()
    experiments = {
        w.name: client.get_experiment_by_name(w.declaration.model.experiment).experiment_id
        for w in worlds
    }
    assert len(set(experiments.values())) == len(worlds)
    runs = mlflow.search_runs(search_all_experiments=True)
    assert set(runs["experiment_id"]) == set(experiments.values())  # none in Default
    for world in worlds:
        experiment = experiments[world.name]
        versions = client.search_model_versions(f"name='{world.model_name}'")
        assert versions
        assert {client.get_run(v.run_id).info.experiment_id for v in versions} == {experiment}
        study = runs[runs["run_id"] == world.study["mlflow_run_id"]]
        trials = runs[runs["tags.mlflow.parentRunId"] == world.study["mlflow_run_id"]]
        assert study["experiment_id"].tolist() == [experiment]
        assert len(trials) == 3 and set(trials["experiment_id"]) == {experiment}
    studies = [(w.study["study_name"], w.study["storage"]) for w in worlds]
    assert len({name for name, _ in studies}) == len({storage for _, storage in studies}) == 2
    for world, (name, storage) in zip(worlds, studies, strict=True):
        assert optuna.get_all_study_names(open_storage(storage)) == [name]
        trials = optuna.load_study(study_name=name, storage=open_storage(storage)).trials
        declared = {space.family for space in world.declaration.model.search_space}
        assert len(trials) == 3 and {t.params["family"] for t in trials} <= declared
