"""Shared fixtures: every test gets its own ``$ML_ASSETS_HOME`` and Dagster instance."""

import contextlib
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ml_assets import ACKNOWLEDGED_WARNINGS
from ml_assets.home import HOME_ENV_VAR, LANDING_ENV_VAR, ONLINE_STORE_ENV_VAR, WAREHOUSE_ENV_VAR
from ml_assets.instance import embedded_instance_yaml
from ml_assets.pipelines import declaration, names
from ml_assets.pipelines.flights.publish import day_keys, publish
from resources.builder import platform_resources
from resources.landing_zone import LandingZone, default_landing_zone

pytest_plugins = ["live", "serving_fixtures", "tiers", "ui_flows"]
"""Session fixtures shared across modules: ``live_platform`` and ``first_models``, the running
``ml-assets dev`` (``tests/live.py``); ``serving_platform``, the deploy layer's worlds, with
``world`` (each pipeline's) and ``flights`` on it (``tests/serving_fixtures.py``); the browser
flows' options (``tests/ui_flows.py``); the test tiers and their checks (``tests/tiers.py``)."""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty platform home for this test."""
    monkeypatch.setenv(HOME_ENV_VAR, str(tmp_path))
    monkeypatch.delenv(LANDING_ENV_VAR, raising=False)
    monkeypatch.delenv(WAREHOUSE_ENV_VAR, raising=False)
    monkeypatch.delenv(ONLINE_STORE_ENV_VAR, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    return tmp_path


@pytest.fixture
def landing_zone(home: Path) -> LandingZone:
    return default_landing_zone()


@pytest.fixture
def resources(home: Path) -> dict:
    """The platform's resources, as the code location builds them, pointed at the test's home."""
    return platform_resources([declaration(name) for name in names()])


@contextlib.contextmanager
def platform_test_instance() -> Iterator[dg.DagsterInstance]:
    """``dg.instance_for_test`` on the embedded profile's storages (``ml_assets.instance``), as
    ``make run`` uses them: its event log keeps its connections open, where Dagster's stock one
    connects anew for each statement (an in-process run's events cost twice the CPU)."""
    with tempfile.TemporaryDirectory() as folder:
        overrides = yaml.safe_load(embedded_instance_yaml(Path(folder)))
        with dg.instance_for_test(temp_dir=folder, overrides=overrides) as instance:
            yield instance


@pytest.fixture
def instance(home: Path) -> Iterator[dg.DagsterInstance]:
    with platform_test_instance() as instance:
        yield instance


@pytest.fixture
def published_week(landing_zone: LandingZone) -> LandingZone:
    """The reference tables and 2013-01-01 … 2013-01-08 landed, undamaged."""
    publish(landing_zone, day_keys(date(2013, 1, 1), date(2013, 1, 8)))
    return landing_zone


def pytest_configure(config: pytest.Config) -> None:
    """pytest resets warning filters per test: acknowledge the platform's own there too."""
    for message in ACKNOWLEDGED_WARNINGS:
        config.addinivalue_line("filterwarnings", f"ignore:{message}")


POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432"
"""The machine's PostgreSQL, for the production profile (trust auth). A test that needs it
fails when it is down; ``.ci/run`` starts it."""


@contextlib.contextmanager
def _fresh_database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL, dropped afterwards."""
    import sqlalchemy

    name = f"test_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(
        f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT", pool_pre_ping=True
    )  # a test may restart the server
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    yield f"{POSTGRES}/{name}"
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the local PostgreSQL (e.g. a Dagster instance's), dropped afterwards."""
    with _fresh_database() as url:
        yield url


@pytest.fixture
def optuna_postgres_url() -> Iterator[str]:
    """Another fresh database, for Optuna studies: Optuna and Dagster both keep their schema
    versions in an ``alembic_version`` table, so they cannot share one."""
    with _fresh_database() as url:
        yield url


@pytest.fixture
def s3_bucket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto S3 server on localhost with an empty bucket; AWS clients (here, and in the
    processes a test starts with this environment) pointed at it."""
    import boto3
    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    # distinctive, so a test can look for it where no secret may be (logs, run metadata)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", f"test-secret-{uuid.uuid4().hex}")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    s3fs.S3FileSystem.clear_instance_cache()
    # moto keeps its buckets in the process, across servers: each test starts from none
    urllib.request.urlopen(
        urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST")
    ).close()
    boto3.client("s3").create_bucket(Bucket="bucket")
    try:
        yield "bucket"
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()
