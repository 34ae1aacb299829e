"""Full-year backfill of the flights data layers: through Dagster vs. the same work in a loop.

Run as ``.venv/bin/python benchmarks/backfill.py [--quick]`` from the project root. On a
temporary ``$ML_ASSETS_HOME`` it lands 2013 with the publisher, then:

- **Dagster**: the docs' two commands, ``dagster asset materialize`` of the reference tables
  and then of the data layers (raw, clean and rejected, ``flight_features``) as one single-run
  backfill, first over the range's first quarter and then over the whole range, each a real
  run on the platform's embedded instance (``ml_assets.instance``) in a temporary
  ``$DAGSTER_HOME``, with the platform's multiprocess executor unless
  ``--executor in_process`` (``--instance-yaml`` swaps the instance, e.g. for
  PostgreSQL or Dagster's stock SQLite storage). The online feature snapshots, which the
  serving app reads, are not data layers and the direct side does not write them either;
- **direct**: one plain Python process doing the assets' work day by day (parse, clean, trailing
  stats over the previous days, features, the same Pandera checks, one Parquet file per
  partition and asset), with no Dagster.

Both sides are timed from process start to exit. Their peak memory is sampled from ``/proc``
over their process tree: the largest sum of RSS (pages a forked step process shares with the
forkserver it came from count in both) and the largest sum of PSS (``smaps_rollup``: each
shared page split between its sharers, so counted once). Memory must not grow with the range:
the whole range's PSS peak is compared with the quarter's (target ≤ 1.3 times) and with
600 MB. The flight features of both sides must agree (row counts of every partition, whole
frames for sampled days), else the exit code is 1. A run that fails is an error too. Missing a
speed or memory target is reported, not an error. The Dagster run's event log then tells where
the whole range's time went: starting processes, recording events, and the work itself.
``--quick`` backfills three days, then ten, and compares them all: the same code, for the test
suite (the targets are the full year's, so there they are reported only).
"""

import argparse
import itertools
import json
import math
import random
import sys
import time
from collections import deque
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from _common import (
    BIN,
    Checks,
    benchmark_home,
    bytecode_note,
    declaration,
    enter_home,
    load_average,
    partition_keys,
)
from _process_tree import Measured, run_measured

PIPELINE = "flights"
"""The direct side repeats the flights assets' work, so this benchmark is the flights one."""
START, END = date(2013, 1, 1), date(2013, 12, 31)
QUICK_END = date(2013, 1, 10)
RATIO_TARGET = 3.0
DAGSTER_WALL_TARGET_S = 60.0
PEAK_PSS_TARGET_MB = 600.0
GROWTH_TARGET = 1.3
"""The range's PSS peak over its first quarter's, at most."""
ALWAYS_SAMPLED = ("2013-01-01", "2013-03-10", "2013-11-03", "2013-12-31")
"""Days worth comparing whatever the seed: no history, the two DST switches, no weather."""


def _days(start: date, end: date) -> list[str]:
    return partition_keys(PIPELINE, start.isoformat(), end.isoformat())


def selections() -> tuple[str, str]:
    """``dagster asset materialize`` selections of the reference tables and of the data layers
    (raw, clean and rejected, features; not the online snapshot, which the direct side does not
    write either), from the declaration."""
    from ml_assets.data.data_layers import CLEAN, group

    declared = declaration(PIPELINE)
    prefix = declared.prefix
    reference = " or ".join(
        f'key:"{prefix}/{s.name}"' for s in declared.sources if not s.partitioned
    )
    raw = " or ".join(f'key:"{prefix}/raw_{s.name}"' for s in declared.sources if s.partitioned)
    features = f'key:"{prefix}/{declared.model.features_asset}"'
    layers = f"{raw} or group:{group(declared, CLEAN)} or {features}"
    return reference, layers


def _materialize(selection: str, config: Path, partition_range: str | None = None) -> list[str]:
    command = [
        str(BIN / "dagster"),
        "asset", "materialize",
        "-m", "ml_assets.definitions",
        "--select", selection,
        "-c", str(config),
    ]  # fmt: skip
    return [*command, "--partition-range", partition_range] if partition_range else command


def run_dagster(
    home: Path,
    env: dict[str, str],
    days: list[str],
    instance_yaml: Path | None,
    executor: str,
) -> tuple[Measured, Measured, Measured]:
    """The reference tables, then the data layers as one run over the first quarter of
    ``days``, then as one run over all of them."""
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    from ml_assets.instance import instance_yaml as platform_instance

    if instance_yaml:
        settings = instance_yaml.read_text().replace("$DAGSTER_HOME", str(dagster_home))
    else:  # the instance ``make run`` starts
        settings = platform_instance(dagster_home)
    (dagster_home / "dagster.yaml").write_text(settings + "telemetry:\n  enabled: false\n")
    run_config = home / "run_config.json"  # JSON is YAML: the executor chosen for the runs
    run_config.write_text(json.dumps({"execution": {"config": {executor: {}}}}))
    reference_tables, data_layers = selections()
    reference = run_measured(
        _materialize(reference_tables, run_config), env, home / "dagster_reference.log"
    )
    quarter, data = (
        run_measured(
            _materialize(data_layers, run_config, f"{keys[0]}...{keys[-1]}"),
            env,
            home / f"dagster_data_layers_{len(keys)}.log",
        )
        for keys in (quarter_of(days), days)
    )
    return reference, quarter, data


def quarter_of(days: list[str]) -> list[str]:
    """The first quarter of ``days`` (at least one)."""
    return days[: max(1, math.ceil(len(days) / 4))]


def dagster_breakdown(measured: Measured) -> list[tuple[str, float, str]]:
    """Where the wall time of the latest run went, from its event log.

    Consecutive events of one type in one step (365 materializations, 730 check evaluations)
    are written one by one; the gaps inside such a burst are the cost of recording events.
    The gap before a burst's first event is the work that produced it (parse, clean, checks,
    Parquet writes).
    """
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        run = instance.get_runs(limit=1)[0]
        created = instance.get_run_record_by_id(run.run_id).create_timestamp.timestamp()
        events = [e for e in instance.all_logs(run.run_id) if e.dagster_event]
    first = {}
    for event in events:
        first.setdefault(event.dagster_event_type, event.timestamp)
    planned = [e for e in events if "PLANNED" in e.dagster_event_type.value]
    run_start = first[dg.DagsterEventType.RUN_START]
    planned_s = (planned[-1].timestamp - created) if planned else 0.0
    rows = [
        ("start CLI, load code, build plan", created - measured.started_at, ""),
        (
            "record planned events",
            planned_s,
            f"{len(planned)} events, {1000 * planned_s / max(len(planned), 1):.0f} ms each",
        ),
        ("to RUN_START", run_start - (planned[-1].timestamp if planned else created), ""),
    ]
    by_step: dict[str, list] = {}
    for event in events:
        if event.step_key:
            by_step.setdefault(event.step_key, []).append(event)
    for step, step_events in by_step.items():
        worker = [e for e in step_events if e.dagster_event_type.value == "STEP_WORKER_STARTING"]
        began = next(e for e in step_events if e.dagster_event_type.value == "STEP_START")
        spawn = began.timestamp - worker[0].timestamp if worker else 0.0
        logging_s, logged, work_s = 0.0, 0, 0.0
        body = [e for e in step_events if e.timestamp >= began.timestamp]
        for previous, event in itertools.pairwise(body):
            gap = event.timestamp - previous.timestamp
            if event.dagster_event_type == previous.dagster_event_type:
                logging_s, logged = logging_s + gap, logged + 1
            else:
                work_s += gap
        if worker:
            rows.append((f"{step}: start step process", spawn, "spawn, import code location"))
        rows += [
            (f"{step}: work", work_s, "compute, checks, Parquet"),
            (
                f"{step}: record events",
                logging_s,
                f"{logged} events in bursts, {1000 * logging_s / max(logged, 1):.0f} ms each",
            ),
        ]
    end = measured.started_at + measured.wall_s
    last = max(e.timestamp for e in events)
    rows.append(("last event to process exit", end - last, f"{len(events)} events in the run"))
    return rows


def direct_worker(start: date, end: date, checks: bool) -> None:
    """The assets' work for every day in one process, no Dagster; prints phase timings as JSON.

    Reads the landing zone and writes ``<home>/direct/flights/<asset>/<day>.parquet`` with the
    IO manager's encoding, keeping only the previous days' clean flights in memory.
    """
    import io

    import pandas as pd

    from ml_assets.data.checks import row_conservation_outcome, schema_outcome
    from ml_assets.data.cleaning import PARSE_ERROR, parse_landed, parse_landed_csv
    from ml_assets.home import ml_assets_home
    from ml_assets.pipelines.flights import config, schemas
    from ml_assets.pipelines.flights.cleaning import clean_flights, clean_weather
    from ml_assets.pipelines.flights.features import FeatureLookups, lookup_tables
    from resources.landing_zone import default_landing_zone
    from resources.paths import to_upath, write_bytes_atomically

    phases = dict.fromkeys(("parse", "clean", "features", "checks", "write"), 0.0)
    landing = default_landing_zone()
    warehouse = to_upath(str(ml_assets_home() / "direct" / config.KEY_PREFIX))

    def timed(phase: str, function: Callable[..., Any], *args: Any) -> Any:
        began = time.perf_counter()
        result = function(*args)
        phases[phase] += time.perf_counter() - began
        return result

    def write(asset: str, day: str, frame: pd.DataFrame) -> None:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        write_bytes_atomically(warehouse / asset / f"{day}.parquet", buffer.getvalue())

    def check(schema: Any, frame: pd.DataFrame) -> None:
        if checks and not schema_outcome(schema, frame).passed:
            raise RuntimeError(f"{schema.name} failed on the direct side")

    # the reference tables as the reference assets read them; each clean gets those its
    # source's code rules name, as the clean assets do
    tables = {
        name: parse_landed(landing.read_bytes(name, name), "csv", typed=True)
        for name in config.REFERENCE_TABLES
    }
    planes = tables["planes"]
    references = {
        source.name: {
            rule.reference_table: tables[rule.reference_table]
            for rule in source.codes.values()
            if rule.reference_table
        }
        for source in (config.FLIGHTS, config.WEATHER)
    }
    history: deque[pd.DataFrame] = deque(maxlen=config.TRAILING_DAYS)
    for day in _days(start, end):
        raws = {
            source: timed("parse", parse_landed_csv, landing.read_bytes(source, day))
            for source in (config.FLIGHTS_SOURCE, config.WEATHER_SOURCE)
        }
        for source, schema in (("flights", schemas.RAW_FLIGHTS), ("weather", schemas.RAW_WEATHER)):
            timed("checks", check, schema, raws[source])
            timed("checks", lambda f: int(f[PARSE_ERROR].notna().sum()), raws[source])
            timed("write", write, f"raw_{source}", day, raws[source])
        flights, weather = (
            timed("clean", clean, raws[source], date.fromisoformat(day), references[source])
            for clean, source in (
                (clean_flights, config.FLIGHTS_SOURCE),
                (clean_weather, config.WEATHER_SOURCE),
            )
        )
        for source, cleaned, schema in (
            ("flights", flights, schemas.FLIGHTS_CLEAN),
            ("weather", weather, schemas.WEATHER_CLEAN),
        ):
            timed("checks", check, schema, cleaned.clean)
            timed(
                "checks",
                row_conservation_outcome,
                len(raws[source]),
                cleaned.kept_raw_rows,
                len(cleaned.rejected),
            )
            timed("write", write, f"{source}_clean", day, cleaned.clean)
            timed("write", write, f"{source}_rejected", day, cleaned.rejected)

        began = time.perf_counter()
        past = pd.concat(history, ignore_index=True) if history else flights.clean.iloc[:0]
        # as the flight_features asset: the lookups of the day, then its flights' rows
        features = FeatureLookups(**lookup_tables(past, weather.clean, planes)).frame(flights.clean)
        phases["features"] += time.perf_counter() - began
        timed("checks", check, schemas.FLIGHT_FEATURES, features)
        timed("write", write, "flight_features", day, features)
        history.append(flights.clean)
    print(json.dumps({"phases": phases}))


def _compare(home: Path, days: list[str], samples: int, seed: int) -> list[str]:
    """Differences between the two sides' ``flight_features``; empty when they agree."""
    import pandas as pd

    dagster_dir = home / "warehouse" / "flights" / "flight_features"
    direct_dir = home / "direct" / "flights" / "flight_features"
    problems = []
    for day in days:
        counts = [
            pd.read_parquet(d / f"{day}.parquet", columns=["flight_id"]).shape[0]
            if (d / f"{day}.parquet").exists()
            else None
            for d in (dagster_dir, direct_dir)
        ]
        if counts[0] is None or counts[0] != counts[1]:
            problems.append(f"{day}: {counts[0]} rows through Dagster, {counts[1]} direct")
    chosen = sorted(
        {*(d for d in ALWAYS_SAMPLED if d in days), *random.Random(seed).sample(days, samples)}
        if samples < len(days)
        else days
    )
    for day in chosen:
        try:
            pd.testing.assert_frame_equal(
                pd.read_parquet(dagster_dir / f"{day}.parquet"),
                pd.read_parquet(direct_dir / f"{day}.parquet"),
            )
        except (AssertionError, FileNotFoundError) as error:
            problems.append(f"{day}: frames differ: {str(error).splitlines()[0]}")
    print(f"compared row counts of {len(days)} partitions and whole frames of {len(chosen)}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="ten days, all compared (tests)")
    parser.add_argument("--start", type=date.fromisoformat, default=START)
    parser.add_argument("--end", type=date.fromisoformat, help="default: 2013-12-31 (quick: 01-10)")
    parser.add_argument("--samples", type=int, default=6, help="random days to compare in full")
    parser.add_argument("--seed", type=int, default=2013)
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    parser.add_argument(
        "--no-checks", action="store_true", help="direct side skips the Pandera checks"
    )
    parser.add_argument(
        "--executor",
        choices=("multiprocess", "in_process"),
        default="multiprocess",
        help="the run's executor, chosen through run config",
    )
    parser.add_argument(
        "--instance-yaml",
        type=Path,
        help="dagster.yaml for the temporary instance ($DAGSTER_HOME in it is substituted)",
    )
    parser.add_argument("--direct-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    end = args.end or (QUICK_END if args.quick else END)
    if args.direct_worker:
        direct_worker(args.start, end, checks=not args.no_checks)
        return 0
    with benchmark_home("ml_assets_backfill_", args.keep) as home:
        return benchmark(home, args, end)


def benchmark(home: Path, args: argparse.Namespace, end: date) -> int:
    from ml_assets import pipelines
    from resources.landing_zone import default_landing_zone

    env = enter_home(home)
    days = _days(args.start, end)
    began = time.perf_counter()
    pipelines.load(PIPELINE).publish(default_landing_zone(), days)
    print(f"home {home}; published {len(days)} days in {time.perf_counter() - began:.1f} s")
    print(f"load average before: {load_average()}")
    if note := bytecode_note():
        print(note)

    reference, quarter, data = run_dagster(home, env, days, args.instance_yaml, args.executor)
    quarter_days = len(quarter_of(days))
    print(
        f"dagster ({args.executor} executor): reference tables {reference.wall_s:.1f} s, "
        f"data layers {quarter.wall_s:.1f} s ({quarter_days} days), "
        f"{data.wall_s:.1f} s ({len(days)} days)"
    )
    worker = [sys.executable, __file__, "--direct-worker", "--start", days[0], "--end", days[-1]]
    direct = run_measured(
        worker + (["--no-checks"] if args.no_checks else []), env, home / "direct.log"
    )
    report = json.loads(direct.stdout.strip().splitlines()[-1])
    print(
        "direct phases: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in report["phases"].items())
        + f" (sum {sum(report['phases'].values()):.1f} s)"
    )

    print("\nwhere the data layers run's wall time went (event log timestamps):")
    for name, seconds, note in dagster_breakdown(data):
        print(f"  {name:<44} {seconds:7.1f} s  {note}")
    print()
    samples = len(days) if args.quick else min(args.samples, len(days))
    problems = _compare(home, days, samples, args.seed)
    ratio = data.wall_s / direct.wall_s
    met = ratio <= RATIO_TARGET and data.wall_s < DAGSTER_WALL_TARGET_S
    quick = " (quick: the year's targets)" if args.quick else ""
    verdict = ("yes" if met else "no") + quick
    growth = data.peak_tree_pss_mb / quarter.peak_tree_pss_mb
    memory_met = data.peak_tree_pss_mb <= PEAK_PSS_TARGET_MB and growth <= GROWTH_TARGET
    rows = [
        ("dagster wall s (data layers run)", f"{data.wall_s:.1f}"),
        ("dagster wall s (+ reference tables)", f"{data.wall_s + reference.wall_s:.1f}"),
        ("direct wall s", f"{direct.wall_s:.1f}"),
        ("dagster / direct CPU s (all processes)", f"{data.cpu_s:.1f} / {direct.cpu_s:.1f}"),
        ("ratio dagster / direct", f"{ratio:.2f} (target ≤ {RATIO_TARGET:g})"),
        ("dagster peak MB (tree / largest process)",
         f"{data.peak_tree_mb:.0f} / {data.peak_process_mb:.0f}"),
        ("direct peak MB (tree / largest process)",
         f"{direct.peak_tree_mb:.0f} / {direct.peak_process_mb:.0f}"),
        ("targets met (ratio ≤ 3, dagster < 60 s)", verdict),
        (f"dagster quarter: {quarter_days} days wall s", f"{quarter.wall_s:.1f}"),
        ("dagster peak MB, quarter / range: tree RSS",
         f"{quarter.peak_tree_mb:.0f} / {data.peak_tree_mb:.0f}"),
        ("dagster peak MB, quarter / range: tree PSS",
         f"{quarter.peak_tree_pss_mb:.0f} / {data.peak_tree_pss_mb:.0f}"),
        ("direct peak MB: tree PSS", f"{direct.peak_tree_pss_mb:.0f}"),
        ("peak PSS range / quarter", f"{growth:.2f} (target ≤ {GROWTH_TARGET:g})"),
        (f"memory targets met (PSS ≤ {PEAK_PSS_TARGET_MB:.0f} MB, ≤ {GROWTH_TARGET:g} x)",
         ("yes" if memory_met else "no") + quick),
        ("flight_features identical", "yes" if not problems else "NO"),
        ("load average after (1/5/15 min)", load_average()),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    checks = Checks()
    for problem in problems:
        checks.require(False, f"mismatch: {problem}")
    return checks.report()


if __name__ == "__main__":
    sys.exit(main())
