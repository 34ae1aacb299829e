"""``ml-assets prod up | down``: the production profile on this machine, against the real
services (the machine's PostgreSQL and RabbitMQ; S3 a moto server the profile starts).

One profile for the module, on a fresh home, fresh uniquely named databases and ports of its
own: the webserver behind haproxy's basic auth, the MLflow server storing artifacts in S3,
the taxi service's two replicas behind haproxy serving a champion registered through the
server, a rolling reload and a killed replica under steady load, and ``prod down`` leaving no
process. The challenger figures summed over replicas are unit-tested first.
"""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import httpx
import pytest
import sqlalchemy
from conftest import POSTGRES
from serving_fixtures import (
    CLASSIFY,
    LINEAR,
    Platform,
    World,
    free_ports,
    go_live,
    log_model,
    register_copy,
)

from ml_assets import pipelines, prod
from ml_assets.deployment.staged_rollout import pooled
from ml_assets.executor import BROKER_ENV_VAR
from ml_assets.home import HOME_ENV_VAR, PROJECT_ROOT
from resources.balancer import BALANCER_SOCKET_ENV_VAR, Balancer
from resources.builder import platform_resources
from resources.prediction_services import replicas_env_var
from serving.settings import TOKEN_ENV_VAR, url_env_var

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PASSWORD = f"ui-{uuid.uuid4().hex}"
TOKEN = f"token-{uuid.uuid4().hex}"
S3_SECRET = f"s3-secret-{uuid.uuid4().hex}"
SESSION_PREFIXES = ("ML_ASSETS_", "AWS_", "MLFLOW_", "DAGSTER_", "PG")
"""The session's own settings stay out of the profile's processes."""


def _challenger(stage: str, version: str, **stats: Any) -> dict[str, Any]:
    figures = {"version": version, "since": 1.0, "requests": 0, "answered": 0, "errors": 0,
               "items": 0, "agreement": None, "latency_p50_ms": None,
               "latency_p95_ms": None}  # fmt: skip
    return {"rollout": {"stage": stage, "challenger": {**figures, **stats}}}


def test_the_challenger_figures_are_pooled_over_the_replicas() -> None:
    one = _challenger("shadow", "7", since=10.0, requests=120, errors=1, items=120,
                      agreement=0.9, latency_p95_ms=3.0, latency_p50_ms=1.0)  # fmt: skip
    two = _challenger("shadow", "7", since=12.0, requests=80, errors=3, items=100,
                      agreement=0.6, latency_p95_ms=5.0, latency_p50_ms=0.5)  # fmt: skip
    stage, stats = pooled([one, None, two])  # the second replica does not answer
    assert stage == "shadow"
    assert (stats["requests"], stats["errors"], stats["items"]) == (200, 4, 220)
    assert stats["error_rate"] == pytest.approx(4 / 200)
    assert stats["agreement"] == pytest.approx((0.9 * 120 + 0.6 * 100) / 220)
    assert (stats["latency_p95_ms"], stats["latency_p50_ms"]) == (5.0, 1.0)  # the worst's
    assert stats["since"] == 12.0 and stats["replicas"] == 2


def test_replicas_that_disagree_or_roll_nothing_out_give_no_state() -> None:
    full = {"rollout": {"stage": "full", "challenger": None}}
    assert pooled([_challenger("shadow", "7"), _challenger("canary", "7")]) is None
    assert pooled([_challenger("shadow", "7"), _challenger("shadow", "8")]) is None
    assert pooled([_challenger("shadow", "7"), full]) is None  # a reload is passing through
    assert pooled([full, full]) is None
    assert pooled([None, None]) is None
    one = _challenger("canary", "7", requests=5, items=5, agreement=1.0, latency_p95_ms=2.0)
    assert pooled([one]) == ("canary", {**one["rollout"]["challenger"], "error_rate": 0.0,
                                        "replicas": 1})  # fmt: skip


def _environment(home: Path, **settings: str) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith(SESSION_PREFIXES)}
    return {**kept, HOME_ENV_VAR: str(home), **settings}


def _prod(env: dict[str, str], action: str, timeout_s: float = 360) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ml_assets.cli", "prod", action, "--timeout", "300"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s,
    )  # fmt: skip


def test_up_refuses_without_the_basic_auth_secret(tmp_path: Path) -> None:
    env = _environment(tmp_path, **{TOKEN_ENV_VAR: TOKEN, "AWS_ACCESS_KEY_ID": "testing",
                                    "AWS_SECRET_ACCESS_KEY": S3_SECRET})  # fmt: skip
    done = _prod(env, "up", timeout_s=120)
    assert done.returncode == 2, done.stderr
    assert "DAGSTER_UI_PASSWORD_HASH (or DAGSTER_UI_PASSWORD_HASH_FILE)" in done.stderr
    assert TOKEN_ENV_VAR not in done.stderr  # only what is missing is named
    assert not (tmp_path / "prod").exists()  # nothing was started or written


@dataclass
class Profile:
    """The running profile: its environment (as every process of it sees it, secrets too)."""

    env: dict[str, str]
    up_seconds: float
    home: Path

    def url(self, name: str) -> str:
        return self.env[url_env_var(name)]

    def replicas(self, name: str) -> list[str]:
        return self.env[replicas_env_var(name)].split(",")

    @property
    def ui(self) -> str:
        return f"http://127.0.0.1{self.env['ML_ASSETS_UI_BIND']}"

    @property
    def balancer(self) -> Balancer:
        return Balancer(self.env[BALANCER_SOCKET_ENV_VAR])


def _rabbitmq(*command: str) -> None:
    subprocess.run(["rabbitmqctl", *command], check=True, capture_output=True, timeout=60)


def _drop(databases: list[str]) -> None:
    admin = sqlalchemy.create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for name in databases:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Profile]:
    """``ml-assets prod up`` on a fresh home, with databases and a RabbitMQ virtual host of
    its own (its workers take no step of another test's runs on the broker); stopped (if a
    test did not) and its databases and virtual host dropped afterwards."""
    from honcho.environ import parse

    home = tmp_path_factory.mktemp("prod")
    prefix = f"test_prod_{uuid.uuid4().hex[:8]}"
    _rabbitmq("add_vhost", prefix)
    _rabbitmq("set_permissions", "-p", prefix, "guest", ".*", ".*", ".*")
    ui, webserver, mlflow, s3, *serving = free_ports(4 + 3 * len(pipelines.names()))
    settings = {
        "DAGSTER_UI_PASSWORD_HASH": subprocess.run(
            ["openssl", "passwd", "-6", "-stdin"], input=PASSWORD, capture_output=True,
            text=True, check=True,
        ).stdout.strip(),
        TOKEN_ENV_VAR: TOKEN, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "ML_ASSETS_UI_PORT": str(ui), "ML_ASSETS_WEBSERVER_PORT": str(webserver),
        "ML_ASSETS_MLFLOW_PORT": str(mlflow), "ML_ASSETS_S3_PORT": str(s3),
        "ML_ASSETS_DATABASE_PREFIX": prefix,
        BROKER_ENV_VAR: f"pyamqp://guest:guest@127.0.0.1:5672/{prefix}",
    }  # fmt: skip
    for i, name in enumerate(pipelines.names()):
        lb, *replicas = serving[3 * i : 3 * i + 3]
        settings[url_env_var(name)] = f"http://127.0.0.1:{lb}"
        settings[replicas_env_var(name)] = ",".join(f"http://127.0.0.1:{p}" for p in replicas)
    env = _environment(home, **settings)
    began = time.monotonic()
    done = _prod(env, "up")
    up_seconds = time.monotonic() - began
    print(done.stdout, done.stderr)
    try:
        log = home / "prod" / "honcho.log"
        assert done.returncode == 0, done.stderr + (log.read_text()[-5000:] if log.exists() else "")
        profile_env = {**env, **parse((home / "prod" / "profile.env").read_text())}
        print(f"prod up: ready after {up_seconds:.1f} s")
        yield Profile(profile_env, up_seconds, home)
    finally:
        _prod(env, "down", timeout_s=120)
        _drop([f"{prefix}_{kind}" for kind in ("dagster", "mlflow", "optuna")])
        _rabbitmq("delete_vhost", prefix)


def test_the_webserver_answers_only_with_the_basic_auth_password(profile: Profile) -> None:
    assert httpx.get(f"{profile.ui}/server_info").status_code == 401
    assert httpx.get(f"{profile.ui}/server_info", auth=("admin", "wrong")).status_code == 401
    auth = ("admin", PASSWORD)
    assert httpx.get(f"{profile.ui}/server_info", auth=auth).status_code == 200
    query = "{ repositoriesOrError { ... on RepositoryConnection { nodes { name } } } }"
    answer = httpx.post(f"{profile.ui}/graphql", json={"query": query}, auth=auth, timeout=30)
    assert answer.status_code == 200
    assert answer.json()["data"]["repositoriesOrError"]["nodes"], answer.text
    denied = httpx.post(f"{profile.ui}/graphql", json={"query": query})
    assert denied.status_code == 401


def _processes(profile: Profile) -> Iterator[tuple[int, list[bytes], dict[str, str]]]:
    """The pid, argv and environment of each process the profile started."""
    for pid in prod.marked_processes(profile.env[prod.MARK_ENV_VAR]):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        yield pid, argv, dict(e.decode(errors="replace").partition("=")[::2] for e in environ if e)


PROGRAMS = {
    b"/bin/sh": "shell", b"honcho": "honcho", b"haproxy": "haproxy", b"moto.server": "s3",
    b"mlflow": "mlflow", b"dagster-webserver": "webserver", b"dagster-daemon": "daemon",
    b"celery": "worker", b"serve": "serving",
}  # fmt: skip
"""How the profile's programs are told apart by their first arguments (the first mark found;
a shell's command line names the program it runs)."""


def test_each_process_is_given_only_the_secrets_it_uses(profile: Profile) -> None:
    """Only honcho and the shells it runs each command in see every secret: the command
    itself is started without those it does not use (children, such as the code servers
    and MLflow's uvicorn, inherit what their program has)."""
    given: dict[str, set[str]] = {}
    for _, argv, environ in _processes(profile):
        program = next((p for mark, p in PROGRAMS.items() if any(mark in a for a in argv[:4])), "")
        secrets = {name for name in prod.SECRETS if name in environ}
        given.setdefault(program, set()).update(secrets)
        if program not in ("honcho", "shell", "haproxy"):
            assert prod.UI_PASSWORD_HASH not in secrets, argv
    given.pop("", None)  # children: checked above for the UI's hash
    s3, token = prod.S3_KEYS, {TOKEN_ENV_VAR}
    assert given == {
        "haproxy": {prod.UI_PASSWORD_HASH}, "s3": set(), "mlflow": s3, "webserver": s3,
        "daemon": s3 | token, "worker": s3 | token, "serving": s3 | token,
        "honcho": set(prod.SECRETS), "shell": set(prod.SECRETS),
    }  # fmt: skip


def _trips():
    """The taxi trips as the cleaner types them (ids as text, ``tip`` and ``local`` bool)."""
    from ml_assets.pipelines.taxi.publish import trips

    return trips().assign(
        trip_id=lambda t: t["trip_id"].astype(str),
        tip=lambda t: t["tip"] == "yes",
        local=lambda t: t["local"] == "yes",
    )


@pytest.fixture(scope="module")
def requests() -> list[dict[str, Any]]:
    """What callers of the taxi service send."""
    return pipelines.serving_hooks("taxi").request_items(_trips().head(200))


@pytest.fixture(scope="module")
def taxi(profile: Profile) -> Iterator[World]:
    """The taxi pipeline on the profile: the platform's resources as its processes build
    them, and a linear model fitted here and registered through the MLflow server."""
    from ml_assets.contract.model_format import SKOPS_TRUSTED_TYPES
    from ml_assets.modeling.estimators import build_pipeline
    from ml_assets.pipelines.taxi.features import feature_frame

    with pytest.MonkeyPatch.context() as patch:
        for name in [k for k in os.environ if k.startswith(SESSION_PREFIXES)]:
            patch.delenv(name)
        for name, value in profile.env.items():
            patch.setenv(name, value)
        declared = pipelines.declaration("taxi")
        instance = dg.DagsterInstance.from_config(profile.env["DAGSTER_HOME"])
        resources = platform_resources([pipelines.declaration(n) for n in pipelines.names()])
        world = World(Platform(profile.home, instance, resources), declared)
        features = feature_frame(_trips())
        family, params = LINEAR[CLASSIFY]
        model = build_pipeline(family, params, world.served.features, CLASSIFY)
        X = features[declared.model.features]
        model.fit(X, features[declared.model.target])
        trusted = list(SKOPS_TRUSTED_TYPES[CLASSIFY, family])
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # the server proxies S3
            patch.delenv(name)
        world.first_version = log_model(world, model, X, trusted)
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            patch.setenv(name, profile.env[name])
        try:
            yield world
        finally:
            instance.dispose()


def test_models_registered_through_the_mlflow_server_are_stored_in_s3(
    profile: Profile, taxi: World
) -> None:
    assert httpx.get(f"{profile.env['MLFLOW_TRACKING_URI']}/health").status_code == 200
    s3 = boto3.client("s3", endpoint_url=profile.env["AWS_ENDPOINT_URL"])
    listed = s3.list_objects_v2(Bucket="ml-assets", Prefix="mlflow/")
    keys = [item["Key"] for item in listed.get("Contents", [])]
    assert any(key.endswith("MLmodel") for key in keys), keys
    assert not (profile.home / "mlflow").exists()  # nothing of MLflow on the local disk


def test_the_replicas_serve_the_champion_through_the_balancer(
    taxi: World, requests: list[dict[str, Any]]
) -> None:
    go_live(taxi, taxi.first_version)  # reloads each replica in turn
    described = taxi.endpoint.describe_each()
    assert [d["version"] for d in described] == [taxi.first_version] * 2  # type: ignore[index]
    answer = httpx.post(f"{taxi.endpoint.url}/predict", json=requests[:3])
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == taxi.first_version


@dataclass
class Load:
    """Client threads sending single predictions to ``url`` without pause until stopped."""

    url: str
    requests: list[dict[str, Any]]
    threads: int = 4
    answered: int = 0
    failed: list[str] = field(default_factory=list)
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def _client(self, offset: int) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            i = offset
            while not self.stop.is_set():
                with self.lock:
                    self.in_flight += 1
                try:
                    status = client.post("/predict", json=self.requests[i % len(self.requests)])
                    outcome = None if status.status_code == 200 else f"{status.status_code}"
                except httpx.HTTPError as error:
                    outcome = f"{type(error).__name__}: {error}"
                with self.lock:
                    self.in_flight -= 1
                    if outcome is None:
                        self.answered += 1
                    else:
                        self.failed.append(outcome)
                i += self.threads

    def __enter__(self) -> "Load":
        self._running = [threading.Thread(target=self._client, args=(i,), daemon=True)
                         for i in range(self.threads)]  # fmt: skip
        for thread in self._running:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self._running:
            thread.join(30)


def test_a_rolling_reload_under_load_loses_no_request(
    taxi: World, requests: list[dict[str, Any]]
) -> None:
    go_live(taxi, taxi.first_version)
    copy = register_copy(taxi, taxi.first_version)
    with Load(taxi.endpoint.url, requests) as load:
        time.sleep(2)
        before = load.answered
        began = time.monotonic()
        go_live(taxi, copy)  # each replica drained in haproxy, reloaded, made ready
        reload_s = time.monotonic() - began
        time.sleep(2)
    print(f"rolling reload in {reload_s:.1f} s under load: {load.answered} answered "
          f"({load.answered - before} from the reload on), {len(load.failed)} failed")  # fmt: skip
    assert load.failed == [] and load.answered - before > 50
    assert [d["version"] for d in taxi.endpoint.describe_each()] == [copy] * 2  # type: ignore[index]


def _serving_pid(profile: Profile, replica: str) -> int:
    """The pid of the ``ml-assets serve`` process listening on ``replica``'s port."""
    port = replica.rsplit(":", 1)[1]
    for pid, argv, _ in _processes(profile):
        if b"serve" in argv and port.encode() in argv and b"ml_assets.cli" in argv:
            return pid
    raise AssertionError(f"no serving process on {replica}")


def _status(profile: Profile, replica: str) -> str:
    return (profile.balancer.server_of(replica) or {}).get("status", "?")


def test_a_killed_replica_is_taken_out_and_the_other_serves_on(
    profile: Profile, taxi: World, requests: list[dict[str, Any]]
) -> None:
    victim, survivor = profile.replicas("taxi")
    go_live(taxi, taxi.first_version)
    with Load(taxi.endpoint.url, requests) as load:
        time.sleep(2)
        with load.lock:
            os.kill(_serving_pid(profile, victim), signal.SIGKILL)
            in_flight, answered_at_kill = load.in_flight, load.answered
        deadline = time.monotonic() + 15
        while _status(profile, victim) != "DOWN" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _status(profile, victim) == "DOWN"
        with load.lock:
            failed_until_down, answered_at_down = len(load.failed), load.answered
        # the survivor serves on: 50 more answers (however loaded the machine is), none failed
        deadline = time.monotonic() + 30
        while load.answered - answered_at_down < 50 and time.monotonic() < deadline:
            time.sleep(0.1)
    print(f"replica killed under load: {answered_at_kill} answered before the kill, "
          f"{in_flight} in flight at the kill, {failed_until_down} failed "
          f"({load.failed[:3]}); {load.answered - answered_at_down} answered after haproxy "
          f"took it out, {len(load.failed) - failed_until_down} failed then")  # fmt: skip
    assert failed_until_down <= in_flight
    assert len(load.failed) == failed_until_down and load.answered - answered_at_down >= 50
    assert _status(profile, survivor) == "UP"
    deadline = time.monotonic() + 90  # its supervisor starts it again
    while _status(profile, victim) != "UP" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _status(profile, victim) == "UP"


def test_down_stops_every_process_and_no_secret_was_written(profile: Profile) -> None:
    mark = profile.env[prod.MARK_ENV_VAR]
    assert prod.marked_processes(mark)
    done = _prod(profile.env, "down", timeout_s=120)
    assert done.returncode == 0, done.stderr
    assert prod.marked_processes(mark) == []
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{profile.ui}/server_info", timeout=2)
    for path in (p for p in profile.home.rglob("*") if p.is_file()):
        text = path.read_bytes()
        for secret in (PASSWORD, TOKEN, S3_SECRET):
            assert secret.encode() not in text, path
