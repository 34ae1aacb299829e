"""Faults of the stream source against the machine's real RabbitMQ, each event in raw exactly
once: the consumer's connection cut mid-read (it resumes), every connection cut mid-read as a
broker restart cuts them (the run fails before writing, the next one replays), the consumer's
process killed before or after writing (the next run replays), and a late event under both
policies. A restart is emulated by a TCP proxy in front of the broker that cuts the connections
(``tests/tcp_cut_proxy.py``): the broker itself, which other tests use, is never restarted."""

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from stream_fixtures import URL_VARIABLE, World, broker, stream_queue
from tcp_cut_proxy import CutProxy

from ml_assets.contract.dagster_terms import asset_key
from ml_assets.data.sources.stream import CLOSED_AT, NEXT_OFFSET
from ml_assets.instance import embedded_instance_yaml
from ml_assets.pipelines.taxi.publish import stream_declaration, trip_events
from sensors.stream_source import build_stream_source_sensor

pytestmark = [pytest.mark.integration]

JANUARY, FEBRUARY = "2022-01-01", "2022-02-01"
EVENTS = 600
CUT_AFTER_BYTES = 60_000
"""About a third of ``EVENTS`` events, as the broker sends them."""


def _trips(month: str, count: int = EVENTS) -> list[bytes]:
    """The first ``count`` trips of ``month`` as the taxi publisher sends them."""
    return list(itertools.islice(trip_events([month]), count))


def _more_january(count: int) -> list[bytes]:
    """``count`` January trips the data set does not have (new ids, their times January's)."""
    trips = [json.loads(event) for event in _trips(JANUARY, count)]
    return [json.dumps({**trip, "trip_id": trip["trip_id"] + 100_000}).encode() for trip in trips]


@pytest.fixture
def queue() -> Iterator[str]:
    with stream_queue() as name:
        yield name


@pytest.fixture
def instance(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    """The embedded profile's instance in ``$DAGSTER_HOME``, which a process the test starts
    opens too; the broker's URL in the environment."""
    dagster_home = Path(os.environ["DAGSTER_HOME"])
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(embedded_instance_yaml(dagster_home))
    monkeypatch.setenv(URL_VARIABLE, "amqp://guest:guest@127.0.0.1:5672/%2F")
    with dg.DagsterInstance.get() as instance:
        yield instance


def _exactly_once(world: World, month: str, published: int) -> pd.DataFrame:
    raw = world.stored("raw_trips", month)
    assert len(raw) == published and raw["trip_id"].is_unique
    metadata = world.materialization(month)
    assert metadata is not None and metadata["source/rows_in_raw"] == published
    return raw


@pytest.mark.parametrize("every", [False, True], ids=["consumer-cut", "broker-restart"])
def test_connections_cut_mid_read_lose_nothing_and_double_nothing(
    home: Path,
    instance: dg.DagsterInstance,
    queue: str,
    monkeypatch: pytest.MonkeyPatch,
    every: bool,
) -> None:
    """The consumer's connection alone cut (an operator's ``close_connection``, a network
    fault): the read resumes after the last event it had, each read once. Every connection cut
    (a broker restart, its consumer lock with them): the run fails before writing anything and
    records nothing; the next run reads every event once."""
    published = broker().publish(queue, _trips(JANUARY))
    with CutProxy("127.0.0.1", 5672) as proxy:
        monkeypatch.setenv(URL_VARIABLE, f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F")
        world = World(home, instance, stream_declaration(queue, prefetch=50))
        proxy.cut_after(CUT_AFTER_BYTES, every=every)
        result = world.materialize([JANUARY], raise_on_error=False)
        assert proxy.cuts == (3 if every else 1)  # the read's, the watermark's and the lock's
        assert result.success is not every
        if every:
            (failure,) = [e for e in result.all_events if e.is_step_failure]
            assert "lost the lock" in str(failure.event_specific_data.error)
            assert world.materialization(JANUARY) is None
            assert not (home / "warehouse" / "taxi" / "raw_trips" / f"{JANUARY}.parquet").exists()
            assert world.materialize([JANUARY]).success
        _exactly_once(world, JANUARY, published)
    metadata = world.materialization(JANUARY)
    assert metadata["source/events_read"] == published  # none read twice
    assert metadata["source/retries"] == (0 if every else 1)
    assert metadata[NEXT_OFFSET] == published


def test_a_consumer_killed_before_or_after_writing_replays_its_events_once(
    home: Path, instance: dg.DagsterInstance, queue: str
) -> None:
    """January's first trips loaded, then 300 more January events: a run killed (SIGKILL) as
    it was about to write leaves the partition as it was; one killed after writing, before
    Dagster recorded the materialization, leaves the new rows written but the offsets where
    they were. The next run consumes the 300 again and January holds each event once."""
    world = World(home, instance, stream_declaration(queue))
    first = broker().publish(queue, _trips(JANUARY))
    assert world.materialize([JANUARY]).success
    more = broker().publish(queue, _more_january(300))
    for when, rows in (("before", first), ("after", first + more)):
        killed = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("stream_killed_consumer.py")), queue,
             JANUARY, when],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert killed.returncode == -9, killed.stderr[-2000:]
        assert len(world.stored("raw_trips", JANUARY)) == rows
        assert world.materialization(JANUARY)[NEXT_OFFSET] == first
    assert world.materialize([JANUARY]).success  # the killed consumers' lock went with them
    _exactly_once(world, JANUARY, first + more)
    metadata = world.materialization(JANUARY)
    assert metadata["source/events_new"] == more
    assert metadata[NEXT_OFFSET] == first + more


@pytest.mark.parametrize("policy", ["reopen", "reject"])
def test_a_late_event_reopens_its_partition_or_is_rejected_with_its_reason(
    home: Path, instance: dg.DagsterInstance, queue: str, policy: str
) -> None:
    """January's and February's first trips loaded in one run: January closed as the run read
    February's events. A January trip that comes after is late: ``reopen`` adds it (the sensor
    requests January); ``reject`` leaves January as it was, and the sensor requests nothing but
    records the event with its reason, as the next run of January does."""
    declaration = stream_declaration(queue, late_events=policy)
    world = World(home, instance, declaration)
    january = broker().publish(queue, _trips(JANUARY))
    february = broker().publish(queue, _trips(FEBRUARY))
    assert world.materialize([JANUARY, FEBRUARY]).success
    assert world.materialization(JANUARY)[CLOSED_AT] == {JANUARY: january, FEBRUARY: None}
    sensor = build_stream_source_sensor(declaration, declaration.source("trips"))
    resources = {"stream_city": broker(), "warehouse": world.resources["warehouse"]}
    definitions = dg.Definitions(
        assets=[a for a in world.assets if world.raw in a.keys],
        sensors=[sensor],
        resources=resources,
    )

    def tick(cursor: str | None) -> Any:
        with dg.build_sensor_context(
            instance=instance, cursor=cursor, resources=resources, definitions=definitions
        ) as context:
            return sensor.evaluate_tick(context)

    seen = tick(None)
    assert seen.run_requests == []
    (late,) = _more_january(1)
    broker().publish(queue, [late])
    after = tick(seen.cursor)
    if policy == "reopen":
        (request,) = after.run_requests
        assert request.partition_key == JANUARY and after.asset_events == []
    else:
        assert after.run_requests == []
        (observation,) = after.asset_events
        assert observation.partition == JANUARY
        assert observation.metadata["source/rejected_events"].value == 1
        assert "late_event (rejected)" in observation.metadata["source/rejected"].value
    assert world.materialize([JANUARY]).success
    rows = january + (1 if policy == "reopen" else 0)
    raw = _exactly_once(world, JANUARY, rows)
    assert (raw["trip_id"] == str(json.loads(late)["trip_id"])).any() == (policy == "reopen")
    metadata = world.materialization(JANUARY)
    assert metadata["source/late_events"] == 1 and metadata["source/late_policy"] == policy
    assert ("reopened" if policy == "reopen" else "rejected") in metadata["source/late"]
    assert metadata[NEXT_OFFSET] == january + february + 1
    assert len(world.stored("raw_trips", FEBRUARY)) == february


def test_events_that_belong_to_no_partition_are_counted_and_never_written(
    home: Path, instance: dg.DagsterInstance, queue: str
) -> None:
    """Not JSON, no event time, a time outside the partitions: counted and listed with their
    reasons by the run and by the sensor, never written; January's trips are. A field missing
    from an event is a missing value (the cleaning rejects the row); missing from every event of
    a partition, it fails the partition's blocking check, as a file without the column would."""
    declaration = stream_declaration(queue)
    world = World(home, instance, declaration)
    trips = _trips(JANUARY, 50)
    first = json.loads(trips[0])
    unplaced = [
        b"\x00 not json",
        json.dumps({k: v for k, v in first.items() if k != "started_at"}).encode(),
        json.dumps({**first, "trip_id": 1, "started_at": "2023-06-01T10:00:00"}).encode(),
    ]
    broker().publish(queue, [*trips, *unplaced])
    assert world.materialize([JANUARY]).success
    _exactly_once(world, JANUARY, 50)
    metadata = world.materialization(JANUARY)
    assert metadata["source/events_read"] == 53 and metadata["source/unplaced_events"] == 3
    for reason in ("unreadable: not JSON", "no_event_time: started_at=None", "outside_partitions"):
        assert reason in metadata["source/unplaced"]
    sensor = build_stream_source_sensor(declaration, declaration.source("trips"))
    resources = {"stream_city": broker(), "warehouse": world.resources["warehouse"]}
    definitions = dg.Definitions(assets=world.assets, sensors=[sensor], resources=resources)
    with dg.build_sensor_context(
        instance=instance, resources=resources, definitions=definitions
    ) as context:
        tick = sensor.evaluate_tick(context)
    assert tick.run_requests == []
    (observation,) = tick.asset_events
    assert observation.partition is None
    assert observation.metadata["source/rejected_events"].value == 3
    # a field gone from one event: its value is missing, and the cleaning rejects the row
    (trip,) = [json.loads(event) for event in _more_january(1)]
    broker().publish(
        queue, [json.dumps({k: v for k, v in trip.items() if k != "company"}).encode()]
    )
    clean = [world.raw, *(asset_key(declaration, n) for n in ("trips_clean", "trips_rejected"))]
    assert world.materialize([JANUARY], dg.AssetSelection.assets(*clean)).success
    rejected = world.stored("trips_rejected", JANUARY)
    assert rejected["trip_id"].tolist() == [str(trip["trip_id"])]
    assert len(world.stored("trips_clean", JANUARY)) == 50
    # a field gone from every event of a partition: its blocking check fails, naming it
    february = [
        {k: v for k, v in json.loads(e).items() if k != "company"} for e in _trips(FEBRUARY, 5)
    ]
    broker().publish(queue, [json.dumps(event).encode() for event in february])
    result = world.materialize([FEBRUARY], dg.AssetSelection.assets(*clean), raise_on_error=False)
    (check,) = [e for e in result.get_asset_check_evaluations() if e.asset_key == world.raw]
    assert not check.passed and "company" in str(check.metadata)
    assert not any(m.asset_key != world.raw for m in result.get_asset_materialization_events())
