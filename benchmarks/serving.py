"""The prediction service vs. ``mlflow models serve``: the same registered model, one row at a time.

Run as ``.venv/bin/python benchmarks/serving.py`` from the project root (``--home DIR`` reuses a
home an earlier run kept with ``--keep``, skipping the build). On a temporary
``$ML_ASSETS_HOME`` it lands 2013-01-01…2013-02-14 with the publisher and materializes, through
Dagster, the reference tables, the data layers and online feature snapshots for that range, then
the model chain (a short Optuna study); the registered version is then aliased ``champion``.
Then, one server after the other, each in its own process with one worker:

- **ours**: ``ml-assets serve`` (FastAPI on uvicorn; ONNX Runtime when the version has a verified
  export, else scikit-learn), ``POST /predict`` with one flight's *raw* fields: the service
  looks the flight up in the latest online snapshot and computes its features itself;
- **MLflow**: ``mlflow models serve -m models:/flights-arrival-delay@champion --env-manager
  local`` (the scikit-learn pipeline as a pyfunc), ``POST /invocations`` with the same flight's
  *precomputed* features (``dataframe_split``), read from ``flight_features``. MLflow does less
  work per request than ours: no validation of raw fields and no feature lookups.

The payloads are about 200 real flights of the last day the online snapshot covers. Every
payload is first sent to both servers: the predictions must agree within 0.01 minutes (ONNX
float32 vs. scikit-learn float64), else the exit code is 1. Then each server gets the same load
from the same lean client (raw sockets, pre-encoded requests, keep-alive): sequential requests
on one connection, then 8 connections at once for a fixed time; latency percentiles and
throughput are printed with the ratios against the targets (ours at most a third of MLflow's
median latency, at least 3 times its throughput at concurrency 8). Missing a target is
reported, not an error. Both servers run without an access log. The client's own CPU use
(share of one core) is printed beside each figure: on two cores, client and server share the
machine.
"""

import argparse
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FIRST, LAST = "2013-01-01", "2013-02-14"
MODEL_NAME = "flights-arrival-delay"
PARITY_TOLERANCE = 0.01
LATENCY_TARGET = 1 / 3
THROUGHPUT_TARGET = 3.0
CLEARED_VARIABLES = (
    "ML_ASSETS_LANDING_URL",
    "ML_ASSETS_WAREHOUSE_URL",
    "ML_ASSETS_ONLINE_STORE_URL",
    "MLFLOW_TRACKING_URI",
    "ML_ASSETS_SERVING_URL",
)
REQUEST_FIELDS = (
    "sched_dep_time", "sched_arr_time", "carrier", "flight", "tailnum", "origin", "dest",
    "distance",
)  # fmt: skip


def _op(name: str) -> str:
    return f"flights__{name}"


TINY = {
    "ops": {
        _op("training_set"): {
            "config": {
                "window_start": "2013-01-08",
                "window_end": LAST,
                "validation_days": 7,
                "test_days": 7,
            }
        },
        _op("hyperparameter_study"): {
            "config": {"n_trials": 4, "workers": 2, "timeout_seconds": 120}
        },
    },
    "loggers": {"console": {"config": {"log_level": "ERROR"}}},
}
"""The model chain's run config: a short study on six weeks (as ``tests/test_models.py``)."""


def environment(home: Path) -> dict[str, str]:
    """This process's environment on ``home``, every store at its default under it."""
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_VARIABLES}
    env.update(
        ML_ASSETS_HOME=str(home),
        PYTHONPATH=str(PROJECT_ROOT),
        # the venv's scripts first: ``mlflow models serve`` runs ``uvicorn`` from the PATH
        PATH=os.pathsep.join((str(BIN), env.get("PATH", os.defpath))),
    )
    env.pop("DAGSTER_HOME", None)
    return env


# --- building the registered model (run in a child process: --prepare HOME) ------------------


def prepare(home: Path) -> None:
    """Land six weeks, materialize data, snapshots and the model chain; crown the challenger."""
    os.environ.update(environment(home))
    for variable in CLEARED_VARIABLES:
        os.environ.pop(variable, None)
    import dagster as dg
    import mlflow

    from ml_assets.home import online_store_url, warehouse_url
    from ml_assets.modeling.assets import MODEL_ASSET_NAMES
    from ml_assets.modeling.tracking import tracking_uri
    from ml_assets.pipelines.flights.assets import data_assets, key
    from ml_assets.pipelines.flights.definitions import defs as flights_defs
    from ml_assets.pipelines.flights.definitions import model_assets
    from ml_assets.pipelines.flights.publish import publish
    from resources.json_io_manager import JsonIOManager
    from resources.landing_zone import default_landing_zone
    from resources.parquet_io_manager import ParquetIOManager
    from resources.table_snapshots import TableSnapshotStore

    publish(default_landing_zone(), date.fromisoformat(FIRST), date.fromisoformat(LAST))
    resources = {
        "io_manager": ParquetIOManager(base_url=warehouse_url()),
        "json_io_manager": JsonIOManager(base_url=warehouse_url()),
        "landing_zone": default_landing_zone(),
        "online_store": TableSnapshotStore(base_url=online_store_url()),
        "mlflow": flights_defs.resources["mlflow"],
    }
    reference = [key("planes"), key("airports"), key("airlines")]
    quiet = {"loggers": TINY["loggers"]}
    with dg.instance_for_test() as instance:
        steps = [
            {"assets": data_assets, "selection": reference, "run_config": quiet},
            {
                "assets": data_assets,
                "selection": dg.AssetSelection.groups("ingest", "clean", "features")
                - dg.AssetSelection.assets(*reference),
                "tags": {
                    "dagster/asset_partition_range_start": FIRST,
                    "dagster/asset_partition_range_end": LAST,
                },
                "run_config": quiet,
            },
            {
                "assets": [*data_assets, *model_assets],
                "selection": [key(n) for n in MODEL_ASSET_NAMES],
                "run_config": TINY,
            },
        ]
        for step in steps:
            began = time.perf_counter()
            result = dg.materialize(resources=resources, instance=instance, **step)
            if not result.success:
                raise RuntimeError(f"materializing {step['selection']} failed")
            print(f"  materialized in {time.perf_counter() - began:.1f} s", flush=True)
    mlflow.set_tracking_uri(tracking_uri())
    client = mlflow.tracking.MlflowClient()
    version = client.get_model_version_by_alias(MODEL_NAME, "challenger").version
    client.set_registered_model_alias(MODEL_NAME, "champion", version)
    print(f"  {MODEL_NAME} v{version} is the champion", flush=True)


def build_home(home: Path) -> None:
    """``prepare`` in a child process, so this (measuring) process stays small and idle."""
    began = time.perf_counter()
    print(f"building the registered model in {home} …", flush=True)
    subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--prepare", str(home)],
        env={**environment(home), "PYTHONWARNINGS": "ignore"},  # Dagster's beta notes
        cwd=PROJECT_ROOT,
        check=True,
    )
    print(f"built in {time.perf_counter() - began:.0f} s", flush=True)


# --- servers -------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    port: int
    log: Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(
    name: str, command: list[str], env: Mapping[str, str], port: int, log: Path
) -> Server:
    with log.open("w") as output:
        process = subprocess.Popen(
            command,
            env=dict(env),
            cwd=PROJECT_ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as one
        )
    return Server(name, process, port, log)


def wait_ready(server: Server, paths: Sequence[str], timeout_s: float = 180.0) -> float:
    """Seconds until one of ``paths`` answers 200; raises if the server dies or times out."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout_s:
        if server.process.poll() is not None:
            tail = server.log.read_text()[-3000:]
            raise RuntimeError(f"{server.name} exited ({server.process.returncode}):\n{tail}")
        for path in paths:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=2):
                    return time.perf_counter() - began
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} not ready after {timeout_s:.0f} s; see {server.log}")


def stop_server(server: Server) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers."""
    if server.process.poll() is not None:
        return
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(server.process.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def get_json(port: int, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return json.loads(response.read())


# --- payloads ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Payloads:
    day: str
    ours: list[bytes]
    """``POST /predict`` bodies: one flight's raw fields each."""
    mlflow: list[bytes]
    """``POST /invocations`` bodies: the same flights' model inputs, in the same order."""
    flight_ids: list[str]


def _plain(value: Any) -> Any:
    """A cell as JSON: numpy scalars as Python values, every kind of missing as null."""
    import pandas as pd

    if value is None or value is pd.NA:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _flight_id(row: Any) -> str:
    """The id ``flight_features`` gives a flight (``date/carrier+number/origin/HHMM``)."""
    return (
        f"{row.year:04d}-{row.month:02d}-{row.day:02d}/{row.carrier}{row.flight}/{row.origin}/"
        f"{row.sched_dep_time:04d}"
    )


def build_payloads(home: Path, day: str, count: int, seed: int = 0) -> Payloads:
    """``count`` flights of ``day`` (seeded sample): raw fields for ours, features for MLflow.

    ``flight_features`` has one row per ``flights_clean`` row, in the same order; the rows are
    paired by position and each pair's flight id must agree.
    """
    import pandas as pd

    from ml_assets.pipelines.flights.model import FLIGHTS_MODEL

    tables = home / "warehouse" / "flights"
    clean = pd.read_parquet(tables / "flights_clean" / f"{day}.parquet")
    features = pd.read_parquet(tables / "flight_features" / f"{day}.parquet")
    if len(clean) != len(features):
        raise RuntimeError(f"{day}: {len(clean)} clean flights but {len(features)} feature rows")
    chosen = clean.sample(n=min(count, len(clean)), random_state=seed).sort_index()
    columns = list(FLIGHTS_MODEL.columns)
    ours, mlflow, ids = [], [], []
    for position, row in zip(chosen.index, chosen.itertuples(index=False), strict=True):
        inputs = features.iloc[position]
        if inputs["flight_id"] != _flight_id(row):
            raise RuntimeError(f"row {position}: {inputs['flight_id']} != {_flight_id(row)}")
        item = {"date": f"{row.year:04d}-{row.month:02d}-{row.day:02d}"}
        item.update({field: _plain(getattr(row, field)) for field in REQUEST_FIELDS})
        ours.append(json.dumps(item).encode())
        body = {
            "dataframe_split": {"columns": columns, "data": [[_plain(inputs[c]) for c in columns]]}
        }
        mlflow.append(json.dumps(body, allow_nan=False).encode())
        ids.append(inputs["flight_id"])
    return Payloads(day, ours, mlflow, ids)


# --- the client ----------------------------------------------------------------------------


class Connection:
    """A minimal keep-alive HTTP/1.1 client on a raw socket: POSTs pre-encoded bodies."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(60.0)  # a hung server fails the benchmark instead of stalling it
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nConnection: keep-alive\r\n"
        ).encode()
        self.buffer = b""

    def request(self, body: bytes) -> tuple[int, bytes]:
        self.sock.sendall(self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._receive()
        header, self.buffer = self.buffer[:end].decode("latin-1"), self.buffer[end + 4 :]
        lines = header.split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        if "content-length" in fields:
            return status, self._exactly(int(fields["content-length"]))
        if fields.get("transfer-encoding", "").lower() == "chunked":
            return status, self._chunked()
        raise RuntimeError(f"response without a length: {header!r}")

    def _receive(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buffer += data

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._receive()
        body, self.buffer = self.buffer[:size], self.buffer[size:]
        return body

    def _chunked(self) -> bytes:
        parts = []
        while True:
            while (end := self.buffer.find(b"\r\n")) < 0:
                self._receive()
            size = int(self.buffer[:end].split(b";")[0], 16)
            self.buffer = self.buffer[end + 2 :]
            parts.append(self._exactly(size + 2)[:size])
            if size == 0:
                return b"".join(parts)

    def close(self) -> None:
        self.sock.close()


@dataclass(frozen=True)
class Load:
    """One load run: per-request latencies (s), wall seconds, client CPU seconds, failures."""

    latencies: list[float]
    wall_s: float
    client_cpu_s: float
    errors: int

    def percentile_ms(self, q: float) -> float:
        import numpy as np

        return 1000 * float(np.percentile(self.latencies, q))

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.wall_s


def _drive(
    connection: Connection,
    bodies: Sequence[bytes],
    start: int,
    keep_going: Callable[[int], bool],
    latencies: list[float],
) -> int:
    """Send ``bodies`` round-robin from ``start`` while ``keep_going(sent)``; returns errors."""
    errors, sent, clock = 0, 0, time.perf_counter
    while keep_going(sent):
        body = bodies[(start + sent) % len(bodies)]
        began = clock()
        status, _ = connection.request(body)
        latencies.append(clock() - began)
        errors += status != 200
        sent += 1
    return errors


def sequential(port: int, path: str, bodies: Sequence[bytes], warm_up: int, count: int) -> Load:
    """``count`` requests one after the other on one connection, after ``warm_up`` of them."""
    connection = Connection(port, path)
    try:
        _drive(connection, bodies, 0, lambda sent: sent < warm_up, [])
        latencies: list[float] = []
        cpu, began = time.process_time(), time.perf_counter()
        errors = _drive(connection, bodies, 0, lambda sent: sent < count, latencies)
        return Load(latencies, time.perf_counter() - began, time.process_time() - cpu, errors)
    finally:
        connection.close()


def concurrent(port: int, path: str, bodies: Sequence[bytes], clients: int, seconds: float) -> Load:
    """``clients`` keep-alive connections, each sending back to back for ``seconds``."""
    connections = [Connection(port, path) for _ in range(clients)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    ready = threading.Barrier(clients + 1)
    deadline = 0.0

    def client(n: int) -> None:
        ready.wait()
        errors[n] = _drive(
            connections[n],
            bodies,
            n * len(bodies) // clients,
            lambda _: time.perf_counter() < deadline,
            latencies[n],
        )

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    cpu, began = time.process_time(), time.perf_counter()
    deadline = began + seconds
    ready.wait()
    for thread in threads:
        thread.join()
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    for connection in connections:
        connection.close()
    return Load([x for lat in latencies for x in lat], wall, cpu, sum(errors))


# --- parity and the measured runs ------------------------------------------------------------


def answers(port: int, path: str, bodies: Sequence[bytes]) -> list[dict[str, Any]]:
    """Each body's decoded answer; raises on any status but 200."""
    connection = Connection(port, path)
    try:
        found = []
        for body in bodies:
            status, answer = connection.request(body)
            if status != 200:
                raise RuntimeError(f"{path} answered {status} to {body[:300]!r}: {answer[:500]!r}")
            found.append(json.loads(answer))
        return found
    finally:
        connection.close()


def _mlflow_prediction(answer: dict[str, Any]) -> float:
    value = answer["predictions"][0]
    return float(next(iter(value.values())) if isinstance(value, dict) else value)


def parity(
    ours: Sequence[dict[str, Any]], theirs: Sequence[dict[str, Any]], flight_ids: Sequence[str]
) -> tuple[float, list[str]]:
    """The largest difference between the two servers' predictions, and what else disagrees."""
    problems, worst = [], 0.0
    for answer, their, flight_id in zip(ours, theirs, flight_ids, strict=True):
        (predicted,) = answer["predictions"]
        if predicted["flight_id"] != flight_id:
            problems.append(f"ours answered for {predicted['flight_id']}, asked {flight_id}")
        difference = abs(float(predicted["arr_delay"]) - _mlflow_prediction(their))
        worst = max(worst, difference if math.isfinite(difference) else math.inf)
    if worst > PARITY_TOLERANCE:
        problems.append(f"predictions differ by up to {worst:.4g} minutes")
    return worst, problems


@dataclass
class Measured:
    name: str
    sequential: Load
    concurrent: Load


def serve(
    name: str,
    command: list[str],
    env: Mapping[str, str],
    log: Path,
    ready_paths: Sequence[str],
    servers: list[Server],
) -> tuple[Server, float]:
    """Start a server on a free port (appended to ``servers``); returns it and its start-up s."""
    port = free_port()
    server = start_server(name, [a.replace("{port}", str(port)) for a in command], env, port, log)
    servers.append(server)
    return server, wait_ready(server, ready_paths)


def exercise(
    name: str, server: Server, path: str, bodies: Sequence[bytes], args: argparse.Namespace
) -> tuple[list[dict[str, Any]], Measured]:
    """Every payload once (for parity), then the sequential and the concurrent load; stops it."""
    try:
        answered = answers(server.port, path, bodies)
        print(f"  {name}: {args.requests} sequential requests …", flush=True)
        alone = sequential(server.port, path, bodies, args.warm_up, args.requests)
        print(f"  {name}: {args.clients} connections for {args.seconds:g} s …", flush=True)
        together = concurrent(server.port, path, bodies, args.clients, args.seconds)
        return answered, Measured(name, alone, together)
    finally:
        stop_server(server)


def report(ours: Measured, theirs: Measured, clients: int) -> tuple[str, list[str]]:
    from tabulate import tabulate

    rows = []
    for m in (ours, theirs):
        for mode, load in (("sequential, 1 connection", m.sequential),
                           (f"{clients} connections", m.concurrent)):  # fmt: skip
            rows.append(
                (
                    m.name,
                    mode,
                    len(load.latencies),
                    load.errors,
                    load.percentile_ms(50),
                    load.percentile_ms(99),
                    load.throughput,
                    load.client_cpu_s / load.wall_s,
                )
            )
    table = tabulate(
        rows,
        headers=("server", "load", "requests", "errors", "p50 ms", "p99 ms", "req/s", "client CPU"),
        floatfmt=(None, None, None, None, ".3f", ".3f", ".0f", ".0%"),
    )
    latency = ours.sequential.percentile_ms(50) / theirs.sequential.percentile_ms(50)
    throughput = ours.concurrent.throughput / theirs.concurrent.throughput
    lines = [
        f"p50 latency, ours / MLflow (sequential): {latency:.3f} "
        f"(target ≤ 1/3: {'met' if latency <= LATENCY_TARGET else 'NOT met'})",
        f"throughput at {clients} connections, ours / MLflow: "
        f"{throughput:.2f} (target ≥ {THROUGHPUT_TARGET:g}: "
        f"{'met' if throughput >= THROUGHPUT_TARGET else 'NOT met'})",
    ]
    return table, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, help="reuse this prepared $ML_ASSETS_HOME")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    parser.add_argument("--flights", type=int, default=200, help="distinct payloads")
    parser.add_argument("--warm-up", type=int, default=200, help="requests before measuring")
    parser.add_argument("--requests", type=int, default=2000, help="sequential requests")
    parser.add_argument("--clients", type=int, default=8, help="concurrent connections")
    parser.add_argument("--seconds", type=float, default=10.0, help="concurrent load duration")
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        sys.path.insert(0, str(PROJECT_ROOT))
        prepare(args.prepare)
        return 0
    return benchmark(args)


def _champion_version(uri: str) -> str:
    from mlflow.tracking import MlflowClient

    return str(MlflowClient(uri).get_model_version_by_alias(MODEL_NAME, "champion").version)


def benchmark(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    home = args.home.resolve() if args.home else Path(tempfile.mkdtemp(prefix="ml_assets_serving_"))
    os.environ.update(environment(home))
    for variable in CLEARED_VARIABLES:
        os.environ.pop(variable, None)
    sys.path.insert(0, str(PROJECT_ROOT))
    warnings.simplefilter("ignore")  # Dagster's beta/preview notes on importing the pipeline
    env = environment(home)
    servers: list[Server] = []
    try:
        if not args.home:
            build_home(home)
        from ml_assets.modeling.tracking import tracking_uri

        uri = tracking_uri()
        print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}", flush=True)
        ours, ours_ready = serve(
            "ml-assets serve",
            [str(BIN / "ml-assets"), "serve", "--port", "{port}", "--log-level", "warning"],
            env,
            home / "serve_ours.log",
            ["/ready"],
            servers,
        )
        described = get_json(ours.port, "/model")
        payloads = build_payloads(home, described["snapshot"], args.flights)
        print(
            f"ours: ready in {ours_ready:.1f} s; {described['name']} v{described['version']} on "
            f"{described['predictor']}, snapshot {described['snapshot']}; "
            f"{len(payloads.ours)} flights of {payloads.day} as payloads",
            flush=True,
        )
        ours_answers, ours_measured = exercise("ours", ours, "/predict", payloads.ours, args)

        theirs, theirs_ready = serve(
            "mlflow models serve",
            [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL_NAME}@champion",
             "--env-manager", "local", "-p", "{port}", "-h", "127.0.0.1", "--workers", "1"],
            # no access log, as ours (uvicorn reads UVICORN_* options from the environment)
            {**env, "MLFLOW_TRACKING_URI": uri, "UVICORN_ACCESS_LOG": "false"},
            home / "serve_mlflow.log",
            ["/ping", "/health"],
            servers,
        )  # fmt: skip
        theirs_version = _champion_version(uri)
        print(f"MLflow: ready in {theirs_ready:.1f} s; champion v{theirs_version}", flush=True)
        theirs_answers, theirs_measured = exercise(
            "MLflow", theirs, "/invocations", payloads.mlflow, args
        )

        worst, problems = parity(ours_answers, theirs_answers, payloads.flight_ids)
        if theirs_version != described["version"]:
            problems.append(f"ours served v{described['version']}, MLflow v{theirs_version}")
        table, ratios = report(ours_measured, theirs_measured, args.clients)
        print(
            f"\nmodel: {MODEL_NAME} v{described['version']}; ours on {described['predictor']}, "
            "MLflow on the scikit-learn pipeline (pyfunc)\n"
            "payloads: ours gets raw flight fields (validated, looked up in the online snapshot, "
            "features computed per request);\n          MLflow gets the precomputed model "
            "inputs, so it does less work per request\n"
            f"parity on {len(ours_answers)} flights: max |ours - MLflow| = {worst:.2e} min "
            f"(tolerance {PARITY_TOLERANCE}): {'ok' if not problems else 'FAILED'}"
        )
        for problem in problems:
            print(f"  {problem}")
        for m in (ours_measured, theirs_measured):
            failed = m.sequential.errors + m.concurrent.errors
            if failed:
                print(f"  note: {m.name} answered {failed} measured requests with an error")
        print(f"\n{table}\n")
        print("\n".join(ratios))
        print(f"\nwall time {time.perf_counter() - began:.0f} s")
        return 1 if problems else 0
    finally:
        for server in servers:
            stop_server(server)
        if args.keep or args.home:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
