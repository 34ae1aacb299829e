"""The monitor layer through its public surface: the service's prediction log, the
``served_predictions``, ``live_performance``, ``feature_drift`` and ``rollout_comparison``
assets, shadow and canary rollouts with their sensor and job, and the chain from degraded
outcomes to a retrained model in service.

The worlds are the deploy layer's (``serving_fixtures``): each pipeline's data landed and
materialized, a tiny model trained, registered and served.
"""

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import dagster as dg
import httpx
import numpy as np
import pandas as pd
import pytest
from serving_fixtures import (
    World,
    free_ports,
    go_live,
    register_copy,
    register_linear,
    wait_answering,
)

from jobs.rollout import build_rollout_job
from ml_assets import cli, pipelines
from ml_assets.contract.dagster_terms import asset_key
from ml_assets.contract.names import (
    CANARY,
    FEATURE_DRIFT_CHECK,
    FULL,
    LIVE_PERFORMANCE_CHECK,
    ROLLED_BACK,
    ROLLOUT_DECISION,
    SHADOW,
)
from ml_assets.contract.prediction_log_layout import OUTSIDE
from ml_assets.data.data_layers import CLEAN, FEATURES, INGEST, group
from ml_assets.definitions import defs
from ml_assets.deployment import registry
from ml_assets.home import PROJECT_ROOT, prediction_log_url, warehouse_url
from ml_assets.modeling.layer import MODEL_ASSET_NAMES
from ml_assets.monitoring.alerts import alert_message
from ml_assets.pipelines.flights.publish import day_keys
from resources.landing_zone import default_landing_zone
from resources.parquet_io_manager import read_partition
from sensors.prediction_log import build_prediction_log_sensor
from sensors.rollout import build_rollout_sensor
from serving.challenger import in_canary

pytestmark = pytest.mark.integration

RANGE = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def _answers(world: World, items: list[dict], batch: int = 1) -> list[dict]:
    """The service's answers to ``items``, sent ``batch`` at a time over one connection."""
    answers = []
    with httpx.Client(base_url=world.endpoint.url, timeout=30) as client:
        for at in range(0, len(items), batch):
            chunk = items[at : at + batch]
            response = client.post("/predict", json=chunk if batch > 1 else chunk[0])
            assert response.status_code == 200, response.text
            answers.append(response.json())
    return answers


def _flushed(world: World, timeout: float = 30.0) -> dict:
    """Once the service's prediction log has nothing pending: its figures."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        figures = world.get("/model").json()["prediction_log"]
        if figures["pending"] == 0:
            return figures
        time.sleep(0.1)
    raise AssertionError(f"the prediction log still has predictions pending: {figures}")


def _materialize(world: World, names, partitions: list[str], **kwargs):
    """Materialize ``names`` (asset names, or a selection) for ``partitions`` in one run."""
    tags = {RANGE[0]: partitions[0], RANGE[1]: partitions[-1]} if len(partitions) > 1 else {}
    selection = names if isinstance(names, dg.AssetSelection) else [world.key(n) for n in names]
    result = world.materialize(
        selection,
        partition_key=partitions[0] if len(partitions) == 1 else None,
        tags=tags,
        raise_on_error=False,
        **kwargs,
    )
    assert result.success, [str(e) for e in result.get_step_failure_events()]
    return result


def _metadata(world: World, name: str, partition: str) -> dict:
    records = world.platform.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=world.key(name), asset_partitions=[partition]), limit=1
    ).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def _evaluation(world: World, asset: str, check: str, partition: str):
    """The newest evaluation of ``check`` on ``partition``."""
    history = world.platform.instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(world.key(asset), check), limit=50
    )
    for execution in history:
        if execution.partition == partition and execution.event is not None:
            return execution.event.dagster_event.event_specific_data
    raise AssertionError(f"no evaluation of {check} on {partition}")


def _mine(world: World, partition: str, request_ids: set[str]) -> pd.DataFrame:
    rows = read_partition(warehouse_url(), world.key("served_predictions"), partition)
    return rows[rows["request_id"].isin(request_ids)]


# the prediction log and served_predictions


def test_every_prediction_is_logged_once_and_ingested_idempotently(flights: World) -> None:
    """Flights date each request (``monitoring.event_date_field``): its predictions go to the
    partition of the day flown, where the outcomes land."""
    world = flights
    go_live(world, world.first_version)
    partition = world.setup.landed[1]
    items = world.requests(partition)[:40]
    answers = _answers(world, items[:25]) + _answers(world, items[25:], batch=15)
    ids = {a["request_id"] for a in answers}
    assert len(ids) == 26
    _flushed(world)
    sensor = build_prediction_log_sensor(world.declaration)
    log = {"prediction_log": world.platform.resources["prediction_log"]}
    tick = sensor(dg.build_sensor_context(instance=world.platform.instance, resources=log))
    ranges = [(r.tags.get(RANGE[0], r.partition_key), r.tags.get(RANGE[1], r.partition_key))
              for r in tick.run_requests]  # fmt: skip
    assert any(first <= partition <= last for first, last in ranges), ranges
    again = sensor(
        dg.build_sensor_context(instance=world.platform.instance, cursor=tick.cursor, resources=log)
    )
    assert again.run_requests == []

    _materialize(world, ["served_predictions"], [partition])
    first = _mine(world, partition, ids)
    _materialize(world, ["served_predictions"], [partition])
    second = _mine(world, partition, ids)

    assert len(first) == len(items) == len(second)  # each prediction once, every time
    assert set(first["request_id"]) == ids
    assert set(first["model_version"]) == {world.first_version}
    assert first["returned"].all() and set(first["role"]) == {"champion"}
    served = world.served
    by_request = {a["request_id"]: a["predictions"] for a in answers}
    for request_id, rows in first.groupby("request_id"):
        answered = [p[served.score_field] for p in by_request[request_id]]
        np.testing.assert_allclose(rows.sort_values("item_index")["score"], answered, rtol=1e-6)
    first_field = next(iter(served.request.model_fields))
    assert first["request"].str.contains(f'"{first_field}"').all()
    metadata = _metadata(world, "served_predictions", partition)
    assert metadata["log_files"] >= 1 and metadata["dagster/row_count"] >= len(items)


def test_predictions_outside_the_partitions_are_kept_aside(world: World) -> None:
    """A flight dated after the pipeline's year, or a taxi trip served today (taxi dates its
    predictions by when they were served, and its partitions end in May 2022): kept in the
    log's ``_outside`` folder and counted, not lost and not in any partition."""
    go_live(world, world.first_version)
    item = world.requests()[0]
    dated = world.declaration.monitoring.event_date_field
    if dated is not None:
        item = {**item, dated: "2014-03-01"}
    else:
        assert dt.date.today() >= world.declaration.partitions.end
    [answer] = _answers(world, [item])
    assert _flushed(world)["outside_partitions"] >= 1
    files = (Path(prediction_log_url()) / world.name / OUTSIDE).glob("*.parquet")
    outside = pd.concat(pd.read_parquet(path) for path in files)
    assert answer["request_id"] in set(outside["request_id"])


def test_a_killed_service_loses_at_most_its_last_unflushed_batch(
    flights: World, capsys: pytest.CaptureFixture
) -> None:
    """A second service process on the same home is killed (SIGKILL) under load: every
    prediction it logged was answered, and every one answered more than a flush interval
    before the kill was logged."""
    go_live(flights, flights.first_version)
    [port] = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "ml_assets.cli", "serve", "flights", "--port", str(port)],
        cwd=PROJECT_ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_answering(url, "/ready", process)
        items = flights.requests()[:50]
        answered: list[tuple[float, str]] = []
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=url, timeout=10) as client:
                while not stop.is_set():
                    try:
                        response = client.post("/predict", json=items[len(answered) % 50])
                    except httpx.TransportError:
                        return
                    if response.status_code == 200:
                        answered.append((time.monotonic(), response.json()["request_id"]))

        thread = threading.Thread(target=load)
        thread.start()
        time.sleep(3.0)
        killed_at = time.monotonic()
        os.killpg(process.pid, signal.SIGKILL)
        stop.set()
        thread.join()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    logged = set()
    day = flights.setup.landed[1]
    for path in (Path(prediction_log_url()) / "flights").glob("*/*.parquet"):
        logged |= set(pd.read_parquet(path, columns=["request_id"])["request_id"])
    ids = {request_id for _, request_id in answered}
    flush = flights.declaration.monitoring.log_flush_seconds
    lost = ids - logged
    settled = {request_id for at, request_id in answered if at < killed_at - flush - 0.5}
    with capsys.disabled():
        print(
            f"\nprediction log under SIGKILL: {len(ids)} answered in 3 s, {len(ids & logged)} "
            f"logged, {len(lost)} lost (flush interval {flush} s; day {day})"
        )
    assert ids, "the load answered nothing"
    assert settled <= logged, f"{len(settled - logged)} predictions older than a flush were lost"
    assert len(lost) < len(ids)


# live performance and drift


def test_live_performance_measures_the_champion_against_the_outcomes(world: World) -> None:
    go_live(world, world.first_version)
    partitions = world.partitions()
    last = partitions[-1]
    items = world.requests(last)[:30]
    _answers(world, items)
    _flushed(world)
    _materialize(world, ["batch_predictions", "served_predictions", "live_performance"], partitions)
    model = world.declaration.model
    features = world.features(last)
    batch = read_partition(warehouse_url(), world.key("batch_predictions"), last)
    metadata = _metadata(world, "live_performance", last)

    known = features[model.target].notna()
    assert metadata["batch/coverage"] == pytest.approx(known.mean())
    assert metadata["batch/predictions"] == len(features)
    if world.task == "regression":
        predicted = batch[f"predicted_{world.declaration.serving.prediction}"]
        expected = np.mean(np.abs(predicted[known.to_numpy()] - features[model.target][known]))
        assert metadata["batch/mae"] == pytest.approx(expected, rel=1e-9)
    else:
        from sklearn.metrics import log_loss

        expected = log_loss(features[model.target], batch[world.served.score_field], labels=[0, 1])
        assert metadata["batch/log_loss"] == pytest.approx(expected, rel=1e-9)
    if world.declaration.monitoring.event_date_field is not None:  # else: served today
        assert metadata["served/predictions"] >= len(items)
    metric = model.live_metric(world.declaration.monitoring)
    assert f"test/{metric}" in metadata
    evaluation = _evaluation(world, "live_performance", LIVE_PERFORMANCE_CHECK, last)
    assert evaluation.passed  # every landed partition was trained on: undecided
    assert "undecided" in evaluation.description


def test_feature_drift_of_training_partitions_is_small(world: World) -> None:
    partitions = world.partitions()
    _materialize(world, ["feature_drift"], partitions)
    last = partitions[-1]
    table = read_partition(warehouse_url(), world.key("feature_drift"), last)
    model = world.declaration.model
    monitoring = world.declaration.monitoring
    unwatched = {f for f in model.features if monitoring.drift_reference_of(f) == "none"}
    assert set(table["feature"]) == set(model.features) - unwatched
    assert (table["psi"] >= 0).all()
    metadata = _metadata(world, "feature_drift", last)
    assert metadata["max_psi"] == pytest.approx(table["psi"].max())
    assert "| feature" in metadata["report"]
    listed = metadata["unwatched"]
    assert all(f in listed for f in unwatched) and (unwatched or listed == "none")


# shadow and canary


def _rollout(world: World) -> dict:
    return world.get("/model").json()["rollout"]


@pytest.mark.slow
def test_a_shadow_is_scored_and_logged_but_never_answers(flights: World) -> None:
    go_live(flights, flights.first_version)
    challenger = register_copy(flights, flights.first_version)
    result = flights.deploy(challenger, staged=True)
    assert result.success
    state = _rollout(flights)
    assert state["stage"] == SHADOW and state["challenger"]["version"] == challenger
    assert registry.aliases(flights.model_name).champion == flights.first_version

    partition = flights.setup.landed[1]
    items = flights.requests(partition)[:20]
    answers = _answers(flights, items)
    assert {a["model_version"] for a in answers} == {flights.first_version}
    stats = _rollout(flights)["challenger"]
    assert stats["requests"] == 20 and stats["answered"] == 0 and stats["errors"] == 0
    assert stats["agreement"] == 1.0  # the same model
    _flushed(flights)
    _materialize(flights, ["served_predictions"], [partition])
    rows = _mine(flights, partition, {a["request_id"] for a in answers})
    by_role = rows.groupby("role")["returned"].agg(["count", "sum"])
    assert by_role.loc["champion"].tolist() == [20, 20]
    assert by_role.loc["challenger"].tolist() == [20, 0]
    metrics = flights.get("/metrics").text
    assert f'model_version="{challenger}",role="challenger"' in metrics

    # the comparison on outcomes: a copy of the champion is neither better nor worse
    _answers(flights, flights.requests(partition)[20:80])
    _flushed(flights)
    _materialize(flights, ["batch_predictions", "served_predictions", "live_performance"],
                 flights.partitions())  # fmt: skip
    result = flights.materialize([flights.key("rollout_comparison")])
    comparison = result.output_for_node(flights.op("rollout_comparison"))
    assert comparison["champion"] == flights.first_version
    assert comparison["challenger"] == challenger
    assert comparison["paired"] >= 60
    assert comparison["decision"] == "undecided"
    # the same model scores alike; a shadow scored in a batch may differ in the last float32 bits
    assert comparison["difference_low"] == pytest.approx(0.0, abs=1e-5)
    assert comparison["difference_high"] == pytest.approx(0.0, abs=1e-5)
    by_version = {v["version"]: v for v in comparison["versions"]}
    assert by_version[challenger]["ci_low"] <= by_version[challenger]["mae"]
    assert by_version[challenger]["mae"] <= by_version[challenger]["ci_high"]


def _shadow_process(world: World) -> int:
    """The pid of the service's shadow process (its child started by multiprocessing)."""
    service = int((world.platform.home / "serving" / f"{world.name}.pid").read_text())
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except (OSError, NotADirectoryError):
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == service and b"spawn_main" in command:
            return int(entry.name)
    raise AssertionError(f"the {world.name} service (pid {service}) has no shadow process")


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"  # a zombie has died, its parent not yet told


def test_a_shadow_process_that_died_is_replaced_and_loses_nothing(flights: World) -> None:
    """Killed between batches, the shadow process is started again for the next one: the
    champion answers throughout, and the challenger scores every request, none failed."""
    go_live(flights, flights.first_version)
    challenger = register_copy(flights, flights.first_version)
    assert flights.deploy(challenger, staged=True).success
    items = flights.requests(flights.setup.landed[1])[:20]
    _answers(flights, items[:10])
    assert _rollout(flights)["challenger"]["requests"] == 10
    first = _shadow_process(flights)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _running(first) and time.monotonic() < deadline:
        time.sleep(0.05)
    answers = _answers(flights, items[10:])
    assert {a["model_version"] for a in answers} == {flights.first_version}
    stats = _rollout(flights)["challenger"]
    deadline = time.monotonic() + 60  # the new process starts and loads the challenger
    while stats["requests"] < 20 and time.monotonic() < deadline:
        time.sleep(0.5)
        stats = _rollout(flights)["challenger"]
    assert (stats["requests"], stats["errors"], stats["agreement"]) == (20, 0, 1.0)
    assert _shadow_process(flights) != first


def test_a_canary_answers_its_sticky_share_then_the_sensor_promotes_it(flights: World) -> None:
    go_live(flights, flights.first_version)
    challenger = register_copy(flights, flights.first_version)
    rules = flights.declaration.rollout
    assert flights.deploy(challenger, staged=True).success
    items = flights.requests()
    sensor = build_rollout_sensor(flights.declaration)
    job = build_rollout_job(flights.declaration)

    def step() -> dg.ExecuteInProcessResult | None:
        with dg.build_sensor_context(
            instance=flights.platform.instance, resources=flights.platform.resources
        ) as context:
            tick = sensor(context)
        if not isinstance(tick, dg.SensorResult) or not tick.run_requests:
            return None
        return job.execute_in_process(
            resources=flights.platform.resources, instance=flights.platform.instance
        )

    _answers(flights, items[: rules.shadow_requests - 1])
    assert step() is None  # one request short of the shadow's
    _answers(flights, items[rules.shadow_requests - 1 : rules.shadow_requests])
    assert step().success
    assert _rollout(flights)["stage"] == CANARY

    chosen = items[: rules.canary_requests]
    answers = _answers(flights, chosen)
    keys = [str(a["predictions"][0][flights.served.id_column]) for a in answers]
    expected = [challenger if in_canary(k, rules.canary_share) else flights.first_version
                for k in keys]  # fmt: skip
    assert [a["model_version"] for a in answers] == expected
    assert 0 < expected.count(challenger) < len(expected)
    again = _answers(flights, chosen[:20])  # sticky: the same keys, the same versions
    assert [a["model_version"] for a in again] == expected[:20]

    assert step().success
    assert _rollout(flights)["stage"] == FULL
    assert registry.aliases(flights.model_name).champion == challenger
    assert registry.stage(flights.model_name, challenger) == FULL
    observed = flights.platform.instance.fetch_observations(
        flights.key("deployed_endpoint"), limit=2
    ).records
    decisions = [r.asset_observation.metadata["rollout/decision"].value for r in observed]
    assert decisions == ["promote", "advance"]


@pytest.mark.slow
def test_a_challenger_that_disagrees_is_rolled_back_automatically(world: World) -> None:
    """A well-formed model fitted to the opposite target passes its smoke test (the service
    scores it as the registry does) but is worse than the champion live (on the outcomes
    where its predictions have them, else by disagreeing): after the shadow's requests the
    sensor's step rolls it back, and the alerts sensor would post that."""
    go_live(world, world.first_version)
    contrary = register_linear(world, flip=True)
    assert world.deploy(contrary, staged=True).success
    assert _rollout(world)["stage"] == SHADOW
    rules = world.declaration.rollout
    answers = _answers(world, world.requests()[: rules.shadow_requests])
    _flushed(world)  # the job judges on the outcomes of what the log holds
    assert {a["model_version"] for a in answers} == {world.first_version}
    agreement = _rollout(world)["challenger"]["agreement"]
    assert agreement < rules.min_agreement

    with dg.build_sensor_context(
        instance=world.platform.instance, resources=world.platform.resources
    ) as context:
        [request] = build_rollout_sensor(world.declaration)(context).run_requests
    assert request.tags["rollout/decision"] == "roll_back"
    result = build_rollout_job(world.declaration).execute_in_process(
        resources=world.platform.resources, instance=world.platform.instance
    )
    assert result.success
    assert _rollout(world)["stage"] == FULL
    assert registry.aliases(world.model_name).champion == world.first_version
    assert registry.stage(world.model_name, contrary) == ROLLED_BACK
    [observed] = world.platform.instance.fetch_observations(
        world.key("deployed_endpoint"), limit=1
    ).records
    metadata = {k: v.value for k, v in observed.asset_observation.metadata.items()}
    assert metadata[ROLLOUT_DECISION] == ROLLED_BACK
    # flights' served predictions meet outcomes (they are dated); taxi's are served today
    judged = "on outcomes" if world.declaration.monitoring.event_date_field else "agreement"
    assert judged in metadata["rollout/reason"]
    alert = alert_message(observed)
    assert alert is not None and contrary in alert["text"]


def test_a_person_can_roll_a_challenger_back(
    flights: World, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ml-assets rollout NAME`` shows where the rollout stands and what the bars decide;
    ``--roll-back`` runs the rollout job with a person's decision."""
    go_live(flights, flights.first_version)
    challenger = register_copy(flights, flights.first_version)
    assert flights.deploy(challenger, staged=True).success
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # the CLI's: the platform home's
    assert cli.main(["rollout", "flights"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["stage"] == SHADOW and shown["challenger"]["version"] == challenger
    assert shown["decision"]["action"] == "wait"

    assert cli.main(["rollout", "flights", "--roll-back"]) == 0
    assert "roll_back: done" in capsys.readouterr().out
    assert _rollout(flights)["stage"] == FULL
    assert registry.aliases(flights.model_name).champion == flights.first_version
    assert registry.stage(flights.model_name, challenger) == ROLLED_BACK
    assert cli.main(["rollout", "flights", "--promote"]) == 1  # nothing is rolling out now


# the chain: degraded outcomes → failed check → retraining → the new version in service


def _requested(world: World, name: str) -> bool:
    """Whether an automation tick now would request ``name``."""
    result = dg.evaluate_automation_conditions(
        defs=defs, instance=world.platform.instance,
        asset_selection=dg.AssetSelection.assets(world.key(name)),
    )  # fmt: skip
    return result.total_requested > 0


@pytest.mark.slow
def test_degraded_outcomes_retrain_and_roll_out_a_new_version(
    flights: World, capsys: pytest.CaptureFixture
) -> None:
    go_live(flights, flights.first_version)
    began = time.monotonic()
    timings: dict[str, float] = {}
    late = day_keys(date(2013, 1, 29), date(2013, 2, 4))
    pipelines.load("flights").publish(default_landing_zone(), late, fault="late-flights")
    declared = flights.declaration
    layers = dg.AssetSelection.groups(
        *(group(declared, layer) for layer in (INGEST, CLEAN, FEATURES))
    )
    tables = dg.AssetSelection.assets(*(asset_key(declared, s.name) for s in declared.sources
                                        if not s.partitioned))  # fmt: skip
    scored = dg.AssetSelection.assets(flights.key("batch_predictions"),
                                      flights.key("served_predictions"))  # fmt: skip
    _materialize(flights, (layers - tables) | scored, late)
    timings["late week landed and scored"] = time.monotonic() - began
    assert not _requested(flights, "training_set")

    _materialize(flights, ["live_performance", "feature_drift"], late)
    evaluation = _evaluation(flights, "live_performance", LIVE_PERFORMANCE_CHECK, late[-1])
    timings["live performance checked"] = time.monotonic() - began
    assert not evaluation.passed, evaluation.description
    assert "degraded" in evaluation.description
    drift = _evaluation(flights, "feature_drift", FEATURE_DRIFT_CHECK, late[-1])
    assert not drift.passed and "route_arr_delay_mean_7d" in drift.description

    assert _requested(flights, "training_set")
    timings["automation requests retraining"] = time.monotonic() - began
    config = {**flights.setup.training, "window_end": late[-1]}
    chain = flights.materialize(
        [*(flights.key(n) for n in MODEL_ASSET_NAMES), flights.key("deployed_endpoint")],
        run_config={"ops": {
            flights.op("training_set"): {"config": config},
            flights.op("hyperparameter_study"): {"config": {"n_trials": 3, "workers": 1}},
            flights.op("model_evaluation"): {"config": {"min_improvement_over_baseline": -100.0,
                                                        "max_regression_vs_champion": 100.0}},
        }},
    )  # fmt: skip
    assert chain.success
    version = chain.output_for_node(flights.op("registered_model"))["version"]
    timings["retrained, registered, in shadow"] = time.monotonic() - began
    assert _rollout(flights)["stage"] == SHADOW
    assert not _requested(flights, "training_set")  # the failure was answered

    rules = flights.declaration.rollout
    items = flights.requests(late[-1])
    job = build_rollout_job(flights.declaration)
    for needed in (rules.shadow_requests, rules.canary_requests):
        _answers(flights, items[:needed])
        _flushed(flights)  # the job judges on the outcomes of what the log holds
        result = job.execute_in_process(
            resources=flights.platform.resources, instance=flights.platform.instance
        )
        assert result.success
    timings["promoted"] = time.monotonic() - began
    assert registry.aliases(flights.model_name).champion == version
    with capsys.disabled():
        print("\nthe chain, seconds since the late week landed: " + ", ".join(
            f"{what} {at:.1f}" for what, at in timings.items()))  # fmt: skip
