"""Ingestion: the flights from PostgreSQL into raw partitions through the platform, beside the
fastest plain reader of the same rows, in the same run; the weather from a rate-limited REST
API at the rate it declares.

Run as ``.venv/bin/python benchmarks/ingestion.py [--quick]`` from the project root (needs the
machine's PostgreSQL on 127.0.0.1:5432, as the tests do). On a temporary ``$ML_ASSETS_HOME``
and a fresh PostgreSQL database it writes the flights day by day with the publisher
(``publish_to_databases``, as ``ml-assets publish flights --to sql`` does), then:

- **platform**: a process that materializes ``raw_flights`` of the flights declaration with its
  ``flights`` source switched to ``kind: sql`` (the declaration the sql tests use), over the
  range's first quarter and then the whole range, each one run on the platform's embedded
  instance: the ``sql`` kind's range read (one streamed dlt query cut into partitions), the
  rows as text, the landed-schema check, one Parquet file per day, Dagster's events;
- **COPY**: a process that reads the same rows with PostgreSQL's ``COPY (SELECT …) TO STDOUT``
  as CSV into an Arrow table (psycopg2 and pyarrow's CSV reader; ADBC and connectorx are not
  installed here).

Both are timed from process start to exit (imports included, as a step process pays them),
their rows/s compared (target: the platform at least half the reader's), and the platform's
peak memory over its process tree (PSS) compared with 600 MB and with its quarter's (at most
1.3 times). Every row the database holds for the range must be in raw once (counted in the
database and in the Parquet files), else the exit code is 1; a missed target is reported.

**REST** (``_rest_ingestion.rest_rate``): the flights publisher's weather API serves the real
hourly weather; ``raw_weather`` of a month (quick: three days) with its source switched to
``kind: rest`` declaring 20 requests a second: the rate the API saw (its request log's arrival
times) against the declared one, target within 10% below it and no second above it.

**Stream** (``_stream_ingestion.stream_rate``): the taxi trips published as events on a
RabbitMQ stream queue of their own, then read into their raw monthly partitions by the taxi
declaration switched to ``kind: stream`` (quick: two months, 3,680 events; full: the four
months five times over, 50,000): events/s published, into raw and end to end, every event in
raw once.
``--quick`` does it over ten days (three, then ten): the same code, for the test suite.
"""

import argparse
import sys
import time
import uuid
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from _common import BIN, Checks, benchmark_home, enter_home, load_average, partition_keys, target
from _process_tree import Measured, run_measured
from _rest_ingestion import rest_rate
from _stream_ingestion import stream_rate

if TYPE_CHECKING:
    from ml_assets.contract.declaration import PipelineDeclaration

PIPELINE = "flights"
SOURCE = "flights"
START, END, QUICK_END = date(2013, 1, 1), date(2013, 12, 31), date(2013, 1, 10)
QUARTER_DAYS, QUICK_QUARTER_DAYS = 90, 3
RATIO_TARGET = 0.5
PEAK_PSS_TARGET_MB = 600.0
GROWTH_TARGET = 1.3
POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432"
SQL_SOURCE = {
    "kind": "sql",
    "connection": "airline",
    "table": "flights",
    "cursor_column": "time_hour",
}


def switched_declaration() -> "PipelineDeclaration":
    """The flights declaration with its flights read from the ``airline`` database."""
    import yaml

    from ml_assets import pipelines
    from ml_assets.contract.declaration import PipelineDeclaration

    data = yaml.safe_load(pipelines.declaration_path(PIPELINE).read_text())
    for source in data["sources"]:
        if source["name"] == SOURCE:
            source.update(SQL_SOURCE)
    return PipelineDeclaration.model_validate(data)


def load_through_platform(first: str, last: str) -> None:
    """(Child process) ``raw_flights`` of [first, last] as one run on the embedded instance."""
    import tempfile

    import dagster as dg
    import yaml

    from ml_assets.contract.dagster_terms import asset_key
    from ml_assets.data.sources import landed_assets
    from ml_assets.instance import embedded_instance_yaml
    from ml_assets.pipelines.flights.assets import SOURCE_SCHEMAS
    from resources.builder import platform_resources

    declaration = switched_declaration()
    raw = asset_key(declaration, f"raw_{SOURCE}")
    assets = [a for a in landed_assets(declaration, SOURCE_SCHEMAS) if a.key == raw]
    with tempfile.TemporaryDirectory() as folder:
        overrides = yaml.safe_load(embedded_instance_yaml(Path(folder)))
        with dg.instance_for_test(temp_dir=folder, overrides=overrides) as instance:
            result = dg.materialize(
                assets,
                instance=instance,
                resources=platform_resources([declaration]),
                tags={
                    "dagster/asset_partition_range_start": first,
                    "dagster/asset_partition_range_end": last,
                },
                run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
            )
            metadata = result.get_asset_materialization_events()[-1].materialization.metadata
            print(f"read s {metadata['source/seconds'].value}")
            print(f"rows {metadata['source/rows_in_raw'].value}")


def read_with_copy(url: str, columns: str, start: str, end: str) -> None:
    """(Child process) The rows of [start, end) with ``COPY … TO STDOUT`` into an Arrow table:
    psycopg2 and pyarrow only, nothing of the platform imported."""
    import io

    import psycopg2
    import pyarrow.csv

    query = (
        f"COPY (SELECT {columns} FROM flights WHERE time_hour >= %s AND time_hour < %s "  # noqa: S608 (the declaration's column names)
        f"ORDER BY time_hour) TO STDOUT WITH (FORMAT csv, HEADER)"
    )
    buffer = io.BytesIO()
    connection = psycopg2.connect(url.replace("postgresql+psycopg2", "postgresql"))
    with connection, connection.cursor() as cursor:
        cursor.copy_expert(cursor.mogrify(query, (start, end)).decode(), buffer)
    connection.close()
    buffer.seek(0)
    print(f"rows {pyarrow.csv.read_csv(buffer).num_rows}")


def _bounds(first: str, last: str) -> tuple[str, str]:
    """The instants the partitions [first, last] span, in the partitions' time zone."""
    from ml_assets import pipelines
    from ml_assets.contract.dagster_terms import partitions_definition

    partitions = partitions_definition(pipelines.declaration(PIPELINE).partitions)
    start = partitions.time_window_for_partition_key(first).start
    end = partitions.time_window_for_partition_key(last).end
    return start.isoformat(), end.isoformat()


def _figure(measured: Measured, name: str) -> float:
    line = next(line for line in measured.stdout.splitlines() if line.startswith(f"{name} "))
    return float(line.split()[-1])


def _in_raw(home: Path, keys: list[str]) -> int:
    import pyarrow.parquet as pq

    folder = home / "warehouse" / PIPELINE / f"raw_{SOURCE}"
    return sum(pq.read_metadata(folder / f"{key}.parquet").num_rows for key in keys)


def _at_source(url: str, first: str, last: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as connection:
        count = connection.execute(
            sa.text("SELECT count(*) FROM flights WHERE time_hour >= :a AND time_hour < :b"),
            dict(zip("ab", _bounds(first, last), strict=True)),
        ).scalar_one()
    engine.dispose()
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="ten days (tests)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    parser.add_argument("--platform", nargs=2, metavar=("FIRST", "LAST"), help=argparse.SUPPRESS)
    parser.add_argument("--copy", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.platform:
        load_through_platform(*args.platform)
        return 0
    if args.copy:
        read_with_copy(*args.copy)
        return 0

    import sqlalchemy as sa

    from ml_assets.pipelines.flights.publish import FLIGHTS_DATABASE, publish_to_databases

    end = QUICK_END if args.quick else END
    keys = partition_keys(PIPELINE, START.isoformat(), end.isoformat())
    quarter = keys[: QUICK_QUARTER_DAYS if args.quick else QUARTER_DAYS]
    name = f"bench_ingestion_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE {name}"))
    url = f"{POSTGRES}/{name}"
    checks = Checks()
    try:
        with benchmark_home("ingestion-", args.keep) as home:
            env = {**enter_home(home), f"ML_ASSETS_SQL_{FLIGHTS_DATABASE.upper()}_URL": url}
            began = time.perf_counter()
            written = publish_to_databases(lambda _: url, keys)
            took = time.perf_counter() - began
            print(f"published {written} flights ({keys[0]} … {keys[-1]}) into PostgreSQL: ", end="")
            print(f"{took:.1f} s; load average {load_average()}")
            script = [str(BIN / "python"), str(Path(__file__).resolve())]
            runs: dict[str, Measured] = {}
            for label, days in (("quarter", quarter), ("range", keys)):
                runs[label] = run_measured(
                    [*script, "--platform", days[0], days[-1]], env, home / f"{label}.log"
                )
                expected = _at_source(url, days[0], days[-1])
                checks.require(
                    _figure(runs[label], "rows") == expected == _in_raw(home, days),
                    f"{label}: raw holds {_in_raw(home, days)} rows, the database {expected}",
                )
            from ml_assets import pipelines

            columns = ", ".join(pipelines.declaration(PIPELINE).source(SOURCE).columns)
            peer = [*script, "--copy", url, columns, *_bounds(keys[0], keys[-1])]
            copy = run_measured(peer, env, home / "copy.log")
            checks.require(
                _figure(copy, "rows") == written,
                f"COPY read {_figure(copy, 'rows'):.0f} rows of {written}",
            )
            _report(runs, copy, written, len(keys), args.quick)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()
    _report_rest(rest_rate(args.quick), checks, args.quick)
    _report_stream(stream_rate(args.quick), checks)
    return checks.report()


def _report_stream(stream: dict, checks: Checks) -> None:
    """The stream side's line: events published, then read into raw, end to end."""
    checks.require(
        stream["rows_in_raw"] == stream["events"],
        f"stream: {stream['events']} events published, {stream['rows_in_raw']} rows in raw",
    )
    print(
        f"stream: {stream['events']} events; published {stream['publish_events_per_s']} "
        f"events/s, into raw {stream['raw_events_per_s']} events/s, end to end "
        f"{stream['events_per_s']} events/s ({stream['publish_s'] + stream['raw_s']:.1f} s)"
    )


def _report_rest(rest: dict, checks: Checks, quick: bool) -> None:
    """The REST side's line: the rate the API saw against the declared one."""
    checks.require(rest["rows"] > 0 and rest["throttled"] == 0, f"REST load: {rest}")
    print(
        f"REST: {rest['requests']} requests for {rest['partitions']} days, {rest['rows']} rows, "
        f"{rest['run_seconds']} s; {rest['achieved_per_second']} requests/s against "
        f"{rest['declared_per_second']:g} declared; busiest second {rest['busiest_second']}"
    )
    share, busiest = rest["achieved_share"], rest["busiest_second"]
    never_above = "never above" if busiest <= rest["declared_per_second"] else "ABOVE in a second"
    note = f"; {never_above}" + (" (quick: the year's targets)" if quick else "")
    print(target("REST requests/s achieved / declared", share, 0.9, False, "0.9") + note)


def _report(runs: dict[str, Measured], copy: Measured, rows: int, days: int, quick: bool) -> None:
    from _common import table

    platform = runs["range"]
    read_s = _figure(platform, "read s")
    print(
        table(
            ["side", "days", "rows", "wall s", "rows/s", "CPU s", "peak tree PSS MB"],
            [
                [side, days, rows, run.wall_s, rows / run.wall_s, run.cpu_s, run.peak_tree_pss_mb]
                for side, run in (("platform", platform), ("COPY -> Arrow", copy))
            ],
            floatfmt=".1f",
        )
    )
    print(f"platform read (dlt query, rows as text) s {read_s:.2f}: {rows / read_s:.0f} rows/s")
    note = " (quick: the year's targets)" if quick else ""
    ratio = (rows / platform.wall_s) / (rows / copy.wall_s)
    print(target("rows/s platform / COPY", ratio, RATIO_TARGET, False, str(RATIO_TARGET)) + note)
    peak = platform.peak_tree_pss_mb
    print(target("peak PSS MB", peak, PEAK_PSS_TARGET_MB, True, "600") + note)
    growth = peak / runs["quarter"].peak_tree_pss_mb
    print(target("peak PSS range / quarter", growth, GROWTH_TARGET, True, "1.3") + note)


if __name__ == "__main__":
    sys.exit(main())
