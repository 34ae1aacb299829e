"""One owner per storage location: the warehouse, the online snapshots, the prediction log, the
landing zone and the platform's home are reached through their resources (built once, in
``resources/builder.py``, from the environment) or the services' settings, never by an asset,
sensor, job or service module reading the environment or the location itself."""

import ast
from pathlib import Path

import pytest

from ml_assets.home import PROJECT_ROOT

pytestmark = pytest.mark.unit

LOCATIONS = {
    "warehouse_url", "online_store_url", "prediction_log_url", "landing_zone_url",
    "ml_assets_home", "tracking_uri",
}  # fmt: skip
"""``ml_assets.home``'s functions that read a location from the environment."""
OWNERS = {
    "ml_assets/home.py": "reads the locations from the environment",
    "resources/": "the resources and their one builder",
    "serving/settings.py": "the services' settings (they run without Dagster's resources)",
    "ml_assets/cli.py": "the command line starts processes with their locations",
    "ml_assets/prod.py": "the production profile writes its processes' environment",
    "ml_assets/executor.py": "the run's executor (Celery broker, PostgreSQL)",
    "ml_assets/instance/": "the Dagster instance's storage",
    "ml_assets/celery_worker.py": "the worker process's own set-up",
}
"""Modules whose job is to turn the environment into configuration."""


def readers_of_the_environment(path: Path) -> list[str]:
    """Where ``path`` calls a location function or reads ``os.environ``/``os.getenv``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute):
            name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            if name in LOCATIONS or name == "getenv":
                found.append(f"{name}() at line {node.lineno}")
        elif isinstance(node, ast.Attribute) and node.attr == "environ":
            found.append(f"os.environ at line {node.lineno}")
    return found


def product_modules() -> list[str]:
    packages = ("ml_assets", "resources", "sensors", "jobs", "serving")
    return sorted(
        path.relative_to(PROJECT_ROOT).as_posix()
        for package in packages
        for path in (PROJECT_ROOT / package).rglob("*.py")
    )


def test_only_the_owners_read_a_location_from_the_environment() -> None:
    readers = {
        module: found
        for module in product_modules()
        if (found := readers_of_the_environment(PROJECT_ROOT / module))
        and not any(module.startswith(owner) for owner in OWNERS)
    }
    assert not readers, readers
