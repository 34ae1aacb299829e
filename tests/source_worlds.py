"""The flights pipeline loaded from its landed files and from where an airline keeps its data
(databases, an API): the same days in two worlds, each with its own home, instance, assets and
resources, for the source kinds' identity tests (``test_sql_source``, ``test_rest_source``)."""

import contextlib
import copy
import functools
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
import yaml
from conftest import platform_test_instance

from ml_assets import pipelines
from ml_assets.contract.dagster_terms import asset_key
from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.data.sources import landed_assets
from ml_assets.home import HOME_ENV_VAR, LANDING_ENV_VAR, ONLINE_STORE_ENV_VAR, WAREHOUSE_ENV_VAR
from ml_assets.pipelines.flights.assets import SOURCE_SCHEMAS, data_assets, landed
from ml_assets.pipelines.flights.publish import publish
from resources.builder import platform_resources
from resources.landing_zone import default_landing_zone

FLIGHTS_YAML = yaml.safe_load(pipelines.declaration_path("flights").read_text())
REST_WEATHER = {
    "kind": "rest",
    "connection": "weather_api",
    "path": "/v1/weather/hourly",
    "records": "data",
    "paginator": {"type": "page_number", "total_path": "meta.total_pages"},
    "params": {"per_page": 24},
    "window_params": {"start": "start", "end": "end"},
    "rate_limit_per_second": 20,
}
"""What the flights declaration says to read its weather from the weather provider's API (it
allows 25 requests a second; 20 are declared)."""


def switched_declaration(switched: dict[str, dict[str, Any]]) -> PipelineDeclaration:
    """The flights declaration with the sources of ``switched`` changed as it says (their kind
    and where they are read from); nothing else changes."""
    data = copy.deepcopy(FLIGHTS_YAML)
    for source in data["sources"]:
        source.update(switched.get(source["name"], {}))
    return PipelineDeclaration.model_validate(data)


class World:
    """One home, instance, set of assets and resources: the files pipeline or a switched one."""

    def __init__(self, home: Path, instance: dg.DagsterInstance, declaration: PipelineDeclaration):
        self.home, self.instance, self.declaration = home, instance, declaration
        ingest = landed_assets(declaration, SOURCE_SCHEMAS)
        self.assets = [*ingest, *(a for a in data_assets if a not in landed)]
        self.resources = platform_resources([declaration])

    def key(self, name: str) -> dg.AssetKey:
        return asset_key(self.declaration, name)

    def materialize(
        self, selection: Any, keys: list[str] | None = None, raise_on_error: bool = True
    ) -> dg.ExecuteInProcessResult:
        tags = {}
        if keys and len(keys) > 1:
            tags = {
                "dagster/asset_partition_range_start": keys[0],
                "dagster/asset_partition_range_end": keys[-1],
            }
        return dg.materialize(
            self.assets,
            selection=selection,
            partition_key=keys[0] if keys and len(keys) == 1 else None,
            tags=tags,
            resources=self.resources,
            instance=self.instance,
            raise_on_error=raise_on_error,
        )

    def path(self, asset: str, day: str) -> Path:
        return self.home / "warehouse" / "flights" / asset / f"{day}.parquet"

    def stored(self, asset: str, day: str) -> pd.DataFrame:
        return pd.read_parquet(self.path(asset, day))

    def load(self, keys: list[str]) -> None:
        key = functools.partial(asset_key, self.declaration)
        references = [key("planes"), key("airports"), key("airlines")]
        assert self.materialize(references).success
        layers = dg.AssetSelection.groups(
            "flights_ingest", "flights_clean"
        ) - dg.AssetSelection.assets(*references)
        assert self.materialize(
            layers | dg.AssetSelection.assets(key("flight_features")), keys
        ).success


def loaded_worlds(
    stack: contextlib.ExitStack,
    tmp_path_factory: pytest.TempPathFactory,
    kind: str,
    switched: dict[str, dict[str, Any]],
    days: list[str],
) -> dict[str, World]:
    """The same ``days`` loaded twice: from the landed files (``files``), and with the sources
    of ``switched`` read from where they live, their files not landed (``kind``). The
    connections' settings must be in the environment while the worlds are used."""
    patch = stack.enter_context(pytest.MonkeyPatch.context())
    for variable in (LANDING_ENV_VAR, WAREHOUSE_ENV_VAR, ONLINE_STORE_ENV_VAR):
        patch.delenv(variable, raising=False)
    worlds = {}
    for name, declaration in (
        ("files", pipelines.declaration("flights")),
        (kind, switched_declaration(switched)),
    ):
        home = tmp_path_factory.mktemp(name)
        patch.setenv(HOME_ENV_VAR, str(home))
        landing = default_landing_zone()
        publish(landing, days)
        if name == kind:  # only the sources left as files are read from files
            for source in switched:
                for landed_file in landing.list_files(source):
                    Path(landed_file.path).unlink()
        instance = stack.enter_context(platform_test_instance())
        worlds[name] = World(home, instance, declaration)
        worlds[name].load(days)
    return worlds
