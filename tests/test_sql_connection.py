"""Named SQL connections: the URL comes from the environment or a secret file, never shows,
and a database that cannot be reached fails the load with nothing written."""

from pathlib import Path

import dagster as dg
import pytest
import yaml
from live import free_port

from ml_assets import pipelines
from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.data.sources import landed_assets
from ml_assets.pipelines.flights.assets import SOURCE_SCHEMAS
from resources.builder import platform_resources
from resources.sql_connection import SqlConnection, sql_connection

pytestmark = pytest.mark.unit

SECRET = "hunter2"


def test_a_connection_reads_its_url_from_the_environment_or_a_secret_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"postgresql+psycopg2://ops:{SECRET}@db.internal:5432/airline"
    monkeypatch.setenv("ML_ASSETS_SQL_AIRLINE_URL", url)
    secret = tmp_path / "fleet"
    secret.write_text("mysql+pymysql://root@127.0.0.1:3306/fleet\n")
    monkeypatch.setenv("ML_ASSETS_SQL_FLEET_URL_FILE", str(secret))
    with dg.build_resources(
        {"airline": sql_connection("airline"), "fleet": sql_connection("fleet")}
    ) as built:
        assert built.airline.secret_url() == url
        assert built.airline.dialect() == "postgresql"
        assert built.fleet.secret_url() == "mysql+pymysql://root@127.0.0.1:3306/fleet"
        assert built.fleet.dialect() == "mysql"
    with pytest.raises(dg.Failure, match="ML_ASSETS_SQL_ORDERS_URL"):
        SqlConnection(name="orders").secret_url()


def test_an_unreachable_database_fails_the_load_writes_nothing_and_shows_no_secret(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = yaml.safe_load(pipelines.declaration_path("flights").read_text())
    data["sources"][0].update(
        kind="sql", connection="airline", table="flights", cursor_column="time_hour"
    )
    declaration = PipelineDeclaration.model_validate(data)
    closed = f"postgresql+psycopg2://ops:{SECRET}@127.0.0.1:{free_port()}/airline"
    monkeypatch.setenv("ML_ASSETS_SQL_AIRLINE_URL", closed)
    raw = next(
        a for a in landed_assets(declaration, SOURCE_SCHEMAS) if a.key.path[-1] == "raw_flights"
    )
    result = dg.materialize(
        [raw],
        partition_key="2013-01-02",
        resources=platform_resources([declaration]),
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    shown = str(failure.step_failure_data.error)
    assert "OperationalError" in shown and "Connection refused" in shown
    assert SECRET not in shown
    assert not (home / "warehouse" / "flights" / "raw_flights").exists()
