"""The platform as a user runs it, shared by the live tests: ``ml-assets dev`` (webserver and
daemon) on a fresh home with the default seeding of ``make run``, and the ways to watch it (the
webserver's GraphQL API, the warehouse files, the served endpoints).

One platform serves the whole session: starting it and letting automation train the first model
of every pipeline takes minutes, so every live test reads or extends the same one. A test that
changes it (a backfill, a model launch, a damaged file) says so and leaves the rest intact.
"""

import contextlib
import json
import math
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from ml_assets import pipelines
from ml_assets.home import PROJECT_ROOT
from ml_assets.processes import stop_groups
from serving.settings import url_env_var

FINISHED = ("SUCCESS", "FAILURE", "CANCELED")
README_REQUEST = re.compile(r"curl -s localhost:(\d+)/predict .*? -d '(.*?)'", re.DOTALL)
"""A ``curl`` of the README to a service's declared port, and its body."""
FIRST_PREDICTION_DEADLINE_S = 1500.0
"""How long the session waits for every pipeline's first served prediction before it fails.
Not the speed target (10 minutes on 2 cores, issue 10): under ``make test`` the other xdist
worker's tests share the cores; the figures are printed with the session's output."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def tag(run: dict, key: str) -> str | None:
    return next((t["value"] for t in run["tags"] if t["key"] == key), None)


def readme_requests() -> dict[str, dict]:
    """The README's example request of each pipeline, by the port its ``curl`` names."""
    by_port = {pipelines.declaration(name).serving.port: name for name in pipelines.names()}
    text = (PROJECT_ROOT / "README.md").read_text()
    return {by_port[int(port)]: json.loads(body) for port, body in README_REQUEST.findall(text)}


def post_json(url: str, body: object, timeout: float = 5) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


@dataclass(frozen=True)
class LivePlatform:
    """A running ``ml-assets dev``: its webserver port, home, environment and start time."""

    port: int
    home: Path
    env: dict[str, str]
    started: float
    """``time.monotonic()`` when ``ml-assets dev`` was launched."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serving_url(self, pipeline: str) -> str:
        return self.env[url_env_var(pipeline)]

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = post_json(f"{self.url}/graphql", {"query": query, "variables": variables or {}}, 30)
        assert "errors" not in body, body
        return body["data"]

    def runs(self) -> list[dict]:
        data = self.graphql(
            "{ runsOrError(limit: 500) { ... on Runs { results { runId status "
            "tags { key value } assetSelection { path } } } } }"
        )
        return data["runsOrError"]["results"]

    def settled(self) -> bool:
        """No run is queued or in progress."""
        return all(run["status"] in FINISHED for run in self.runs())

    def partitions(self, pipeline: str, asset: str) -> set[str]:
        """The partitions of a partitioned table written to the warehouse."""
        return {p.stem for p in self.files(pipeline, asset)}

    def files(self, pipeline: str, asset: str) -> list[Path]:
        return sorted((self.home / "warehouse" / pipeline / asset).glob("*.parquet"))

    def predict(self, pipeline: str, request: dict) -> dict | None:
        """The service's answer to one request, or None while nothing answers."""
        try:
            return post_json(f"{self.serving_url(pipeline)}/predict", request, timeout=2)
        except OSError:
            return None


def dev_environment(home: Path) -> dict[str, str]:
    """The environment of an ``ml-assets dev`` on ``home``: none of the caller's platform or
    Dagster settings, every pipeline's service on a free port (none may meet a service
    already running). Outside ``make test``'s line coverage: the platform's own timings are
    what these tests print and wait on, and the tracer doubled them (the step processes,
    services and daemon code it runs are measured in the other groups' tests)."""
    return {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DAGSTER_", "ML_ASSETS_", "MLFLOW_"))
            and k != "COVERAGE_PROCESS_CONFIG"
        },
        "ML_ASSETS_HOME": str(home),
        **{url_env_var(name): f"http://127.0.0.1:{free_port()}" for name in pipelines.names()},
    }


def start_dev(env: dict[str, str], port: int, log: IO, *options: str) -> subprocess.Popen:
    """``ml-assets dev`` with ``env`` on ``port``, in a process group of its own (as a
    terminal's foreground job), its output to ``log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "ml_assets.cli", "dev", "--port", str(port), *options],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def webserver_up(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
    except OSError:
        return False
    return True


_STOPS: dict[str, list[Callable[[], None]]] = {}
"""Per session fixture, how to stop what it started, once the last test that uses it is done."""


@contextlib.contextmanager
def stopped_after_last_user(fixture: str, stop: Callable[[], None]) -> Iterator[None]:
    """Run ``stop`` after the last test (in collection order, the order they run in, all on one
    worker) that uses ``fixture``, or when the block ends, whichever comes first — not at the
    end of the session: the live platform's daemon would tick on beside every later test of
    the worker, and sync Playwright keeps an event loop running in the worker's thread (a
    later test's ``asyncio.run`` fails)."""
    stops = _STOPS.setdefault(fixture, [])
    stops.append(stop)
    try:
        yield
    finally:
        if stop in stops:
            stops.remove(stop)
            stop()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    for fixture, stops in _STOPS.items():
        if stops and item is _last_user(item.session, fixture):
            while stops:
                stops.pop()()


def _last_user(session: pytest.Session, fixture: str) -> pytest.Item | None:
    return next((i for i in reversed(session.items) if fixture in i.fixturenames), None)


@pytest.fixture(scope="session")
def live_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePlatform]:
    """``make run`` on an empty home: ``ml-assets dev`` with its default seeding."""
    home = tmp_path_factory.mktemp("live-home")
    port = free_port()
    env = dev_environment(home)
    log = (home / "dev.log").open("w")
    started = time.monotonic()
    process = start_dev(env, port, log)

    def stop() -> None:
        stop_groups([process], 30)  # it stops the services deployed_endpoint started too
        log.close()

    with stopped_after_last_user("live_platform", stop):
        wait_for(lambda: webserver_up(port), 120, "the Dagster webserver")
        yield LivePlatform(port, home, env, started)


@dataclass(frozen=True)
class FirstModels:
    """The platform once every pipeline serves its first model and no run is in flight."""

    platform: LivePlatform
    seconds_to_prediction: dict[str, float]
    """Per pipeline: ``ml-assets dev`` launched → the README's request answered."""


def _answered(platform: LivePlatform, pipeline: str) -> bool:
    served = pipelines.declaration(pipeline).serving
    answer = platform.predict(pipeline, readme_requests()[pipeline])
    if answer is None:
        return False
    value = answer["predictions"][0][served.prediction]
    assert math.isfinite(value), answer
    return True


@pytest.fixture(scope="session")
def first_models(live_platform: LivePlatform, pytestconfig: pytest.Config) -> FirstModels:
    seconds: dict[str, float] = {}

    def every_pipeline_answers() -> bool:
        for name in pipelines.names():
            if name not in seconds and _answered(live_platform, name):
                seconds[name] = time.monotonic() - live_platform.started
        return len(seconds) == len(pipelines.names())

    remaining = FIRST_PREDICTION_DEADLINE_S - (time.monotonic() - live_platform.started)
    wait_for(every_pipeline_answers, remaining, "every pipeline's first served prediction")
    wait_for(live_platform.settled, 300, "the runs after the first deploys to finish")
    figures = ", ".join(f"{name} {s:.0f} s" for name, s in seconds.items())
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # in the session's output, passed or not
        print(f"\nfirst served prediction after `ml-assets dev` started: {figures}", flush=True)
    return FirstModels(live_platform, seconds)
