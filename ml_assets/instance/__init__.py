"""The Dagster instance the platform runs on: embedded SQLite by default, PostgreSQL when set.

Both profiles are Dagster's storages with one change each: the event log keeps database
connections open between events (``sqlite.KeptOpenSqliteEventLogStorage``,
``postgres.PooledPostgresEventLogStorage``). A year-long backfill records ~8,500 events.
"""

import os
from pathlib import Path

import yaml

POSTGRES_ENV_VAR = "DAGSTER_POSTGRES_URL"

_STORAGES = """run_storage:
  module: {run_module}
  class: {run_class}
  config:
    {run_config}
event_log_storage:
  module: ml_assets.instance.{event_module}
  class: {event_class}
  config:
    {event_config}
schedule_storage:
  module: {schedule_module}
  class: {schedule_class}
  config:
    {schedule_config}
"""

POSTGRES_URL = f"postgres_url:\n      env: {POSTGRES_ENV_VAR}"
POSTGRES_INSTANCE = f"""# Production profile: ${POSTGRES_ENV_VAR} is set, so runs, events and
# schedules live in PostgreSQL. Unset it for the embedded SQLite instance.
""" + _STORAGES.format(
    run_module="dagster_postgres.run_storage",
    run_class="PostgresRunStorage",
    run_config=POSTGRES_URL,
    event_module="postgres",
    event_class="PooledPostgresEventLogStorage",
    event_config=POSTGRES_URL,
    schedule_module="dagster_postgres.schedule_storage",
    schedule_class="PostgresScheduleStorage",
    schedule_config=POSTGRES_URL,
)


def instance_yaml(dagster_home: Path) -> str:
    """``dagster.yaml`` for ``dagster_home``: PostgreSQL if configured, else embedded SQLite
    laid out as Dagster lays it out by default."""
    if os.environ.get(POSTGRES_ENV_VAR):
        return POSTGRES_INSTANCE
    return embedded_instance_yaml(dagster_home)


def embedded_instance_yaml(dagster_home: Path) -> str:
    """``dagster.yaml`` of the embedded profile: SQLite files under ``dagster_home``."""
    home = dagster_home.as_posix()
    return "# Embedded profile: SQLite files under DAGSTER_HOME.\n" + _STORAGES.format(
        run_module="dagster._core.storage.runs",
        run_class="SqliteRunStorage",
        run_config=f"base_dir: {home}/history",
        event_module="sqlite",
        event_class="KeptOpenSqliteEventLogStorage",
        event_config=f"base_dir: {home}/history/runs",
        schedule_module="dagster._core.storage.schedules",
        schedule_class="SqliteScheduleStorage",
        schedule_config=f"base_dir: {home}/schedules",
    )


def missing_storages(configured: str, platform: str) -> list[str]:
    """The storages of the ``platform``'s ``dagster.yaml`` whose class the ``configured`` one
    (a user's) does not use, each as ``<key> (<module>.<class>)``."""
    theirs = yaml.safe_load(configured)
    missing = []
    for key, storage in yaml.safe_load(platform).items():
        wanted = (storage["module"], storage["class"])
        given = theirs.get(key) if isinstance(theirs, dict) else None
        if not isinstance(given, dict) or (given.get("module"), given.get("class")) != wanted:
            missing.append(f"{key} ({'.'.join(wanted)})")
    return missing
