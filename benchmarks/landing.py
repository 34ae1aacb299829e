"""Files landing into the running platform: a year at once vs. the CLI backfill, and one new day.

Run as ``.venv/bin/python benchmarks/landing.py [--quick]`` from the project root. Three
temporary ``$ML_ASSETS_HOME``s, one after the other, so that no side competes with another for
the CPU:

- **daemon, a year**: ``ml-assets dev`` (webserver + daemon, nothing seeded, free ports, every
  pipeline's service URL on a free port) on an empty home; once both sensors of the platform have
  ticked, the publisher's export of 2013 (flights, weather, reference tables) lands at once: it is
  written to a staging folder and moved into the landing zone, so the whole year appears within
  milliseconds, as a bulk drop would. Timed from the moment the files are in place to the
  ``flight_features`` materialization of the year's last recorded partition (Dagster's own event
  timestamp). Every run of the data layers must succeed and no (asset, partition) may be
  materialized twice, counted from the runs' partition tags as the UI shows them. Model runs that
  automation starts once enough features exist are stopped with the daemon and not counted;
- **CLI backfill, the same year**: the docs' two ``dagster asset materialize`` commands, with
  ``benchmarks/backfill.py``'s selections and timing (the reference tables, then raw, clean and
  ``flight_features`` over the year as one single-run backfill), from process start to exit;
- **one new day**: ``ml-assets dev`` on another empty home with the first week landed and its
  features materialized (the trailing history a day's features read), then one more day at a
  time, each after the platform has settled: from the day's files in place to that day's
  ``flight_features`` materialization, with where the time went (sensor tick, run queue and
  launch, the runs, automation ticks);
- **a corrected day**: on the same platform, a corrected re-export of the week's first day (some
  of its lines were cut short by the export and are now rejected): from the files in place to
  the ``flight_features`` of the last landed day that reads it as history. The landing sensor's
  run rewrites the day and its own features; the history-refresh sensor must refresh every
  later day that reads it, once each, and nothing else.

Printed: both year walls and their ratio (target ≤ 3 times), each new day's latency (target
≤ 20 s, on the worst day) and the correction's (target ≤ 30 s). A failed or duplicated run, or
a partition never materialized, is a failed check (exit 1); a missed target is reported, not an
error.
``--quick`` lands ten days instead of the year and one new day: the same code, for the test
suite (the targets are the full run's).
"""

import argparse
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import backfill
from _common import (
    PROJECT_ROOT,
    Checks,
    benchmark_home,
    bytecode_note,
    declaration,
    enter_home,
    load_average,
    partition_keys,
    pipeline_names,
    target,
)
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG as RANGE_END
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG as RANGE_START

from ml_assets.processes import stop_groups

PIPELINE = "flights"
YEAR = ("2013-01-01", "2013-12-31")
QUICK_YEAR = ("2013-01-01", "2013-01-10")
HISTORY = ("2013-01-01", "2013-01-07")
"""Landed before the new days: the trailing week that a day's flight features read."""
NEW_DAYS, QUICK_NEW_DAYS = 3, 1
RATIO_TARGET = 3.0
NEW_DAY_TARGET_S = 20.0
CORRECTION_TARGET_S = 30.0
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
LOCATION = {"repositoryLocationName": "ml_assets", "repositoryName": "__repository__"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    """The first true value of ``predicate()``, polled every ``every`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Platform:
    """``ml-assets dev`` on one home, read through the webserver's GraphQL API as the UI is."""

    home: Path
    port: int
    process: subprocess.Popen

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.load(response)
        if "errors" in body:
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def serving(self) -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/server_info", timeout=2)
        except OSError:
            return False
        return True

    def ticked(self, sensor: str) -> bool:
        """``sensor`` has evaluated at least once (the daemon and code server are up)."""
        data = self.graphql(
            "query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { __typename "
            "... on Sensor { sensorState { ticks(limit: 1) { timestamp } } } } }",
            {"s": {**LOCATION, "sensorName": sensor}},
        )["sensorOrError"]
        return bool(data.get("sensorState", {}).get("ticks"))

    def ticks_since(self, sensor: str, since: float) -> list[float]:
        """Start times of ``sensor``'s ticks after ``since`` (Unix s)."""
        data = self.graphql(
            "query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { __typename "
            "... on Sensor { sensorState { ticks(limit: 10) { timestamp } } } } }",
            {"s": {**LOCATION, "sensorName": sensor}},
        )["sensorOrError"]
        return [t["timestamp"] for t in data["sensorState"]["ticks"] if t["timestamp"] > since]

    def tick_times(self, sensor: str) -> tuple[float, float]:
        """Median seconds between ``sensor``'s last ticks and median seconds each took."""
        data = self.graphql(
            "query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { __typename "
            "... on Sensor { sensorState { ticks(limit: 100) { timestamp endTimestamp } } } } }",
            {"s": {**LOCATION, "sensorName": sensor}},
        )["sensorOrError"]
        ticks = sorted(data["sensorState"]["ticks"], key=lambda t: t["timestamp"])
        starts = [t["timestamp"] for t in ticks]
        took = [t["endTimestamp"] - t["timestamp"] for t in ticks if t["endTimestamp"]]
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        return statistics.median(gaps or [0.0]), statistics.median(took or [0.0])

    def materializations(self, asset: str, partitions: Sequence[str]) -> dict[str, float]:
        """The latest materialization time (Unix s) of each of ``partitions`` that has one."""
        data = self.graphql(
            "query($k: AssetKeyInput!, $p: [String!]) { assetNodeOrError(assetKey: $k) { "
            "... on AssetNode { assetMaterializations(partitions: $p) { partition timestamp } } "
            "} }",
            {"k": {"path": [declaration(PIPELINE).prefix, asset]}, "p": list(partitions)},
        )["assetNodeOrError"]
        latest: dict[str, float] = {}
        for event in data.get("assetMaterializations", []):
            seconds = int(event["timestamp"]) / 1000
            latest[event["partition"]] = max(seconds, latest.get(event["partition"], 0.0))
        return latest

    def runs(self) -> list[dict]:
        data = self.graphql(
            "{ runsOrError(limit: 1000) { ... on Runs { results { runId status creationTime "
            "startTime endTime tags { key value } assetSelection { path } } } } }"
        )
        return data["runsOrError"]["results"]


@contextmanager
def running_platform(home: Path) -> Iterator[Platform]:
    """``ml-assets dev`` on ``home`` (nothing seeded), once both platform sensors have ticked;
    stopped afterwards with every process it started (runs and services included)."""
    from serving.settings import url_env_var

    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
    # every pipeline's service on a free port: none may meet a service already running
    env.update({url_env_var(name): f"http://127.0.0.1:{_free_port()}" for name in pipeline_names()})
    port = _free_port()
    command = [sys.executable, "-m", "ml_assets.cli", "dev", "--port", str(port),
               "--seed-partitions", "0"]  # fmt: skip
    began = time.perf_counter()
    with (home / "dev.log").open("w") as log:
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    platform = Platform(home, port, process)
    try:
        wait_for(platform.serving, 180, "the Dagster webserver", every=1)
        sensors = (f"{declaration(PIPELINE).prefix}_landing_zone_sensor", "automation")
        wait_for(lambda: all(map(platform.ticked, sensors)), 180, "the first sensor ticks", 1)
        print(f"  ml-assets dev up, sensors ticking: {time.perf_counter() - began:.1f} s")
        yield platform
    finally:
        for service in (home / "serving").glob("*.pid"):  # started by deployed_endpoint
            with suppress(ProcessLookupError, ValueError):
                os.killpg(int(service.read_text()), signal.SIGTERM)
        stop_groups([process], 60)


def land_at_once(home: Path, keys: Sequence[str], fault: str | None = None) -> float:
    """Publish ``keys`` (damaged by ``fault``, if given) into a staging folder, then move every
    file into the landing zone (same file system: a rename each); returns the Unix time the last
    file was in place."""
    from ml_assets import pipelines
    from resources.landing_zone import LandingZone

    staging = home / "staging"
    began = time.perf_counter()
    publish = pipelines.load(PIPELINE).publish
    staged = LandingZone(url=str(staging))
    if fault is None:
        publish(staged, keys)
    else:
        publish(staged, keys, fault=fault)
    published = time.perf_counter() - began
    landing = home / "landing"
    moved = 0
    for path in sorted(staging.rglob("*")):
        if path.is_file():
            destination = landing / path.relative_to(staging)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, destination)
            moved += 1
    landed = time.time()
    shutil.rmtree(staging)
    print(f"  landed {moved} files ({keys[0]}…{keys[-1]}; published in {published:.1f} s)")
    return landed


def _tag(run: dict, key: str) -> str | None:
    return next((t["value"] for t in run["tags"] if t["key"] == key), None)


def data_layer_assets() -> set[str]:
    """The pipeline's assets that files landing make stale: reference tables, raw, clean and
    rejected, features (the data-layer groups)."""
    from ml_assets.data.data_layers import CLEAN, FEATURES, INGEST, group
    from ml_assets.definitions import defs

    declared = declaration(PIPELINE)
    groups = {group(declared, layer) for layer in (INGEST, CLEAN, FEATURES)}
    return {
        spec.key.path[-1]
        for spec in defs.resolve_all_asset_specs()
        if spec.group_name in groups and spec.key.path[0] == declared.prefix
    }


def requested(runs: Sequence[dict], assets: set[str]) -> Counter:
    """How often each (asset, partition) of ``assets`` was materialized by ``runs`` (partition
    None: unpartitioned), range runs expanded, as ``tests/test_live_platform.py`` counts them."""
    from ml_assets.contract.dagster_terms import partitions_definition
    from ml_assets.definitions import defs

    keys = partitions_definition(declaration(PIPELINE).partitions).get_partition_keys()
    prefix = declaration(PIPELINE).prefix
    partitioned = {
        spec.key.path[-1]
        for spec in defs.resolve_all_asset_specs()
        if spec.key.path[0] == prefix and spec.partitions_def is not None
    }
    counted: Counter = Counter()
    for run in runs:
        start, end = _tag(run, RANGE_START), _tag(run, RANGE_END)
        partitions = (
            keys[keys.index(start) : keys.index(end) + 1]
            if start is not None and end is not None
            else [_tag(run, "dagster/partition")]
        )
        for key in run["assetSelection"] or []:
            name = key["path"][-1]
            if name in assets:
                counted.update((name, p) for p in (partitions if name in partitioned else [None]))
    return counted


def data_runs(platform: Platform, assets: set[str]) -> list[dict]:
    """The runs that materialize any of ``assets``."""
    return [
        run
        for run in platform.runs()
        if any(key["path"][-1] in assets for key in run["assetSelection"] or [])
    ]


def settled(platform: Platform, assets: set[str]) -> list[dict] | None:
    """The data-layer runs once none is queued or in progress, else None."""
    runs = data_runs(platform, assets)
    return runs if all(run["status"] in FINISHED for run in runs) else None


def settled_for_good(platform: Platform, assets: set[str], timeout: float) -> list[dict]:
    """The data-layer runs once none is queued or in progress and two automation ticks have
    started since the last one ended (so a partition it would request again has been)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = wait_for(lambda: settled(platform, assets), timeout, "the data-layer runs to end")
        ended = max((run["endTime"] or 0 for run in runs), default=0)
        wait_for(
            lambda ended=ended: len(platform.ticks_since("automation", ended)) >= 2,
            max(1.0, deadline - time.monotonic()),
            "two automation ticks after the last data-layer run",
            every=1,
        )
        if (again := settled(platform, assets)) is not None and len(again) == len(runs):
            return again


def origin(run: dict) -> str:
    if _tag(run, "dagster/backfill"):
        return "backfill"
    if sensor := _tag(run, "dagster/sensor_name"):
        shared = ("automation", "history_refresh")
        return sensor.replace("_", " ") if sensor in shared else "landing sensor"
    return "other"


def describe(run: dict, since: float, assets: set[str]) -> str:
    """One run's creation, start and end relative to ``since``, its origin and its assets."""
    chosen = sorted(k["path"][-1] for k in run["assetSelection"] or [] if k["path"][-1] in assets)
    start, end = _tag(run, RANGE_START), _tag(run, RANGE_END)
    partitions = f"{start}…{end}" if start else _tag(run, "dagster/partition") or "-"

    def at(value: float | None) -> str:
        return f"{value - since:+7.1f}" if value else "      -"

    return (
        f"  created {at(run['creationTime'])}  started {at(run['startTime'])}  ended "
        f"{at(run['endTime'])}  {run['status']:<8} {origin(run):<14} {partitions}: "
        f"{', '.join(chosen)}"
    )


def check_runs(checks: Checks, runs: Sequence[dict], assets: set[str], what: str) -> Counter:
    """Every run succeeded and nothing was materialized twice; returns the counts."""
    failed = [f"{r['runId'][:8]} {r['status']}" for r in runs if r["status"] != "SUCCESS"]
    checks.require(not failed, f"{what}: runs that did not succeed: {failed}")
    counts = requested(runs, assets)
    twice = sorted((k for k, n in counts.items() if n > 1), key=str)
    checks.require(not twice, f"{what}: materialized more than once: {twice[:10]}")
    return counts


@dataclass
class YearResult:
    wall_s: float
    runs: list[dict]
    model_runs: int


def daemon_year(home: Path, days: Sequence[str], checks: Checks) -> YearResult:
    """Land ``days`` at once into a running platform; time until every feature partition."""
    assets = data_layer_assets()
    features = declaration(PIPELINE).model.features_asset
    enter_home(home)
    with running_platform(home) as platform:
        landed = land_at_once(home, days)

        def all_features() -> dict[str, float] | None:
            found = platform.materializations(features, days)
            return found if len(found) == len(days) else None

        found = wait_for(all_features, 1800, f"{len(days)} {features} partitions", every=1)
        wall = max(found.values()) - landed
        # the runs that wrote the data layers end soon after (events after the last feature)
        runs = settled_for_good(platform, assets, 300)
        model_runs = len(platform.runs()) - len(runs)
    print(f"  every {features} partition materialized {wall:.1f} s after landing")
    for run in sorted(runs, key=lambda r: r["creationTime"]):
        print(describe(run, landed, assets))
    counts = check_runs(checks, runs, assets, "daemon year")
    missing = [day for day in days if counts[(features, day)] == 0]
    checks.require(not missing, f"daemon year: {features} never requested for {missing[:5]}")
    return YearResult(wall, runs, model_runs)


def cli_backfill(home: Path, days: Sequence[str]) -> float:
    """The docs' CLI backfill of ``days``, built from ``benchmarks/backfill.py``'s Dagster
    side (its selections and commands, timed by its ``run_measured``): the reference tables,
    then the data layers as one run, on the platform's embedded instance; wall seconds of both
    commands."""
    from ml_assets import pipelines
    from ml_assets.instance import instance_yaml
    from resources.landing_zone import default_landing_zone

    env = enter_home(home)
    pipelines.load(PIPELINE).publish(default_landing_zone(), days)
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(
        instance_yaml(dagster_home) + "telemetry:\n  enabled: false\n"
    )
    run_config = home / "run_config.json"  # JSON is YAML: the platform's default executor
    run_config.write_text(json.dumps({"execution": {"config": {"multiprocess": {}}}}))
    reference_tables, data_layers = backfill.selections()
    reference = backfill.run_measured(
        backfill._materialize(reference_tables, run_config), env, home / "cli_reference.log"
    )
    data = backfill.run_measured(
        backfill._materialize(data_layers, run_config, f"{days[0]}...{days[-1]}"),
        env,
        home / "cli_data_layers.log",
    )
    print(f"  reference tables {reference.wall_s:.1f} s, data layers {data.wall_s:.1f} s")
    return reference.wall_s + data.wall_s


def new_days(home: Path, count: int, checks: Checks) -> tuple[list[float], float]:
    """Latency of each of ``count`` new days landing, one at a time, after the history week;
    then of a corrected re-export of the week's first day (``corrected_day``)."""
    from ml_assets.contract.dagster_terms import partitions_definition

    assets = data_layer_assets()
    features = declaration(PIPELINE).model.features_asset
    history = partition_keys(PIPELINE, *HISTORY)
    all_keys = partitions_definition(declaration(PIPELINE).partitions).get_partition_keys()
    following = all_keys[all_keys.index(history[-1]) + 1 :][:count]
    latencies = []
    enter_home(home)
    with running_platform(home) as platform:
        land_at_once(home, history)
        wait_for(
            lambda: len(platform.materializations(features, history)) == len(history),
            600,
            "the history week's features",
            every=1,
        )
        settled_for_good(platform, assets, 300)
        for day in following:
            before = {run["runId"] for run in platform.runs()}
            landed = land_at_once(home, [day])
            found = wait_for(
                lambda day=day: platform.materializations(features, [day]),
                300,
                f"{features} of {day}",
                every=0.25,
            )
            latency = found[day] - landed
            latencies.append(latency)
            runs = settled_for_good(platform, assets, 300)
            new = [run for run in runs if run["runId"] not in before]
            print(f"  {day}: {features} materialized {latency:.1f} s after landing; runs:")
            for run in sorted(new, key=lambda r: r["creationTime"]):
                print(describe(run, landed, assets))
            counts = check_runs(checks, new, assets, f"new day {day}")
            checks.require(
                counts[(features, day)] == 1, f"new day {day}: {features} not requested once"
            )
        correction = corrected_day(platform, history[0], [*history, *following], checks)
        prefix = declaration(PIPELINE).prefix
        sensors = (
            f"{prefix}_landing_zone_sensor",
            "history_refresh",
            "automation",
        )
        for sensor in sensors:
            every, took = platform.tick_times(sensor)
            print(f"  {sensor} ticks: every {every:.1f} s, {took:.2f} s each (medians)")
    return latencies, correction


def corrected_day(platform: Platform, day: str, landed: Sequence[str], checks: Checks) -> float:
    """A corrected re-export of ``day`` (lines cut short by the export, now rejected): seconds
    from the files in place to the features of the last landed day that reads ``day`` as
    history; each reader refreshed once, nothing else rewritten."""
    assets = data_layer_assets()
    features = declaration(PIPELINE).model.features_asset
    from ml_assets.pipelines.flights.config import TRAILING_DAYS

    readers = [d for d in landed if day < d <= _days_after(day, TRAILING_DAYS)]
    before = {run["runId"] for run in platform.runs()}
    landed_at = land_at_once(platform.home, [day], fault="corrupt-lines")

    def refreshed() -> dict[str, float] | None:
        found = platform.materializations(features, readers)
        return found if all(found.get(d, 0) > landed_at for d in readers) else None

    found = wait_for(refreshed, 300, f"{features} of {readers[0]}…{readers[-1]}", every=0.25)
    latency = max(found.values()) - landed_at
    runs = settled_for_good(platform, assets, 300)
    new = [run for run in runs if run["runId"] not in before]
    print(f"  corrected {day}: {features} of its {len(readers)} readers refreshed "
          f"{latency:.1f} s after landing; runs:")  # fmt: skip
    for run in sorted(new, key=lambda r: r["creationTime"]):
        print(describe(run, landed_at, assets))
    counts = check_runs(checks, new, assets, f"corrected {day}")
    rewritten = sorted(p for (name, p), n in counts.items() if name == features and n)
    checks.require(
        rewritten == [day, *readers], f"corrected {day}: {features} rewritten for {rewritten}"
    )
    return latency


def _days_after(day: str, days: int) -> str:
    from datetime import date, timedelta

    return (date.fromisoformat(day) + timedelta(days=days)).isoformat()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="ten days and one new day (tests)")
    parser.add_argument("--new-days", type=int, help=f"default {NEW_DAYS} (quick: 1)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary homes")
    args = parser.parse_args()
    days = partition_keys(PIPELINE, *(QUICK_YEAR if args.quick else YEAR))
    count = args.new_days or (QUICK_NEW_DAYS if args.quick else NEW_DAYS)
    checks = Checks()
    print(f"load average before: {load_average()}")
    if note := bytecode_note():
        print(note)

    print(f"daemon: {len(days)} days landed at once into a running `ml-assets dev`")
    with benchmark_home("ml_assets_landing_daemon_", args.keep) as home:
        year = daemon_year(home, days, checks)
    print(f"CLI backfill of the same {len(days)} days")
    with benchmark_home("ml_assets_landing_cli_", args.keep) as home:
        cli_wall = cli_backfill(home, days)
    print(f"one new day at a time after a landed week ({count})")
    with benchmark_home("ml_assets_landing_day_", args.keep) as home:
        latencies, correction = new_days(home, count, checks)

    by_origin = Counter(origin(run) for run in year.runs)
    quick = " (quick: the year's targets)" if args.quick else ""
    rows = [
        (f"daemon wall s ({len(days)} days landed at once)", f"{year.wall_s:.1f}"),
        ("daemon data-layer runs", f"{len(year.runs)} ("
         + ", ".join(f"{n} {name}" for name, n in sorted(by_origin.items())) + ")"),
        ("model runs automation started (not timed)", str(year.model_runs)),
        (f"CLI backfill wall s ({len(days)} days)", f"{cli_wall:.1f}"),
        ("new day latency s", " ".join(f"{s:.1f}" for s in latencies)
         + f" (median {statistics.median(latencies):.1f}, worst {max(latencies):.1f})"),
        ("correction latency s (last reading day refreshed)", f"{correction:.1f}"),
        ("load average after (1/5/15 min)", load_average()),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    print("\n" + "\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    print(target("ratio daemon / CLI backfill", year.wall_s / cli_wall, RATIO_TARGET, True, "3")
          + quick)  # fmt: skip
    met = max(latencies) <= NEW_DAY_TARGET_S
    print(
        f"new day, worst latency: {max(latencies):.1f} s (target ≤ {NEW_DAY_TARGET_S:g} s: "
        f"{'met' if met else 'NOT met'})"
    )
    met = correction <= CORRECTION_TARGET_S
    print(
        f"corrected day, last reader refreshed: {correction:.1f} s (target ≤ "
        f"{CORRECTION_TARGET_S:g} s: {'met' if met else 'NOT met'})"
    )
    return checks.report()


if __name__ == "__main__":
    sys.exit(main())
