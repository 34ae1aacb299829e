"""The ``sql`` source kind on the machine's real servers: the flights rows in PostgreSQL (written
day by day, as the airline's operational database holds them) and the reference tables in
MariaDB give the same clean and feature partitions as the landed files, row for row; a
correction made in the database reaches its partition when that partition is loaded again,
and a re-load never duplicates a row. A server that cannot be reached fails these tests."""

import contextlib
import functools
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import _fresh_database, platform_test_instance
from source_worlds import FLIGHTS_YAML, World, loaded_worlds
from source_worlds import switched_declaration as switched
from tcp_cut_proxy import CutProxy

from ml_assets import cli, pipelines
from ml_assets.contract.dagster_terms import asset_key
from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.contract.pipeline import Pipeline
from ml_assets.data.sources import landed_assets
from ml_assets.home import HOME_ENV_VAR
from ml_assets.pipelines.flights.assets import SOURCE_SCHEMAS
from ml_assets.pipelines.flights.publish import day_keys, publish
from ml_assets.pipelines.flights.schemas import FLIGHT_FEATURES
from ml_assets.platform import code_location
from resources.sql_connection import SqlConnection
from sensors.sql_source import RANGE_END, RANGE_START, build_sql_source_sensor

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MARIADB = "mysql+pymysql://root@127.0.0.1:3306"
"""The machine's MariaDB (root, no password). ``.ci/run`` starts it when it is down."""
FLIGHT_KEY = list(pipelines.declaration("flights").source("flights").key)
DAYS = day_keys(date(2013, 1, 1), date(2013, 1, 3))
CORRECTED_DAY = "2013-01-02"
SWITCHED = {
    "flights": {"kind": "sql", "connection": "airline", "table": "flights",
                "cursor_column": "time_hour", "changed_column": "updated_at",
                "changed_lag_seconds": 0},
    **{name: {"kind": "sql", "connection": "fleet", "table": name}
       for name in ("planes", "airports", "airlines")},
}  # fmt: skip
"""What the flights declaration says to read its sources from the databases: nothing else
changes (weather stays files)."""


def switched_declaration(**flights: Any) -> PipelineDeclaration:
    """The flights declaration reading its sources from the databases; ``flights``: more keys
    of the flights source."""
    return switched({**SWITCHED, "flights": {**SWITCHED["flights"], **flights}})


@contextlib.contextmanager
def _fresh_mariadb() -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(f"{MARIADB}/", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield f"{MARIADB}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE {name}"))
        admin.dispose()


@pytest.fixture(scope="module")
def databases() -> Iterator[dict[str, str]]:
    """Fresh databases with the days' flights (PostgreSQL) and the reference tables (MariaDB),
    as ``ml-assets publish flights --to sql`` writes them."""
    with (
        _fresh_database() as flights_url,
        _fresh_mariadb() as fleet_url,
        pytest.MonkeyPatch.context() as patch,
    ):
        urls = {"airline": flights_url, "fleet": fleet_url}
        for name, url in urls.items():
            patch.setenv(f"ML_ASSETS_SQL_{name.upper()}_URL", url)
        published = ["publish", "flights", "--start", DAYS[0], "--end", DAYS[-1], "--to", "sql"]
        assert cli.main(published) == 0
        assert cli.main(published) == 0  # a day published again replaces that day
        yield urls


@pytest.fixture(scope="module")
def worlds(databases: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The same days loaded twice: from the landed files, and from the databases."""
    with contextlib.ExitStack() as stack:
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        for name, url in databases.items():
            patch.setenv(f"ML_ASSETS_SQL_{name.upper()}_URL", url)
        yield loaded_worlds(stack, tmp_path_factory, "sql", SWITCHED, DAYS)


def test_the_databases_give_the_same_clean_and_feature_rows_as_the_files(worlds: dict) -> None:
    """Row for row: the same rows with the same values and types (a database keeps no row
    order; a sql partition holds its rows in the order of the cursor and the key)."""
    files, sql = worlds["files"], worlds["sql"]
    for day in DAYS:
        for asset, key in (("flights_clean", FLIGHT_KEY), ("flight_features", ["flight_id"])):
            expected = files.stored(asset, day).sort_values(key, ignore_index=True)
            assert len(expected) > 500
            stored = sql.stored(asset, day).sort_values(key, ignore_index=True)
            pd.testing.assert_frame_equal(stored, expected, obj=f"{asset} {day}")
    assert (
        sql.stored("raw_flights", DAYS[0]).columns.tolist()[:19]
        == FLIGHTS_YAML["sources"][0]["columns"]
    )


def test_every_raw_materialization_says_what_was_read_and_never_the_secret(
    worlds: dict, databases: dict[str, str]
) -> None:
    sql = worlds["sql"]
    key = asset_key(sql.declaration, "raw_flights")
    engine = sa.create_engine(databases["airline"])
    with engine.connect() as connection:
        at_source = dict(
            connection.execute(
                sa.text(
                    "SELECT make_date(year, month, day)::text, count(*) FROM flights GROUP BY 1"
                )
            ).all()
        )
    engine.dispose()
    observed = sql.instance.fetch_observations(key, limit=10).records
    per_day = {r.partition_key: r.asset_observation.metadata for r in observed}
    assert sorted(per_day) == DAYS
    for day, metadata in per_day.items():
        assert metadata["source/rows_read"].value == at_source[day]
        assert (
            metadata["source/rows_in_raw"].value
            == at_source[day]
            == len(sql.stored("raw_flights", day))
        )
        assert metadata["source/window"].value.startswith(f"[{day}T00:00:00-05:00, ")
    materialization = sql.instance.get_latest_materialization_event(key).asset_materialization
    metadata = {name: value.value for name, value in materialization.metadata.items()}
    assert metadata["source/kind"] == "sql"
    assert metadata["source/connection"] == "airline"
    assert metadata["source/database"] == "postgresql"
    assert metadata["source/table"] == "flights"
    assert metadata["source/rows_read"] == metadata["source/rows_in_raw"] == sum(at_source.values())
    assert metadata["source/schema"]["time_hour"] == "timestamp"
    assert metadata["source/seconds"] > 0
    planes = sql.instance.get_latest_materialization_event(asset_key(sql.declaration, "planes"))
    assert planes.asset_materialization.metadata["source/database"].value == "mysql"
    shown = str([materialization.metadata, planes.asset_materialization.metadata])
    assert databases["airline"] not in shown and "root@" not in shown and "postgres@" not in shown


def test_the_changes_sensor_requests_exactly_the_partitions_whose_rows_changed(
    databases: dict[str, str],
) -> None:
    """It reads only the cursor values of the rows changed since its last look: the first look
    requests the published range once, a look with nothing new requests nothing, and an
    ``UPDATE`` of one row of a closed day requests that day alone."""
    declaration = switched_declaration()
    sensor = build_sql_source_sensor(declaration, declaration.source("flights"))
    resources = {"sql_airline": SqlConnection(name="airline", url=databases["airline"])}
    raw = asset_key(declaration, "raw_flights")

    definitions = dg.Definitions(
        assets=[a for a in landed_assets(declaration, SOURCE_SCHEMAS) if a.key == raw],
        sensors=[sensor],
        resources=resources,
    )

    def tick(cursor: str | None) -> Any:  # as the daemon evaluates it
        with dg.build_sensor_context(
            cursor=cursor, resources=resources, definitions=definitions
        ) as context:
            return sensor.evaluate_tick(context)

    first = tick(None)
    (request,) = first.run_requests
    assert request.tags[RANGE_START] == DAYS[0] and request.tags[RANGE_END] == DAYS[-1]
    assert request.asset_selection == [raw]
    assert tick(first.cursor).run_requests == []
    engine = sa.create_engine(databases["airline"])
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE flights SET dep_delay = dep_delay, updated_at = now() "
                "WHERE ctid = (SELECT ctid FROM flights WHERE day = 2 LIMIT 1)"
            )
        )
    engine.dispose()
    (changed,) = tick(first.cursor).run_requests
    assert changed.partition_key == CORRECTED_DAY and RANGE_START not in changed.tags


def test_a_correction_in_the_database_reaches_its_partition_once(
    worlds: dict, databases: dict[str, str]
) -> None:
    """An ``UPDATE`` of a row in a closed partition: loading that partition again holds the
    corrected row, once, and the clean layer follows; loading it twice more changes nothing."""
    sql = worlds["sql"]
    before = sql.stored("flights_clean", CORRECTED_DAY).sort_values(FLIGHT_KEY, ignore_index=True)
    flight = before[before["air_time"] > 20].iloc[0]
    engine = sa.create_engine(databases["airline"])
    with engine.begin() as connection:
        updated = connection.execute(
            sa.text(
                "UPDATE flights SET air_time = air_time - 1 WHERE year = 2013 AND month = 1 "
                "AND day = 2 AND carrier = :carrier AND flight = :flight AND origin = :origin"
            ),
            {
                "carrier": flight["carrier"],
                "flight": int(flight["flight"]),
                "origin": flight["origin"],
            },
        ).rowcount
    engine.dispose()
    assert updated >= 1
    clean = asset_key(sql.declaration, "flights_clean")
    reload = dg.AssetSelection.assets(
        asset_key(sql.declaration, "raw_flights")
    ) | dg.AssetSelection.assets(clean, asset_key(sql.declaration, "flights_rejected"))
    for _ in range(2):
        assert sql.materialize(reload, [CORRECTED_DAY]).success
        after = sql.stored("flights_clean", CORRECTED_DAY).sort_values(
            FLIGHT_KEY, ignore_index=True
        )
        assert len(after) == len(before)
        assert len(sql.stored("raw_flights", CORRECTED_DAY)) == len(before) + len(
            sql.stored("flights_rejected", CORRECTED_DAY)
        )
        changed = after["air_time"].fillna(-1) != before["air_time"].fillna(-1)
        assert changed.sum() == updated
        assert (after.loc[changed, "air_time"] - before.loc[changed, "air_time"]).eq(-1).all()


def test_a_server_lost_mid_read_is_reconnected_and_each_row_loaded_once(
    worlds: dict, databases: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL goes away in the middle of a three-day range (streamed 400 rows at a time) and
    MariaDB's connection is killed in the middle of the planes: each read reconnects once and
    resumes (the range at the day it was reading), and every row is in raw exactly once, as
    the uncut load holds them. The cut is a proxy in front of each real server closing both
    sides mid-reply, as a restarted or killed server does."""
    with (
        CutProxy("127.0.0.1", 5432) as postgres,
        CutProxy("127.0.0.1", 3306) as mariadb,
        platform_test_instance() as instance,
    ):
        proxies = {"airline": postgres, "fleet": mariadb}
        for name, proxy in proxies.items():
            url = databases[name].replace(f":{proxy.upstream[1]}/", f":{proxy.port}/")
            monkeypatch.setenv(f"ML_ASSETS_SQL_{name.upper()}_URL", url)
        monkeypatch.setenv(HOME_ENV_VAR, str(tmp_path))
        declaration = switched_declaration(chunk_rows=400)
        key = functools.partial(asset_key, declaration)
        postgres.cut_after(200_000)
        mariadb.cut_after(100_000)
        world = World(tmp_path, instance, declaration)
        assert world.materialize([key("planes")]).success
        assert world.materialize([key("raw_flights")], DAYS).success
        for asset in ("planes", "raw_flights"):
            event = instance.get_latest_materialization_event(key(asset))
            assert event.asset_materialization.metadata["source/retries"].value == 1, asset
        # loaded again, uncut (nothing twice): the resumed query read less than a whole range
        assert world.materialize([key("raw_flights")], DAYS).success
        cut, resumed, whole = postgres.server_bytes
        assert cut < whole and resumed < 0.9 * whole
        assert postgres.cuts == mariadb.cuts == 1
    uncut = worlds["sql"]
    for day in DAYS:
        pd.testing.assert_frame_equal(
            world.stored("raw_flights", day), uncut.stored("raw_flights", day), obj=day
        )
    planes = pd.read_parquet(tmp_path / "warehouse" / "flights" / "planes.parquet")
    assert len(planes) == len(planes.drop_duplicates()) == 3322


def test_a_type_changed_at_the_source_warns_or_fails_as_declared(
    worlds: dict, databases: dict[str, str]
) -> None:
    """A column's type changes in the database since the last load: under ``warn`` (the
    default) the partition loads, its check passes and shows the change; under ``fail`` the
    blocking check fails naming it and the clean layer is not run on the partition."""
    sql = worlds["sql"]
    key = functools.partial(asset_key, sql.declaration)
    engine = sa.create_engine(databases["airline"])

    def retype(column: str, kind: str) -> None:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    f"ALTER TABLE flights ALTER COLUMN {column} TYPE {kind} USING {column}::{kind}"
                )
            )

    def check_of(result: dg.ExecuteInProcessResult) -> Any:
        (check,) = [
            e for e in result.get_asset_check_evaluations() if e.asset_key == key("raw_flights")
        ]
        return check

    try:
        retype("air_time", "text")
        warned = sql.materialize([key("raw_flights")], [DAYS[-1]])
        check = check_of(warned)
        assert check.passed and "changed air_time: bigint -> text" in check.description
        assert check.metadata["schema_drift"].value == ["changed air_time: bigint -> text"]

        retype("distance", "text")
        strict = World(sql.home, sql.instance, switched_declaration(on_schema_drift="fail"))
        layers = [key("raw_flights"), key("flights_clean"), key("flights_rejected")]
        failed = strict.materialize(layers, [DAYS[-1]], raise_on_error=False)
        check = check_of(failed)
        assert not check.passed and "changed distance: bigint -> text" in check.description
        assert "air_time" not in check.description  # seen at the last load: no change now
        assert {m.asset_key for m in failed.get_asset_materialization_events()} == {
            key("raw_flights")
        }
    finally:
        retype("air_time", "integer")
        retype("distance", "integer")
        engine.dispose()


def test_a_column_dropped_at_the_source_fails_the_blocking_check(
    worlds: dict, databases: dict[str, str]
) -> None:
    """The table loses a declared column: the partition's raw rows lack it, its blocking
    ``landed_file_schema`` check fails naming it, and the clean layer is not run on it."""
    sql = worlds["sql"]
    engine = sa.create_engine(databases["airline"])
    with engine.begin() as connection:
        connection.execute(sa.text("ALTER TABLE flights DROP COLUMN air_time"))
    engine.dispose()
    key = functools.partial(asset_key, sql.declaration)
    selection = dg.AssetSelection.assets(
        key("raw_flights"), key("flights_clean"), key("flights_rejected")
    )
    result = sql.materialize(selection, [DAYS[-1]], raise_on_error=False)
    assert not result.success
    (check,) = [
        e for e in result.get_asset_check_evaluations() if e.asset_key == key("raw_flights")
    ]
    assert not check.passed and "air_time" in str(check.metadata)
    assert "air_time" not in sql.stored("raw_flights", DAYS[-1]).columns
    assert not result.get_asset_materialization_events() or all(
        m.asset_key == key("raw_flights") for m in result.get_asset_materialization_events()
    )


def test_a_connection_from_a_secret_file_and_the_platform_wiring(
    databases: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The code location loads with sql sources (one connection resource per database, no
    landing sensor target for them), and a connection's URL may come from a secret file."""
    secret = tmp_path / "fleet-url"
    secret.write_text(databases["fleet"] + "\n")
    monkeypatch.setenv(HOME_ENV_VAR, str(tmp_path))
    monkeypatch.setenv("ML_ASSETS_SQL_FLEET_URL_FILE", str(secret))
    monkeypatch.setenv("ML_ASSETS_SQL_AIRLINE_URL", databases["airline"])
    declaration = switched_declaration()
    world = World(tmp_path, dg.DagsterInstance.ephemeral(), declaration)
    pipeline = Pipeline(
        declaration=declaration,
        source_file=pipelines.declaration_path("flights"),
        data_assets=world.assets,
        feature_schema=FLIGHT_FEATURES,
        publish=publish,
    )
    definitions = code_location([pipeline])
    dg.Definitions.validate_loadable(definitions)
    assert {"sql_airline", "sql_fleet"} <= set(definitions.resources)
    sensor = definitions.resolve_sensor_def("flights_landing_zone_sensor")
    watched = sensor.asset_selection.resolve(definitions.resolve_asset_graph())
    assert asset_key(declaration, "raw_weather") in watched
    assert asset_key(declaration, "raw_flights") not in watched
    changes = definitions.resolve_sensor_def("flights_flights_changes_sensor")
    assert changes.asset_selection.resolve(definitions.resolve_asset_graph()) == {
        asset_key(declaration, "raw_flights")
    }
    result = world.materialize([asset_key(declaration, "airlines")])
    assert result.success
    airlines = result.asset_value(asset_key(declaration, "airlines"))
    assert len(airlines) == 16 and "AA" in set(airlines["carrier"])
