"""The deploy layer's test world, shared by the modules that need real service processes
(``test_deployment``, ``test_api_fuzz``).

A platform (a home, a Dagster instance, the MLflow store, a free port for each pipeline's
service) and, built once per pipeline on first use, a world: the pipeline's data landed by its
publisher, its data layers materialized, a tiny model chain whose run also deploys the
registered version (``deployed_endpoint`` starts ``ml-assets serve <pipeline>``). Building a
world takes minutes, so the session shares one platform (``serving_platform``); a test puts
the service in the state it needs (``go_live``) and leaves the world reusable.
"""

import contextlib
import functools
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pandas as pd
import pytest
from conftest import platform_test_instance

from jobs.rollback import build_rollback_job
from ml_assets import pipelines
from ml_assets.contract.dagster_terms import asset_key, partitions_definition
from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.contract.names import ROLLED_BACK, STAGES
from ml_assets.data.data_layers import CLEAN, FEATURES, INGEST, group
from ml_assets.definitions import defs
from ml_assets.deployment import registry
from ml_assets.home import (
    HOME_ENV_VAR,
    LANDING_ENV_VAR,
    ONLINE_STORE_ENV_VAR,
    TRACKING_URI_ENV_VAR,
    WAREHOUSE_ENV_VAR,
    warehouse_url,
)
from ml_assets.modeling.layer import MODEL_ASSET_NAMES, MODELS
from resources.builder import platform_resources
from resources.landing_zone import default_landing_zone
from resources.optuna_storage import OPTUNA_STORAGE_ENV_VAR
from resources.parquet_io_manager import read_partition
from resources.prediction_services import PredictionServices, ServingEndpoint
from serving.predictors import LoadedModel, load_version
from serving.settings import TOKEN_ENV_VAR, url_env_var
from serving.spec import ServedModel, served_model

CLASSIFY = "binary_classification"
ASSETS = list(defs.assets)  # type: ignore[arg-type]
"""Every asset of the code location: both pipelines, as a user gets them."""


@dataclass(frozen=True)
class Setup:
    """What a pipeline's world is built from."""

    landed: tuple[str, str]
    """The first and last partition landed and materialized."""
    training: dict[str, Any]
    """``training_set`` config of the tiny model."""
    bad_fields: tuple[tuple[dict[str, Any], str], ...]
    """A change to a valid request and the one field its 422 must name."""


SETUPS = {
    "flights": Setup(
        landed=("2013-01-01", "2013-01-28"),
        training={"window_start": "2013-01-08", "window_end": "2013-01-28",
                  "validation_partitions": 5, "test_partitions": 5},
        bad_fields=(
            ({"sched_dep_time": 1275}, "sched_dep_time"),  # 75 minutes
            ({"sched_arr_time": 2400}, "sched_arr_time"),
            ({"carrier": "united"}, "carrier"),
            ({"distance": -3}, "distance"),
            ({"date": "2013-02-30"}, "date"),
            ({"origin": None}, "origin"),
            ({"arr_delay": 12}, "arr_delay"),  # the target is not an input
        ),
    ),
    "taxi": Setup(
        landed=("2022-01-01", "2022-04-01"),
        training={"window_start": "2022-01-01", "window_end": "2022-04-01",
                  "validation_partitions": 1, "test_partitions": 1},
        bad_fields=(
            ({"distance": -0.5}, "distance"),
            ({"distance": 250}, "distance"),
            ({"hour": 24}, "hour"),
            ({"dow": "Funday"}, "dow"),
            ({"local": "sometimes"}, "local"),
            ({"company": None}, "company"),
            ({"trip_id": 17}, "trip_id"),
            ({"tip": 1}, "tip"),  # the target is not an input
        ),
    ),
}  # fmt: skip
PIPELINES = tuple(SETUPS)


def wait_answering(url: str, path: str, process, timeout_s: float = 90.0) -> None:
    """Return once ``url + path`` answers 200; fail if ``process`` (the service) exits or the
    time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the service exited with {process.returncode}"
        try:
            if httpx.get(f"{url}{path}", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url}{path} did not answer 200 within {timeout_s:.0f} s")


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports nothing listens on (held open together until all are chosen)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


@dataclass
class Platform:
    """The platform every world of a test module shares: home, instance, resources."""

    home: Path
    instance: dg.DagsterInstance
    resources: dict[str, Any]
    worlds: dict[str, "World"] = field(default_factory=dict)

    def world(self, name: str) -> "World":
        if name not in self.worlds:
            self.worlds[name] = build_world(self, name)
        self.resources["mlflow"].use()  # whatever store the previous test left MLflow on
        return self.worlds[name]

    def with_services(self, **urls: str) -> dict[str, Any]:
        """The platform's resources with the services of some pipelines elsewhere."""
        services = self.resources["prediction_services"]
        moved = PredictionServices(urls={**services.urls, **urls}, timeout_s=5)
        return {**self.resources, "prediction_services": moved}


@dataclass
class World:
    """One pipeline on the platform, with its tiny model registered and deployed."""

    platform: Platform
    declaration: PipelineDeclaration
    first_version: str = ""
    study: dict = field(default_factory=dict)
    """The ``hyperparameter_study`` handle of the model chain."""

    @property
    def name(self) -> str:
        return self.declaration.name

    @property
    def setup(self) -> Setup:
        return SETUPS[self.name]

    @property
    def model_name(self) -> str:
        return self.declaration.model.registered_model_name

    @property
    def task(self) -> str:
        return self.declaration.model.task

    @functools.cached_property
    def served(self) -> ServedModel:
        return served_model(self.declaration, pipelines.serving_hooks(self.name))

    @property
    def endpoint(self) -> ServingEndpoint:
        return self.platform.resources["prediction_services"].endpoint(self.name)

    @property
    def tolerance(self) -> float:
        return self.declaration.deploy.tolerance

    def key(self, name: str) -> dg.AssetKey:
        return asset_key(self.declaration, name)

    def op(self, name: str) -> str:
        return f"{self.declaration.prefix}__{name}"

    def partitions(self) -> list[str]:
        """The landed partitions, in order."""
        first, last = self.setup.landed
        keys = partitions_definition(self.declaration.partitions).get_partition_keys()
        return [k for k in keys if first <= k <= last]

    def materialize(self, selection, assets=None, resources=None, **kwargs):
        return dg.materialize(
            assets or ASSETS,
            selection=selection,
            resources=resources or self.platform.resources,
            instance=self.platform.instance,
            **kwargs,
        )

    def deploy(self, version: str, resources: dict | None = None, **config):
        """``deploy`` on this world's platform (or with other ``resources``)."""
        resources = resources or self.platform.resources
        return deploy(self.declaration, version, resources, self.platform.instance, **config)

    def roll_back(self, resources: dict | None = None) -> dg.ExecuteInProcessResult:
        return build_rollback_job(self.declaration).execute_in_process(
            resources=resources or self.platform.resources,
            instance=self.platform.instance,
            raise_on_error=False,
        )

    def features(self, partition: str | None = None) -> pd.DataFrame:
        features = self.key(self.declaration.model.features_asset)
        return read_partition(warehouse_url(), features, partition or self.setup.landed[1])

    def requests(self, partition: str | None = None) -> list[dict[str, Any]]:
        """What callers would send for the rows of the partition (default: the last)."""
        rows = read_partition(
            warehouse_url(),
            self.key(self.declaration.serving.requests_asset),
            partition or self.setup.landed[1],
        )
        return pipelines.serving_hooks(self.name).request_items(rows)

    def registered(self, version: str) -> LoadedModel:
        """``version`` as the registry holds it: the scikit-learn pipeline."""
        return load_version(
            self.model_name, version, self.served.features, self.task, prefer_onnx=False
        )

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.endpoint.url}{path}", timeout=30)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return httpx.post(f"{self.endpoint.url}{path}", timeout=30, **kwargs)


def tiny_model(world: World) -> dict:
    """Run config of a tiny model chain that any model passes: these tests are about deploys."""
    return {
        "ops": {
            world.op("training_set"): {"config": world.setup.training},
            world.op("hyperparameter_study"): {"config": {"n_trials": 3, "workers": 1}},
            world.op("model_evaluation"): {"config": {"min_improvement_over_baseline": -100.0}},
        }
    }


def build_world(platform: Platform, name: str) -> World:
    """Land, materialize the data layers, then one run of the model chain and its deploy."""
    world = World(platform, pipelines.declaration(name))
    declared = world.declaration
    pipelines.load(name).publish(default_landing_zone(), world.partitions())
    reference = [asset_key(declared, s.name) for s in declared.sources if not s.partitioned]
    if reference:
        assert world.materialize(reference).success
    layers = dg.AssetSelection.groups(
        *(group(declared, layer) for layer in (INGEST, CLEAN, FEATURES))
    )
    first, last = world.setup.landed
    assert world.materialize(
        layers - dg.AssetSelection.assets(*reference),
        tags={"dagster/asset_partition_range_start": first,
              "dagster/asset_partition_range_end": last},
    ).success  # fmt: skip
    chain = world.materialize(
        [*(world.key(n) for n in MODEL_ASSET_NAMES), world.key("deployed_endpoint")],
        run_config=tiny_model(world),
    )
    assert chain.success
    world.first_version = chain.output_for_node(world.op("registered_model"))["version"]
    world.study = chain.output_for_node(world.op("hyperparameter_study"))
    return world


@contextlib.contextmanager
def open_platform(home: Path) -> Iterator[Platform]:
    """A platform on ``home`` (an empty folder), its services stopped on exit."""
    names = pipelines.names()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(HOME_ENV_VAR, str(home))
        for var in (LANDING_ENV_VAR, WAREHOUSE_ENV_VAR, ONLINE_STORE_ENV_VAR, TRACKING_URI_ENV_VAR,
                    OPTUNA_STORAGE_ENV_VAR, TOKEN_ENV_VAR):  # fmt: skip
            patch.delenv(var, raising=False)
        for name, port in zip(names, free_ports(len(names)), strict=True):
            patch.setenv(url_env_var(name), f"http://127.0.0.1:{port}")
        with platform_test_instance() as instance:
            resources = platform_resources([pipelines.declaration(n) for n in names])
            platform = Platform(home, instance, resources)
            try:
                yield platform
            finally:
                for world in platform.worlds.values():
                    stop_service(world)
                # mlflow.set_tracking_uri also sets this; later modules must not inherit it
                os.environ.pop(TRACKING_URI_ENV_VAR, None)


def go_live(world: World, version: str) -> None:
    """Make ``version`` the live champion, alone (the state a test starts from): a rollout
    another test left going is ended."""
    world.endpoint.ensure_running(dg.get_dagster_logger())
    rolling = registry.alias_version(world.model_name, registry.CHALLENGER)
    if rolling is not None and registry.stage(world.model_name, rolling) in STAGES:
        registry.set_stage(world.model_name, rolling, ROLLED_BACK, "ended by a test")
    registry.promote(world.model_name, version)
    served = world.endpoint.reload()
    assert served["version"] == version
    assert served["rollout"]["stage"] == "full"


LINEAR = {"regression": ("ridge", {"alpha": 1.0}), CLASSIFY: ("logistic_regression", {"C": 1.0})}


def log_model(world: World, pipeline, X: pd.DataFrame, trusted, onnx: bytes | None = None) -> str:
    """Register ``pipeline`` (fitted on ``X``) as a new version, with ``onnx`` as its run's
    ONNX export if given; skops trusts ``trusted``, as the model's own files would declare."""
    import mlflow
    from mlflow.models import infer_signature

    from ml_assets.contract.model_format import ONNX_ARTIFACT, ONNX_DIR, scores
    from ml_assets.modeling.tracking_logs import model_requirements

    experiment = world.platform.resources["mlflow"].experiment_id(
        world.declaration.model.experiment
    )
    with mlflow.start_run(experiment_id=experiment, run_name="made-by-the-test"):
        info = mlflow.sklearn.log_model(
            pipeline, name="model", serialization_format="skops", skops_trusted_types=trusted,
            signature=infer_signature(X.head(), scores(pipeline, X.head(), world.task)),
            pip_requirements=model_requirements(),  # not inferred: 10-40 s a model here
        )  # fmt: skip
        if onnx is not None:
            scratch = world.platform.home / "tmp" / ONNX_ARTIFACT
            scratch.parent.mkdir(parents=True, exist_ok=True)
            scratch.write_bytes(onnx)
            mlflow.log_artifact(str(scratch), ONNX_DIR)
    return str(mlflow.register_model(info.model_uri, world.model_name).version)


def register_linear(world: World, onnx: bytes | None = None, flip: bool = False) -> str:
    """A linear model fitted here, registered: with ``onnx``, another model's export (or bytes
    that are no model at all) as its own, so it is not the model it was registered with;
    ``flip`` fits it to the opposite target (an hour later, or the other class), so it scores
    well-formed answers that disagree with every real model."""
    from ml_assets.contract.model_format import SKOPS_TRUSTED_TYPES
    from ml_assets.modeling.estimators import build_pipeline

    model = world.declaration.model
    features = world.features()
    rows = features[features[model.target].notna()]
    target = rows[model.target]
    if flip:
        target = 1 - target if world.task == CLASSIFY else target + 60
    family, params = LINEAR[world.task]
    pipeline = build_pipeline(family, params, world.served.features, world.task)
    pipeline.fit(rows[model.features], target)
    trusted = list(SKOPS_TRUSTED_TYPES[world.task, family])
    return log_model(world, pipeline, rows[model.features], trusted, onnx)


def register_copy(world: World, source_version: str) -> str:
    """A new registry version of the same trained model (and tags): a good model to roll out."""
    import mlflow

    source = mlflow.tracking.MlflowClient().get_model_version(world.model_name, source_version)
    copy = mlflow.register_model(f"runs:/{source.run_id}/model", world.model_name, tags=source.tags)
    return str(copy.version)


def registered_stub(declaration: PipelineDeclaration, version: str) -> dg.AssetsDefinition:
    """``registered_model`` as if the model chain had just registered ``version``."""

    @dg.asset(
        key=asset_key(declaration, "registered_model"),
        io_manager_key="json_io_manager",
        group_name=f"{declaration.prefix}_{MODELS}",
    )
    def registered_model() -> dict:
        return {"name": declaration.model.registered_model_name, "version": version}

    return registered_model


TEST_LATENCY_BUDGET_MS = 1000.0
"""The smoke test's p95 budget in the serving worlds: the declared 50 ms default was missed
(52 ms) with the other xdist worker's services and studies on the same two cores."""


def deploy(
    declaration: PipelineDeclaration,
    version: str,
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    **config: Any,
) -> dg.ExecuteInProcessResult:
    """Materialize ``deployed_endpoint`` as if the model chain had just registered
    ``version``; it replaces the champion at once unless ``staged=True`` is given. The smoke
    test's latency budget is ``TEST_LATENCY_BUDGET_MS`` unless given: the budget's own test
    gives one, the others test what the deploy does, not how fast a busy machine answers."""
    config.setdefault("staged", False)
    config.setdefault("latency_budget_ms", TEST_LATENCY_BUDGET_MS)
    stub = registered_stub(declaration, version)
    assets = [a for a in ASSETS if asset_key(declaration, "registered_model") not in a.keys]
    return dg.materialize(
        [*assets, stub],
        selection=[stub.key, asset_key(declaration, "deployed_endpoint")],
        resources=resources,
        instance=instance,
        run_config={"ops": {f"{declaration.prefix}__deployed_endpoint": {"config": config}}},
        raise_on_error=False,
    )


def stop_service(world: World) -> None:
    pid_file = world.platform.home / "serving" / f"{world.name}.pid"
    if pid_file.exists():
        os.killpg(int(pid_file.read_text()), signal.SIGTERM)
        pid_file.unlink()
    deadline = time.monotonic() + 30
    while world.endpoint.is_up() and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.fixture(scope="session")
def serving_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The session's deploy-layer platform (a plugin fixture: see ``tests/conftest.py``)."""
    with open_platform(tmp_path_factory.mktemp("serving")) as platform:
        yield platform


@pytest.fixture
def platform(serving_platform: Platform) -> Platform:
    return serving_platform


@pytest.fixture(params=PIPELINES)
def world(request: pytest.FixtureRequest, serving_platform: Platform) -> World:
    """Each pipeline's world (a test module may override it, e.g. to go live first)."""
    return serving_platform.world(request.param)


@pytest.fixture
def flights(serving_platform: Platform) -> World:
    return serving_platform.world("flights")
