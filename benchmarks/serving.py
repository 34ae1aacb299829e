"""The prediction service vs. ``mlflow models serve``: the same registered model, one row at a time.

Run as ``.venv/bin/python benchmarks/serving.py [--pipeline flights|taxi] [--quick]`` from the
project root (``--home DIR`` reuses a home an earlier run kept with ``--keep``, skipping the
build). On a temporary ``$ML_ASSETS_HOME`` a child process lands the pipeline's data with its
publisher and materializes it through the code location's jobs (``<prefix>_reference_tables``,
``<prefix>_data`` over the range as one run, online snapshots included when the pipeline
declares one, then ``<prefix>_model`` with a short Optuna study); the registered version is
then aliased ``champion``. The acceptance bar is relaxed for this run (a model up to 100% worse
than the baseline is registered): the benchmark measures serving, not the model. Then, one
server after the other, each in its own process with one worker:

- **ours**: ``ml-assets serve PIPELINE`` (FastAPI on uvicorn; ONNX Runtime when the version has
  a verified export, else scikit-learn), ``POST /predict`` with one row's *request* fields
  (the pipeline's ``request_items`` of its ``requests_asset``): the service validates them,
  looks them up in the latest online snapshot if the pipeline has one, and computes the
  features itself;
- **MLflow**: ``mlflow models serve --env-manager local`` on the same version (the scikit-learn
  pipeline as a pyfunc), ``POST /invocations`` with the same row's *precomputed* features
  (``dataframe_split``) from the features asset. MLflow does less work per request than ours.

A classifier's pyfunc returns labels (``predict``) by default. For a binary classifier the
benchmark therefore logs a copy of the registered version: the same fitted pipeline, loaded
from its skops file with the reviewed types only, logged with
``mlflow.sklearn.log_model(..., pyfunc_predict_fn="predict_proba")`` (same input signature,
same skops trusted types) and registered as ``<model>-predict-proba``; MLflow serves that copy
and answers ``[p(0), p(1)]``; ours answers ``<prediction>_probability``.

The payloads are real rows of the partition the service serves (its snapshot's, or the last
one built). Every payload is first sent to both servers: their predictions (probabilities of
the positive class) must agree within the pipeline's declared ``deploy.tolerance`` (0.01 min
for flights, 1e-4 for taxi), each answer must name the row asked for and the version built,
and no measured request may fail; otherwise the exit code is 1. Then each server gets the same
load from the same lean client (raw sockets, pre-encoded requests, keep-alive): sequential
requests on one connection, then 8 connections at once for a fixed time; latency percentiles
and throughput are printed with the ratios against the targets (ours at most a third of
MLflow's median latency, at least 3 times its throughput at 8 connections). Missing a target is
reported, not an error. Both servers run without an access log. The client's own CPU use
(share of one core) is printed beside each figure: on two cores, client and server share the
machine. ``--quick`` builds less data, runs a 2-trial study and a short load: the same code,
for the test suite.
"""

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _common import (
    BIN,
    DEFAULT_PIPELINE,
    PROJECT_ROOT,
    Checks,
    Window,
    benchmark_home,
    build_data,
    bytecode_note,
    declaration,
    enter_home,
    load_average,
    op,
    pipeline_names,
    run_job,
    table,
    target,
    window,
)

if TYPE_CHECKING:
    from resources.mlflow_tracking import MlflowTracking

LATENCY_TARGET = 1 / 3
THROUGHPUT_TARGET = 3.0
PREPARED_FILE = "serving_benchmark.json"
PROBA_SUFFIX = "-predict-proba"
WINDOWS = {
    "flights": {
        False: Window("2013-01-01", "2013-02-14", "2013-01-08", 7, 7),
        True: Window("2013-01-01", "2013-01-10", "2013-01-01", 2, 2, min_train_partitions=6),
    }
}
"""Per pipeline, full and quick; a pipeline not listed builds its declared training window."""
STUDY = {False: {"n_trials": 4, "workers": 2}, True: {"n_trials": 2, "workers": 1}}
"""The short study of the model job, full and quick."""


@dataclass(frozen=True)
class Prepared:
    """What the build left for the measuring process (``serving_benchmark.json``)."""

    pipeline: str
    version: str
    """The registered version aliased champion: the one both servers must serve."""
    partition: str
    """The last partition built: the payloads' when the service has no snapshot."""
    mlflow_model: str
    """The model URI ``mlflow models serve`` serves."""
    positive_column: int | None
    """Column of the positive class in MLflow's ``predict_proba`` answers (classifiers)."""
    family: str
    test_metric: str

    def save(self, home: Path) -> None:
        (home / PREPARED_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, home: Path) -> "Prepared":
        return cls(**json.loads((home / PREPARED_FILE).read_text()))


# --- building the registered model (run in a child process: --prepare HOME) ------------------


def model_run_config(pipeline: str, quick: bool) -> dict[str, Any]:
    """The ``<prefix>_model`` job's run config: a short study on the benchmark's window, and a
    bar any model clears (up to 100% worse than the baseline), so a version is registered."""
    declared = declaration(pipeline)
    return {
        "ops": {
            op(declared, "training_set"): {
                "config": window(pipeline, quick, WINDOWS).training_config()
            },
            op(declared, "hyperparameter_study"): {
                "config": {**STUDY[quick], "timeout_seconds": 300}
            },
            op(declared, "model_evaluation"): {"config": {"min_improvement_over_baseline": -1.0}},
        }
    }


def register_predict_proba_copy(
    pipeline: str, version: str, tracking: "MlflowTracking"
) -> tuple[str, int]:
    """Log version ``version`` of the pipeline's binary classifier again with its pyfunc
    answering ``predict_proba``, register it as ``<model>-predict-proba``; its URI and the
    positive class's column."""
    import mlflow
    from mlflow.models import Model, ModelSignature, infer_signature

    from ml_assets.modeling.estimators import Features
    from serving.predictors import load_version

    model = declaration(pipeline).model
    name = model.registered_model_name
    source = f"models:/{name}/{version}"
    loaded = load_version(
        name, version, Features(model.categorical, model.numeric), model.task, prefer_onnx=False
    )
    fitted = loaded.predictor.pipeline  # from the skops file, only the reviewed types trusted
    local = mlflow.artifacts.download_artifacts(source)
    logged_model = Model.load(local)
    example = logged_model.load_input_example(local)
    signature = ModelSignature(
        inputs=logged_model.signature.inputs,
        outputs=infer_signature(example, fitted.predict_proba(example)).outputs,
    )
    experiment = tracking.experiment_id(f"{model.experiment}-serving-benchmark")
    with mlflow.start_run(experiment_id=experiment, run_name=f"{name} v{version} predict_proba"):
        logged = mlflow.sklearn.log_model(
            fitted,
            name="model",
            signature=signature,
            input_example=example,
            serialization_format="skops",
            skops_trusted_types=logged_model.flavors["sklearn"]["skops_trusted_types"],
            pyfunc_predict_fn="predict_proba",
            # the original's pinned requirements, rather than inferring them again (~10 s)
            pip_requirements=str(Path(local) / "requirements.txt"),
        )
    copy = mlflow.register_model(logged.model_uri, f"{name}{PROBA_SUFFIX}", tags={"source": source})
    return f"models:/{copy.name}/{copy.version}", list(fitted.classes_).index(1)


def prepare(home: Path, pipeline: str, quick: bool) -> None:
    """Land and materialize the data, run the model job, crown the challenger; for a
    classifier, register the ``predict_proba`` copy MLflow serves."""
    enter_home(home)
    import dagster as dg
    from mlflow.tracking import MlflowClient

    from resources.platform import platform_resources

    declared = declaration(pipeline)
    keys = window(pipeline, quick, WINDOWS).keys(pipeline)
    with dg.DagsterInstance.ephemeral() as instance:
        build_data(pipeline, keys, instance)
        run_job(f"{declared.prefix}_model", instance, model_run_config(pipeline, quick))
    tracking = platform_resources([declared])["mlflow"]
    tracking.use()
    client = MlflowClient()
    name = declared.model.registered_model_name
    registered = client.get_model_version_by_alias(name, "challenger")
    client.set_registered_model_alias(name, "champion", registered.version)
    if declared.model.task == "binary_classification":
        mlflow_model, column = register_predict_proba_copy(pipeline, registered.version, tracking)
    else:
        mlflow_model, column = f"models:/{name}/{registered.version}", None
    metric = declared.model.gate_metric
    Prepared(
        pipeline=pipeline,
        version=str(registered.version),
        partition=keys[-1],
        mlflow_model=mlflow_model,
        positive_column=column,
        family=registered.tags.get("model_family", "?"),
        test_metric=f"{metric} {registered.tags.get(f'test_{metric}', '?')}",
    ).save(home)
    print(f"  {name} v{registered.version} is the champion; MLflow serves {mlflow_model}")


def build_home(home: Path, env: Mapping[str, str], pipeline: str, quick: bool) -> None:
    """``prepare`` in a child process, so this (measuring) process stays small and idle."""
    began = time.perf_counter()
    print(f"building the registered {pipeline} model in {home} …", flush=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--prepare", str(home)]
    subprocess.run(
        [*command, "--pipeline", pipeline, *(["--quick"] if quick else [])],
        # one thread per fit: on a busy machine OpenMP's spinning threads make a lone study
        # worker's HistGradientBoosting fits several times slower (the build is not measured)
        env={**env, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"},
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
    partition: str
    ours: list[bytes]
    """``POST /predict`` bodies: one row's request fields each."""
    mlflow: list[bytes]
    """``POST /invocations`` bodies: the same rows' model inputs, in the same order."""
    ids: list[str]
    """The rows' ids (the model's ``id_column``), in the same order."""


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


def build_payloads(pipeline: str, partition: str, count: int, seed: int = 0) -> Payloads:
    """``count`` rows of ``partition`` (seeded sample): request fields for ours, the features
    for MLflow.

    The features asset has one row per row of the requests asset, in the same order (the
    deploy smoke test pairs them the same way); ours names the row it answers for, and that
    id must be the feature row's.
    """
    from ml_assets import pipelines
    from ml_assets.home import warehouse_url
    from resources.parquet_io_manager import read_partition

    declared = declaration(pipeline)
    model = declared.model
    requests = read_partition(
        warehouse_url(), declared.key(declared.serving.requests_asset), partition
    )
    features = read_partition(
        warehouse_url(), declared.key(model.features_asset), partition
    ).reset_index(drop=True)
    items = pipelines.serving_hooks(pipeline).request_items(requests)
    if len(items) != len(features):
        raise RuntimeError(f"{partition}: {len(items)} requests but {len(features)} feature rows")
    chosen = features.sample(n=min(count, len(features)), random_state=seed).sort_index()
    columns = model.features
    ours, mlflow, ids = [], [], []
    for position in chosen.index:
        row = features.loc[position]
        ours.append(json.dumps(items[position], default=_plain).encode())
        body = {
            "dataframe_split": {"columns": columns, "data": [[_plain(row[c]) for c in columns]]}
        }
        mlflow.append(json.dumps(body, allow_nan=False).encode())
        ids.append(str(row[model.id_column]))
    return Payloads(partition, ours, mlflow, ids)


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


def mlflow_score(answer: dict[str, Any], positive_column: int | None) -> float:
    """MLflow's number for one row: the prediction, or the positive class's probability."""
    value = answer["predictions"][0]
    if isinstance(value, dict):  # a named output column
        value = next(iter(value.values()))
    if positive_column is not None:
        value = value[positive_column]
    return float(value)


def parity(
    pipeline: str,
    prepared: Prepared,
    ours: Sequence[dict[str, Any]],
    theirs: Sequence[dict[str, Any]],
    ids: Sequence[str],
    checks: Checks,
) -> float:
    """The largest difference between the two servers' scores; what disagrees is a failure."""
    from serving.spec import score_field

    declared = declaration(pipeline)
    model = declared.model
    field = score_field(model.task, declared.serving.prediction)
    worst, wrong_rows, versions = 0.0, [], set()
    for answer, their, expected in zip(ours, theirs, ids, strict=True):
        (predicted,) = answer["predictions"]
        versions.add(answer["model_version"])
        if str(predicted[model.id_column]) != expected:
            wrong_rows.append(f"{predicted[model.id_column]} for {expected}")
        difference = abs(float(predicted[field]) - mlflow_score(their, prepared.positive_column))
        worst = max(worst, difference if math.isfinite(difference) else math.inf)
    checks.require(not wrong_rows, f"ours answered for other rows: {wrong_rows[:5]}")
    checks.require(
        versions == {prepared.version}, f"ours answered from {versions}, not v{prepared.version}"
    )
    checks.require(
        worst <= declared.deploy.tolerance,
        f"{field} differs by up to {worst:.4g} (tolerance {declared.deploy.tolerance:g})",
    )
    return worst


@dataclass
class Measured:
    name: str
    sequential: Load
    concurrent: Load


@dataclass(frozen=True)
class LoadSettings:
    payloads: int
    warm_up: int
    requests: int
    clients: int
    seconds: float


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
    name: str, server: Server, path: str, bodies: Sequence[bytes], load: LoadSettings
) -> tuple[list[dict[str, Any]], Measured]:
    """Every payload once (for parity), then the sequential and the concurrent load; stops it."""
    try:
        answered = answers(server.port, path, bodies)
        print(f"  {name}: {load.requests} sequential requests …", flush=True)
        alone = sequential(server.port, path, bodies, load.warm_up, load.requests)
        print(f"  {name}: {load.clients} connections for {load.seconds:g} s …", flush=True)
        together = concurrent(server.port, path, bodies, load.clients, load.seconds)
        return answered, Measured(name, alone, together)
    finally:
        stop_server(server)


def report(ours: Measured, theirs: Measured, clients: int) -> tuple[str, list[str]]:
    rows = [
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
        for m in (ours, theirs)
        for mode, load in (
            ("sequential, 1 connection", m.sequential),
            (f"{clients} connections", m.concurrent),
        )
    ]
    rendered = table(
        ("server", "load", "requests", "errors", "p50 ms", "p99 ms", "req/s", "client CPU"),
        rows,
        floatfmt=(None, None, None, None, ".3f", ".3f", ".0f", ".0%"),
    )
    latency = ours.sequential.percentile_ms(50) / theirs.sequential.percentile_ms(50)
    throughput = ours.concurrent.throughput / theirs.concurrent.throughput
    lines = [
        target("p50 latency, ours / MLflow (sequential)", latency, LATENCY_TARGET, True, "1/3"),
        target(
            f"throughput at {clients} connections, ours / MLflow",
            throughput,
            THROUGHPUT_TARGET,
            False,
            f"{THROUGHPUT_TARGET:g}",
        ),
    ]
    return rendered, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", choices=pipeline_names(), default=DEFAULT_PIPELINE)
    parser.add_argument("--quick", action="store_true", help="small data, short load (tests)")
    parser.add_argument("--home", type=Path, help="reuse this prepared $ML_ASSETS_HOME")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    parser.add_argument("--payloads", type=int, help="distinct rows (default 200; quick 50)")
    parser.add_argument("--warm-up", type=int, help="requests before measuring (200; 20)")
    parser.add_argument("--requests", type=int, help="sequential requests (2000; 200)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent connections")
    parser.add_argument("--seconds", type=float, help="concurrent load duration (10; 2)")
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        prepare(args.prepare, args.pipeline, args.quick)
        return 0
    defaults = (50, 20, 200, 2.0) if args.quick else (200, 200, 2000, 10.0)
    given = (args.payloads, args.warm_up, args.requests, args.seconds)
    payloads, warm_up, requests, seconds = (
        default if value is None else value for value, default in zip(given, defaults, strict=True)
    )
    load = LoadSettings(payloads, warm_up, requests, args.clients, seconds)
    with benchmark_home("ml_assets_serving_", args.keep, args.home) as home:
        return benchmark(home, args.pipeline, args.quick, load, reuse=args.home is not None)


def benchmark(home: Path, pipeline: str, quick: bool, load: LoadSettings, reuse: bool) -> int:
    began = time.perf_counter()
    env = enter_home(home)
    warnings.simplefilter("ignore")  # Dagster's beta/preview notes on importing the platform
    servers: list[Server] = []
    checks = Checks()
    try:
        if not reuse:
            build_home(home, env, pipeline, quick)
        from resources.mlflow_tracking import tracking_uri

        prepared = Prepared.load(home)
        print(f"{os.cpu_count()} CPUs; load average {load_average()}", flush=True)
        if note := bytecode_note():
            print(note)
        ours, ours_ready = serve(
            "ml-assets serve",
            [str(BIN / "ml-assets"), "serve", pipeline, "--port", "{port}",
             "--log-level", "warning"],
            env,
            home / "serve_ours.log",
            ["/ready"],
            servers,
        )  # fmt: skip
        described = get_json(ours.port, "/model")
        payloads = build_payloads(
            pipeline, described.get("snapshot") or prepared.partition, load.payloads
        )
        print(
            f"ours: ready in {ours_ready:.1f} s; {described['name']} v{described['version']} on "
            f"{described['predictor']}, snapshot {described['snapshot']}; "
            f"{len(payloads.ours)} rows of {payloads.partition} as payloads",
            flush=True,
        )
        checks.require(
            described["version"] == prepared.version,
            f"ours serves v{described['version']}, the champion is v{prepared.version}",
        )
        ours_answers, ours_measured = exercise("ours", ours, "/predict", payloads.ours, load)

        theirs, theirs_ready = serve(
            "mlflow models serve",
            [str(BIN / "mlflow"), "models", "serve", "-m", prepared.mlflow_model,
             "--env-manager", "local", "-p", "{port}", "-h", "127.0.0.1", "--workers", "1"],
            # no access log, as ours (uvicorn reads UVICORN_* options from the environment)
            {**env, "MLFLOW_TRACKING_URI": tracking_uri(), "UVICORN_ACCESS_LOG": "false"},
            home / "serve_mlflow.log",
            ["/ping", "/health"],
            servers,
        )  # fmt: skip
        print(f"MLflow: ready in {theirs_ready:.1f} s; {prepared.mlflow_model}", flush=True)
        theirs_answers, theirs_measured = exercise(
            "MLflow", theirs, "/invocations", payloads.mlflow, load
        )

        worst = parity(pipeline, prepared, ours_answers, theirs_answers, payloads.ids, checks)
        for m in (ours_measured, theirs_measured):
            failed = m.sequential.errors + m.concurrent.errors
            checks.require(not failed, f"{m.name} answered {failed} measured requests with errors")
        rendered, ratios = report(ours_measured, theirs_measured, load.clients)
        declared = declaration(pipeline)
        copy = (
            f" (a copy logged with pyfunc_predict_fn='predict_proba', positive class in column "
            f"{prepared.positive_column})"
            if prepared.positive_column is not None
            else ""
        )
        print(
            f"\nmodel: {declared.model.registered_model_name} v{prepared.version} "
            f"({prepared.family}, test {prepared.test_metric}); ours on {described['predictor']}, "
            f"MLflow on the scikit-learn pipeline (pyfunc{copy})\n"
            "payloads: ours gets request fields (validated, features computed per request"
            f"{', looked up in the online snapshot' if described['snapshot'] else ''}); "
            "MLflow gets the precomputed model inputs\n"
            f"parity on {len(ours_answers)} rows: max |ours - MLflow| = {worst:.2e} "
            f"(tolerance {declared.deploy.tolerance:g})"
        )
        print(f"\n{rendered}\n")
        print("\n".join(ratios))
        if quick:
            print("(quick mode: targets are reported, never a failure)")
        print(f"\nwall time {time.perf_counter() - began:.0f} s")
        return checks.report()
    finally:
        for server in servers:
            stop_server(server)


if __name__ == "__main__":
    sys.exit(main())
