"""``ml-assets prod up | down | status``: the production profile on one machine, under honcho.

``up`` creates the PostgreSQL databases it needs, writes what the processes read under
``$ML_ASSETS_HOME/prod/`` (the Procfile, the profile's environment, the Dagster instances,
haproxy's replicas) and starts honcho in the background with: a local S3 (a moto server,
unless ``AWS_ENDPOINT_URL`` names one), the MLflow tracking server (PostgreSQL backend store,
artifacts proxied to S3), the Dagster webserver and daemon (PostgreSQL storage), two Celery
step workers with homes of their own, two replicas of each pipeline's prediction service, and
haproxy in front of the replicas (health-checked) and of the webserver (basic auth). It returns
once everything answers. Secrets come only from the environment or secret files (``SECRETS``):
none is written to a file, the Procfile or a log; ``up`` refuses to start without them, and
each program is started with only those it uses (``NEEDED_SECRETS``).

``down`` stops honcho (which stops its processes) and then every process that still carries
the profile's mark in its environment, so nothing it started is left running.
"""

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ml_assets.home import HOME_ENV_VAR, PROJECT_ROOT, ml_assets_home
from ml_assets.instance import POSTGRES_ENV_VAR, instance_yaml
from resources.balancer import BALANCER_SOCKET_ENV_VAR, Balancer
from resources.prediction_services import replicas_env_var, serving_replicas
from serving.settings import TOKEN_ENV_VAR, url_env_var

PROFILE_FILE = PROJECT_ROOT / "deploy" / "production.env"
"""The platform environment every runner of the profile shares (compose reads it too)."""
HAPROXY_SHARED = PROJECT_ROOT / "deploy" / "haproxy.cfg"
MARK_ENV_VAR = "ML_ASSETS_PROD_ID"
"""Set in every process of one ``prod up``: how ``down`` finds each of them."""
ARTIFACTS_ENV_VAR = "ML_ASSETS_MLFLOW_ARTIFACTS_URL"
UI_PASSWORD_HASH = "DAGSTER_UI_PASSWORD_HASH"  # noqa: S105 (the variable's name, not a secret)

SECRETS = {
    UI_PASSWORD_HASH: "the crypt(3) hash of the Dagster UI's basic-auth password of user "
    "admin (`openssl passwd -6`)",
    TOKEN_ENV_VAR: "the bearer token of the prediction services' admin calls",
    "AWS_ACCESS_KEY_ID": "the S3 access key",
    "AWS_SECRET_ACCESS_KEY": "the S3 secret key",
}
"""Each is read from the variable or from the file ``<variable>_FILE`` names."""

S3_KEYS = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"})
NEEDED_SECRETS = {
    "haproxy": frozenset({UI_PASSWORD_HASH}),
    "s3": frozenset(),
    "mlflow": S3_KEYS,
    "webserver": S3_KEYS,
    "daemon": S3_KEYS | {TOKEN_ENV_VAR},  # its sensors and the runs it launches call the services
    "worker": S3_KEYS | {TOKEN_ENV_VAR},
    "serving": S3_KEYS | {TOKEN_ENV_VAR},
}
"""The secrets each kind of process is given: none sees a secret it does not use."""

LOCAL = {
    "ML_ASSETS_UI_PORT": "3000",
    "ML_ASSETS_WEBSERVER_PORT": "3001",
    "ML_ASSETS_MLFLOW_PORT": "5000",
    "ML_ASSETS_S3_PORT": "9000",
    "ML_ASSETS_POSTGRES_SERVER": "postgresql+psycopg2://postgres@127.0.0.1:5432",
    "ML_ASSETS_DATABASE_PREFIX": "ml_assets",
}
"""This machine's settings, each overridable by the variable of its name."""
WORKERS = 2
REPLICAS = 2
RESTART_AFTER_S = 3
"""Workers and replicas that exit are started again after these seconds (honcho would stop the
whole profile when one of its processes ends)."""


class Refused(RuntimeError):
    """The profile cannot start as configured; the message says what to do."""


def _setting(name: str) -> str:
    return os.environ.get(name) or LOCAL[name]


def folder() -> Path:
    """Where ``up`` writes what the profile's processes read: ``$ML_ASSETS_HOME/prod``."""
    return ml_assets_home() / "prod"


def secrets() -> dict[str, str]:
    """Every secret of ``SECRETS``; raises ``Refused`` naming all that are missing."""
    found, missing = {}, []
    for name, meaning in SECRETS.items():
        secret_file = os.environ.get(f"{name}_FILE")
        value = os.environ.get(name) or (
            Path(secret_file).read_text().strip() if secret_file else ""
        )
        if value:
            found[name] = value
        else:
            missing.append(f"  {name} (or {name}_FILE): {meaning}")
    if missing:
        raise Refused("the production profile needs these secrets:\n" + "\n".join(missing))
    return found


@dataclass(frozen=True)
class Service:
    """A pipeline's service: its public (load-balanced) URL and its replicas."""

    name: str
    url: str
    replicas: list[str]


def services() -> list[Service]:
    """Each pipeline's service: on ``$ML_ASSETS_<NAME>_SERVING_URL`` (default: its declared
    port), with the replicas of ``$ML_ASSETS_<NAME>_SERVING_REPLICAS`` (default: the declared
    port + 100 and + 200)."""
    from ml_assets import pipelines
    from serving.settings import serving_url

    found = []
    for name in pipelines.names():
        port = pipelines.declaration(name).serving.port
        defaults = [f"http://127.0.0.1:{port + 100 * (i + 1)}" for i in range(REPLICAS)]
        found.append(Service(name, serving_url(name, port), serving_replicas(name) or defaults))
    return found


def _port(url: str) -> int:
    return int(urlsplit(url).port or 80)


def databases() -> dict[str, str]:
    """The URL of each of the profile's databases (dagster, mlflow, optuna)."""
    server, prefix = _setting("ML_ASSETS_POSTGRES_SERVER"), _setting("ML_ASSETS_DATABASE_PREFIX")
    if urlsplit(server).password:
        raise Refused(
            "ML_ASSETS_POSTGRES_SERVER holds a password: it would show in process lists; put "
            "it in PGPASSWORD or a PGPASSFILE instead"
        )
    return {
        kind: f"{server.rstrip('/')}/{prefix}_{kind}" for kind in ("dagster", "mlflow", "optuna")
    }


def create_databases(urls: dict[str, str]) -> None:
    """Create each database that does not exist yet."""
    import sqlalchemy

    server = urlsplit(next(iter(urls.values())))._replace(path="/postgres").geturl()
    admin = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            for url in urls.values():
                name = urlsplit(url).path.lstrip("/")
                exists = connection.execute(
                    sqlalchemy.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                    {"name": name},
                ).first()
                if not exists:
                    connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    except sqlalchemy.exc.OperationalError as error:
        raise Refused(f"PostgreSQL at {server} does not answer: {error.orig}") from error
    finally:
        admin.dispose()


def create_tables(env: dict[str, str]) -> None:
    """Create the tables of the Dagster instance and of Optuna's storage once, before their
    processes start: several processes creating them at once stamp the schema version twice,
    and Dagster then refuses the database ("more than one head")."""
    from unittest import mock

    import dagster as dg
    import optuna

    with mock.patch.dict(os.environ, {POSTGRES_ENV_VAR: env[POSTGRES_ENV_VAR]}):
        dg.DagsterInstance.from_config(env["DAGSTER_HOME"]).dispose()
    optuna.storages.RDBStorage(env["ML_ASSETS_OPTUNA_STORAGE"]).remove_session()


def profile_environment(mark: str) -> dict[str, str]:
    """The environment (no secret in it) that every process of the profile gets."""
    from honcho.environ import parse

    shared = parse(PROFILE_FILE.read_text())
    env = {name: os.environ.get(name) or value for name, value in shared.items()}
    urls = databases()
    prod = folder()
    env.update({
        MARK_ENV_VAR: mark,
        HOME_ENV_VAR: str(ml_assets_home()),
        "DAGSTER_HOME": str(prod / "dagster"),
        POSTGRES_ENV_VAR: urls["dagster"],
        "ML_ASSETS_OPTUNA_STORAGE": urls["optuna"],
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_setting('ML_ASSETS_MLFLOW_PORT')}",
        "AWS_ENDPOINT_URL": os.environ.get("AWS_ENDPOINT_URL")
        or f"http://127.0.0.1:{_setting('ML_ASSETS_S3_PORT')}",
        BALANCER_SOCKET_ENV_VAR: str(prod / "haproxy.sock"),
        "ML_ASSETS_UI_BIND": f":{_setting('ML_ASSETS_UI_PORT')}",
        "DAGSTER_WEBSERVER_ADDRESS": f"127.0.0.1:{_setting('ML_ASSETS_WEBSERVER_PORT')}",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    })  # fmt: skip
    for service in services():
        env[url_env_var(service.name)] = service.url
        env[replicas_env_var(service.name)] = ",".join(service.replicas)
    return env


def worker_name(env: dict[str, str], i: int) -> str:
    """The ``i``-th worker's name, unique to this start of the profile: a worker of the same
    name elsewhere on the broker would hold its control queue and answer its pings."""
    return f"prod-{env[MARK_ENV_VAR][:8]}-w{i}"


def _supervised(command: list[str], env: dict[str, str] | None = None) -> str:
    """A Procfile command that starts ``command`` again whenever it exits."""
    prefix = ["env", *(f"{k}={v}" for k, v in (env or {}).items())] if env else []
    return f"while :; do {shlex.join([*prefix, *command])}; sleep {RESTART_AFTER_S}; done"


def procfile(env: dict[str, str], local_s3: bool) -> dict[str, str]:
    """Each process of the profile and its command (no secret in any)."""
    python, bin_dir = sys.executable, Path(sys.executable).parent
    workspace = str(PROJECT_ROOT / "workspace.yaml")
    urls = databases()
    processes: dict[str, str] = {}
    kinds: dict[str, str] = {}  # a process's kind in NEEDED_SECRETS, where not its name
    if local_s3:
        port = _setting("ML_ASSETS_S3_PORT")
        processes["s3"] = shlex.join([python, "-m", "moto.server", "-H", "127.0.0.1", "-p", port])
    processes["mlflow"] = shlex.join([
        python, "-m", "mlflow", "server", "--host", "127.0.0.1",
        "--port", _setting("ML_ASSETS_MLFLOW_PORT"), "--workers", "1",
        "--backend-store-uri", urls["mlflow"],
        "--artifacts-destination", env[ARTIFACTS_ENV_VAR],
    ])  # fmt: skip
    processes["webserver"] = shlex.join([
        str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1",
        "-p", _setting("ML_ASSETS_WEBSERVER_PORT"), "-w", workspace,
    ])  # fmt: skip
    processes["daemon"] = shlex.join([str(bin_dir / "dagster-daemon"), "run", "-w", workspace])
    for i in range(1, WORKERS + 1):
        home = folder() / f"worker-{i}"
        kinds[f"worker_{i}"] = "worker"
        processes[f"worker_{i}"] = _supervised(
            [python, "-m", "ml_assets.cli", "worker", "--name", worker_name(env, i)],
            {HOME_ENV_VAR: str(home), "DAGSTER_HOME": str(home / "dagster")},
        )
    for service in services():
        for i, replica in enumerate(service.replicas, start=1):
            kinds[f"{service.name}_{i}"] = "serving"
            processes[f"{service.name}_{i}"] = _supervised([
                python, "-m", "ml_assets.cli", "serve", service.name,
                "--host", "127.0.0.1", "--port", str(_port(replica)),
            ])  # fmt: skip
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    processes["haproxy"] = shlex.join(
        [haproxy, "-db", "-f", str(HAPROXY_SHARED), "-f", str(folder() / "haproxy.cfg")]
    )
    return {name: _with_only_its_secrets(kinds.get(name, name), c) for name, c in processes.items()}


def _with_only_its_secrets(kind: str, command: str) -> str:
    """``command`` run with the secrets a process of ``kind`` does not need taken out of its
    environment (honcho hands every process the environment it was started with)."""
    unneeded = sorted(set(SECRETS) - NEEDED_SECRETS[kind])
    return f"unset {' '.join(unneeded)}; {command}" if unneeded else command


def haproxy_replicas(socket_path: str) -> str:
    """haproxy's configuration of this machine's replicas, loaded after the shared file."""
    lines = ["global", f"    stats socket {socket_path} mode 600 level admin", ""]
    for service in services():
        lines += [
            f"frontend {service.name}",
            f"    bind :{_port(service.url)}",
            f"    default_backend {service.name}_replicas",
            "",
            f"backend {service.name}_replicas",
            "    option httpchk GET /health",
        ]
        lines += [
            f"    server {service.name}_{i} {urlsplit(url).netloc} check inter 1s fall 2 rise 2"
            for i, url in enumerate(service.replicas, start=1)
        ]
        lines.append("")
    return "\n".join(lines)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _pid_file() -> Path:
    return folder() / "honcho.pid"


def _running_pid() -> int | None:
    """honcho's pid while the profile runs."""
    try:
        pid = int(_pid_file().read_text())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


def up(timeout_s: float, say: Callable[[str], None]) -> None:
    """Start the profile and return once every part answers; raise ``Refused`` (nothing
    started) or ``RuntimeError`` (started but not ready: everything stopped again)."""
    if not (shutil.which("haproxy") or Path("/usr/sbin/haproxy").exists()):
        raise Refused("haproxy is not installed: apt-get install haproxy")
    if _running_pid() is not None:
        raise Refused(f"the profile already runs (honcho pid {_running_pid()}): prod down first")
    secret = secrets()
    local_s3 = not os.environ.get("AWS_ENDPOINT_URL")
    mark = uuid.uuid4().hex
    env = profile_environment(mark)
    began = time.monotonic()
    create_databases(databases())
    prod = folder()
    for home in [prod, *(prod / f"worker-{i}" for i in range(1, WORKERS + 1))]:
        dagster_home = home / "dagster"
        dagster_home.mkdir(parents=True, exist_ok=True)
        (dagster_home / "dagster.yaml").write_text(instance_yaml(dagster_home))
    create_tables(env)
    _write(prod / "profile.env", "".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()))
    _write(prod / "haproxy.cfg", haproxy_replicas(env[BALANCER_SOCKET_ENV_VAR]))
    processes = procfile(env, local_s3)
    _write(prod / "Procfile", "".join(f"{name}: {cmd}\n" for name, cmd in processes.items()))
    with (prod / "honcho.log").open("ab") as log:
        honcho = subprocess.Popen(  # noqa: S603 (our own argv, no shell)
            [sys.executable, "-m", "honcho", "start", "--no-colour", "-f", str(prod / "Procfile"),
             "-e", str(prod / "profile.env"), "-d", str(PROJECT_ROOT)],
            cwd=PROJECT_ROOT, env={**os.environ, **secret, MARK_ENV_VAR: mark},
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    _pid_file().write_text(str(honcho.pid))
    say(
        f"started {len(processes)} processes under honcho (pid {honcho.pid}); log {prod}/honcho.log"
    )
    deadline = time.monotonic() + timeout_s
    waiting: list[str] = []
    while time.monotonic() < deadline:
        if honcho.poll() is not None:
            down(say)
            raise RuntimeError(f"honcho exited with {honcho.returncode}: see {prod}/honcho.log")
        waiting = [name for name, ready in checks({**env, **secret}) if not ready]
        if not waiting:
            say(f"ready in {time.monotonic() - began:.0f} s")
            return
        time.sleep(1)
    down(say)
    raise RuntimeError(
        f"not ready within {timeout_s:.0f} s: {', '.join(waiting)}; see {prod}/honcho.log"
    )


def _bucket_ready(env: dict[str, str]) -> bool:
    """Whether S3 answers with the profile's bucket in it (created when missing)."""
    import boto3
    import botocore.exceptions

    bucket = urlsplit(env[ARTIFACTS_ENV_VAR]).netloc
    client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
    )
    try:
        try:
            client.head_bucket(Bucket=bucket)
        except botocore.exceptions.ClientError:
            client.create_bucket(Bucket=bucket)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
        return False
    return True


def checks(env: dict[str, str]) -> Iterator[tuple[str, bool]]:
    """Each part of the profile (``env``: its environment, with the S3 keys) and whether it
    answers now."""
    import httpx

    from ml_assets import pipelines

    def answers(url: str, status: int = 200) -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == status
        except httpx.TransportError:
            return False

    webserver = f"http://{env['DAGSTER_WEBSERVER_ADDRESS']}"
    yield "s3", _bucket_ready(env)
    yield "mlflow", answers(f"{env['MLFLOW_TRACKING_URI']}/health")
    yield "webserver (code location loaded)", _code_loaded(webserver)
    yield "daemon", _daemon_healthy(webserver)
    yield "workers", _workers_answer(env)
    try:
        servers = Balancer(env[BALANCER_SOCKET_ENV_VAR]).servers()
    except OSError:
        servers = []
    states = {s["svname"]: s["status"] for s in servers}
    yield (
        "haproxy (UI behind basic auth)",
        answers(f"http://127.0.0.1{env['ML_ASSETS_UI_BIND']}/", 401),
    )
    for name in pipelines.names():
        for i in range(1, len(env[replicas_env_var(name)].split(",")) + 1):
            yield f"{name}_{i} (UP in haproxy)", states.get(f"{name}_{i}") == "UP"


def status(say: Callable[[str], None]) -> bool:
    """Print whether the profile runs and each part answers; True when all do."""
    from honcho.environ import parse

    env_file = folder() / "profile.env"
    honcho = _running_pid()
    if honcho is None or not env_file.exists():
        say("the production profile does not run on this home")
        return False
    say(f"honcho pid {honcho}; log {folder()}/honcho.log")
    ready = True
    for name, answers in checks({**os.environ, **parse(env_file.read_text())}):
        say(f"  {'ok  ' if answers else 'DOWN'} {name}")
        ready = ready and answers
    return ready


def _graphql(webserver: str, query: str) -> dict | None:
    """The webserver's answer to ``query``; None when it does not answer."""
    import httpx

    try:
        return httpx.post(f"{webserver}/graphql", json={"query": query}, timeout=5).json()["data"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def _code_loaded(webserver: str) -> bool:
    """Whether the webserver loaded every code location without an error."""
    query = """{ workspaceOrError { ... on Workspace { locationEntries {
        loadStatus locationOrLoadError { __typename } } } } }"""
    entries = ((_graphql(webserver, query) or {}).get("workspaceOrError") or {}).get(
        "locationEntries"
    )
    return bool(entries) and all(
        e["loadStatus"] == "LOADED"
        and (e["locationOrLoadError"] or {}).get("__typename") == "RepositoryLocation"
        for e in entries
    )


def _daemon_healthy(webserver: str) -> bool:
    """Whether the webserver's instance (PostgreSQL) has heard from every required daemon."""
    query = "{ instance { daemonHealth { allDaemonStatuses { required healthy } } } }"
    answer = _graphql(webserver, query)
    if not answer:
        return False
    statuses = answer["instance"]["daemonHealth"]["allDaemonStatuses"]
    return all(s["healthy"] for s in statuses if s["required"])


def _workers_answer(env: dict[str, str]) -> bool:
    """Whether both Celery workers answer a ping on the broker."""
    from celery import Celery

    from ml_assets.executor import broker_url

    app = Celery(broker=broker_url())
    try:
        replies = app.control.ping(timeout=1.0)
    except OSError:
        return False
    finally:
        app.close()
    names = {name.split("@")[0] for reply in replies for name in reply}
    return {worker_name(env, i) for i in range(1, WORKERS + 1)} <= names


def marked_processes(mark: str) -> list[int]:
    """The pids of every process whose environment carries the profile's ``mark``."""
    needle = f"{MARK_ENV_VAR}={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in alive if _alive(pid)]
    return alive


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def down(say: Callable[[str], None]) -> list[int]:
    """Stop the profile: honcho first, then any process still marked as the profile's; the
    pids stopped (raise when one survives SIGKILL)."""
    from honcho.environ import parse

    env_file = folder() / "profile.env"
    if not env_file.exists():
        say("the production profile has not been started on this home")
        return []
    mark = parse(env_file.read_text())[MARK_ENV_VAR]
    started = marked_processes(mark)
    honcho = _running_pid()
    if honcho is not None:
        os.kill(honcho, signal.SIGTERM)
        _wait_gone([honcho], 30)
    left = [pid for pid in marked_processes(mark) if _alive(pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        left = _wait_gone(left, 10)
    _pid_file().unlink(missing_ok=True)
    if left:
        raise RuntimeError(f"processes of the profile survived SIGKILL: {left}")
    say(f"stopped {len(started)} processes of the profile; none is left")
    return started
