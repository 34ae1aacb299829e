"""The prediction service vs. ``mlflow models serve``, and what its log and shadow cost.

The same registered model, one row at a time. Run as ``.venv/bin/python benchmarks/serving.py
[--pipeline flights|taxi] [--quick]`` from the project root (``--home DIR`` reuses a home an
earlier run kept with ``--keep``, skipping the build). On a temporary ``$ML_ASSETS_HOME`` a child
process lands the pipeline's data with its publisher and materializes it through the code
location's jobs (``<prefix>_reference_tables``, ``<prefix>_data`` over the range as one run, online
snapshots included when the pipeline declares one, then ``<prefix>_model`` with a short Optuna
study); the registered version is then aliased ``champion``. The acceptance bar is relaxed for this
run (a model up to 100% worse than the baseline is registered): the benchmark measures serving, not
the model. Then, one server after the other, each in its own process with one worker:

- **ours**, in three configurations on the same model and payloads, one after the other:
  ``ml-assets serve PIPELINE`` (FastAPI on uvicorn; ONNX Runtime when the version has a
  verified export, else scikit-learn), ``POST /predict`` with one row's *request* fields (the
  pipeline's ``request_items`` of its ``requests_asset``): the service validates them, looks
  them up in the latest online snapshot if the pipeline has one, and computes the features
  itself.

  - **plain**: ``--no-prediction-log``, the champion alone;
  - **log**: as a user starts it, every prediction going to the prediction log (queued on the
    request path, written as Parquet by a background thread) under
    ``$ML_ASSETS_PREDICTION_LOG_URL``, here ``<home>/prediction_log/<configuration>``. This
    is the configuration compared with MLflow (the "ours" rows);
  - **log + shadow**: the log, and a challenger in shadow, scored on every request and logged,
    never returned. It is a second registry version of the champion's own run (the same
    model), its ``challenger`` alias set and its ``rollout_stage`` tag ``shadow``; once
    measured, the alias points back where it was and the copy is tagged ``rolled_back``.

- **MLflow**: ``mlflow models serve --env-manager local`` on the same version (the scikit-learn
  pipeline as a pyfunc), ``POST /invocations`` with the same row's *precomputed* features
  (``dataframe_split``) from the features asset. MLflow does less work per request than ours.

A classifier's pyfunc returns labels (``predict``) by default. For a binary classifier the
benchmark therefore logs a copy of the registered version: the same fitted pipeline, loaded
from its skops file with the reviewed types only, logged with
``mlflow.sklearn.log_model(..., pyfunc_predict_fn="predict_proba")`` (same input signature,
same skops trusted types) and registered as ``<model>-predict-proba``; MLflow serves that copy
and answers ``[p(0), p(1)]``; ours answers ``<prediction>_probability``.

The payloads are real rows of the partition the service serves (its snapshot's, or the last one
built). Every payload is first sent to every server: each configuration of ours must agree with
MLflow within the pipeline's declared ``deploy.tolerance`` (0.01 min for flights, 1e-4 for
taxi), and each answer must name the row asked for and come from the champion (never the
shadow). Then each server gets the same load from the same lean client (raw sockets, pre-
encoded requests, keep-alive): sequential requests on one connection, then 8 connections at
once for a fixed time. Ours' three configurations run side by side and take that load in
interleaved rounds (5; each round in a rotated order), so a change in the machine's background
load falls on all three alike; MLflow's server runs after them, alone. No measured request may
fail, and a configuration that logs must have logged every prediction it answered: once ``GET
/model`` shows nothing pending, the Parquet files of its log hold exactly one champion row per
200 answer (by ``(request_id, item_index, model_version)``) and, with the shadow, as many
challenger rows of the same requests with ``returned`` false; otherwise the exit code is 1.
Latency percentiles and throughput are printed with the ratios against the targets: ours at
most a third of MLflow's median latency and at least 3 times its throughput at 8 connections;
the log and the shadow together adding at most 0.2 ms to plain's median latency and keeping at
least 90% of its throughput at 8 connections (the log alone's figures are printed beside them).
Missing a target is reported, not an error. All servers run without an access log. The client's
own CPU use (share of one core) is printed beside each figure: on two cores, client and server
share the machine. ``--quick`` builds less data, runs a 2-trial study and a short load: the
same code, for the test suite.
"""

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
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
ADDED_P50_TARGET_MS = 0.2
"""The most the prediction log and shadow scoring together may add to plain's median latency."""
KEPT_THROUGHPUT_TARGET = 0.9
"""The least share of plain's throughput at 8 connections they must keep."""
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


@dataclass(frozen=True)
class Configuration:
    """One way of running ours on the champion."""

    name: str
    logs: bool
    """Whether every prediction goes to the prediction log (else ``--no-prediction-log``)."""
    shadow: bool
    """Whether a challenger is scored in shadow beside the champion."""

    @property
    def folder(self) -> str:
        """Its prediction log's folder under ``<home>/prediction_log``."""
        return self.name.replace(" + ", "-")


PLAIN, LOGGED, SHADOWED = (
    Configuration("plain", logs=False, shadow=False),
    Configuration("log", logs=True, shadow=False),
    Configuration("log + shadow", logs=True, shadow=True),
)
CONFIGURATIONS = (PLAIN, LOGGED, SHADOWED)

"""Ours, started in this order; ``LOGGED`` (as ``ml-assets serve`` starts by default) is the
one compared with MLflow."""


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

    from ml_assets.contract.model_format import Features
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

    from resources.builder import platform_resources

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
    from ml_assets.contract.dagster_terms import asset_key
    from ml_assets.home import warehouse_url
    from resources.parquet_io_manager import read_partition

    declared = declaration(pipeline)
    model = declared.model
    requests = read_partition(
        warehouse_url(), asset_key(declared, declared.serving.requests_asset), partition
    )
    features = read_partition(
        warehouse_url(), asset_key(declared, model.features_asset), partition
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
    unmeasured_ok: int = 0
    """200 answers to the requests sent before measuring (the warm-up)."""

    @property
    def ok(self) -> int:
        """The server's 200 answers in this run, warm-up included."""
        return len(self.latencies) - self.errors + self.unmeasured_ok

    def percentile_ms(self, q: float) -> float:
        import numpy as np

        return 1000 * float(np.percentile(self.latencies, q))

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.wall_s

    @classmethod
    def merged(cls, loads: Sequence["Load"]) -> "Load":
        """Several rounds of one load as one: their requests and their times added up."""
        return cls(
            [x for load in loads for x in load.latencies],
            sum(load.wall_s for load in loads),
            sum(load.client_cpu_s for load in loads),
            sum(load.errors for load in loads),
            sum(load.unmeasured_ok for load in loads),
        )


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
        warm_up_ok = warm_up - _drive(connection, bodies, 0, lambda sent: sent < warm_up, [])
        latencies: list[float] = []
        cpu, began = time.process_time(), time.perf_counter()
        errors = _drive(connection, bodies, 0, lambda sent: sent < count, latencies)
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu
        return Load(latencies, wall, cpu, errors, warm_up_ok)
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
    name: str,
    pipeline: str,
    prepared: Prepared,
    ours: Sequence[dict[str, Any]],
    theirs: Sequence[dict[str, Any]],
    ids: Sequence[str],
    checks: Checks,
) -> float:
    """The largest difference between the scores of ours (server ``name``) and MLflow's; what
    disagrees, or comes from another version than the champion, is a failure."""
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
    checks.require(not wrong_rows, f"{name} answered for other rows: {wrong_rows[:5]}")
    checks.require(
        versions == {prepared.version}, f"{name} answered from {versions}, not v{prepared.version}"
    )
    checks.require(
        worst <= declared.deploy.tolerance,
        f"{name}: {field} differs by up to {worst:.4g} (tolerance {declared.deploy.tolerance:g})",
    )
    return worst


@dataclass
class Measured:
    name: str
    sequential: Load
    concurrent: Load
    answered: int
    """The server's 200 answers in all: the parity pass, the warm-up and the measured loads."""


@dataclass(frozen=True)
class LoadSettings:
    payloads: int
    warm_up: int
    requests: int
    clients: int
    seconds: float
    rounds: int
    """Interleaved rounds in which ours' configurations share the load (``exercise_together``)."""


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


@contextlib.contextmanager
def stopping(server: Server) -> Iterator[Server]:
    """The server, stopped on leaving (the next one is measured on a quiet machine)."""
    try:
        yield server
    finally:
        stop_server(server)


def exercise(
    name: str, server: Server, path: str, bodies: Sequence[bytes], load: LoadSettings
) -> tuple[list[dict[str, Any]], Measured]:
    """Every payload once (for parity), then the sequential and the concurrent load."""
    answered = answers(server.port, path, bodies)
    print(f"  {name}: {load.requests} sequential requests …", flush=True)
    alone = sequential(server.port, path, bodies, load.warm_up, load.requests)
    print(f"  {name}: {load.clients} connections for {load.seconds:g} s …", flush=True)
    together = concurrent(server.port, path, bodies, load.clients, load.seconds)
    return answered, Measured(name, alone, together, len(answered) + alone.ok + together.ok)


# --- ours: plain, with the prediction log, with a shadow ---------------------------------------


@dataclass
class Session:
    """What every server of one benchmark run shares."""

    home: Path
    pipeline: str
    prepared: Prepared
    env: Mapping[str, str]
    load: LoadSettings
    checks: Checks
    servers: list[Server]
    """Every server started (the benchmark stops whatever is still running on exit)."""
    payloads: Payloads | None = None
    """Built once the first server says which snapshot it serves."""


@dataclass
class OursRun:
    configuration: Configuration
    described: dict[str, Any]
    """``GET /model`` once it was ready."""
    ready_s: float
    answers: list[dict[str, Any]]
    measured: Measured
    logged: str | None
    """What its prediction log holds (None: it logs nothing)."""


@contextlib.contextmanager
def shadow_challenger(name: str, champion: str) -> Iterator[str]:
    """A second registry version of the champion's own run (the same model), aliased
    ``challenger`` and tagged ``rollout_stage=shadow``, so a service that starts serves it in
    shadow; on leaving, the alias points where it did and the copy is tagged ``rolled_back``,
    so later services serve the champion alone."""
    import io
    import logging

    import mlflow
    from mlflow.tracking import MlflowClient

    from ml_assets.contract.names import ROLLED_BACK, SHADOW, STAGE_TAG
    from ml_assets.deployment import registry
    from ml_assets.home import tracking_uri
    from resources.mlflow_tracking import MlflowTracking

    MlflowTracking(tracking_uri=tracking_uri()).use()
    client = MlflowClient()
    source = client.get_model_version(name, champion)
    tags = {k: v for k, v in source.tags.items() if k != STAGE_TAG}
    tags["serving_benchmark"] = f"shadow copy of v{champion}"
    # MLflow's notes on registering ("already exists", "Created version", and that the run's
    # model is a logged model): a line of ours says what was registered
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    with contextlib.redirect_stderr(io.StringIO()):
        registered = mlflow.register_model(f"runs:/{source.run_id}/model", name, tags=tags)
    copy = str(registered.version)
    print(f"registered {name} v{copy}: v{champion}'s run again, to serve in shadow", flush=True)
    before = registry.alias_version(name, registry.CHALLENGER)
    try:
        client.set_registered_model_alias(name, registry.CHALLENGER, copy)
        registry.set_stage(name, copy, SHADOW, "serving benchmark: the shadow's cost")
        yield copy
    finally:
        registry.set_stage(name, copy, ROLLED_BACK, "serving benchmark: measured")
        if before is None:
            client.delete_registered_model_alias(name, registry.CHALLENGER)
        else:
            client.set_registered_model_alias(name, registry.CHALLENGER, before)


def ours_command(pipeline: str, configuration: Configuration) -> list[str]:
    return [
        str(BIN / "ml-assets"), "serve", pipeline, "--port", "{port}", "--log-level", "warning",
        *([] if configuration.logs else ["--no-prediction-log"]),
    ]  # fmt: skip


IDENTITY = ["request_id", "item_index", "model_version"]
"""What identifies a logged prediction (``serving.prediction_log.COLUMNS``)."""


def settled_log(server: Server, rows: int, timeout_s: float = 30.0) -> tuple[dict[str, Any], float]:
    """``GET /model`` once its prediction log has nothing pending and has written ``rows``
    predictions (``pending`` drops when the writer takes a batch, before its files exist), or
    after ``timeout_s``; and the seconds waited."""
    began = time.perf_counter()
    while True:
        described = get_json(server.port, "/model")
        figures = described["prediction_log"]
        waited = time.perf_counter() - began
        if (figures["pending"] == 0 and figures["written"] >= rows) or waited > timeout_s:
            return described, waited
        time.sleep(0.05)


def check_log(
    name: str, server: Server, folder: Path, measured: Measured, champion: str,
    shadow: str | None, checks: Checks,
) -> str:  # fmt: skip
    """Once written, the log's files must hold one champion prediction per 200 answer (each
    once, returned) and, with a shadow, one challenger prediction of each of the same requests
    (never returned); a summary line."""
    import pandas as pd
    import pyarrow.parquet as pq

    answered = measured.answered
    described, waited = settled_log(server, answered * (2 if shadow else 1))
    figures = described["prediction_log"]
    columns = [*IDENTITY, "role", "returned"]
    files = sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith("."))
    rows = (
        pd.concat([pq.read_table(f, columns=columns).to_pandas() for f in files])
        if files
        else pd.DataFrame({c: [] for c in columns})
    )
    champions, challengers = (rows[rows["role"] == role] for role in ("champion", "challenger"))
    logged = f"ours ({name}) logged"
    checks.require(
        len(champions) == answered,
        f"{logged} {len(champions)} champion predictions for {answered} answers ({figures})",
    )
    checks.require(
        set(champions["model_version"]) <= {champion} and bool(champions["returned"].all()),
        f"{logged} champion predictions of {set(champions['model_version'])} (v{champion}), "
        f"{int((~champions['returned'].astype(bool)).sum())} of them not returned",
    )
    repeated = int(rows.duplicated(IDENTITY).sum())
    checks.require(not repeated, f"{logged} {repeated} predictions more than once")
    checks.require(
        len(challengers) == (answered if shadow else 0),
        f"{logged} {len(challengers)} challenger predictions, "
        f"{'one per answer' if shadow else 'with no challenger'} expected",
    )
    once = f"{repeated} repeated" if repeated else "each once"
    summary = (
        f"logged ({name}): {len(champions)} champion predictions for {answered} answers, {once}"
    )
    if shadow:
        checks.require(
            set(challengers["model_version"]) <= {shadow}
            and not challengers["returned"].astype(bool).any()
            and set(challengers["request_id"]) == set(champions["request_id"]),
            f"{logged} challenger predictions of {set(challengers['model_version'])} (v{shadow}), "
            f"{int(challengers['returned'].astype(bool).sum())} returned, or of other requests",
        )
        stats = described["rollout"]["challenger"]
        checks.require(
            stats["requests"] == answered and stats["errors"] == 0,
            f"the shadow scored {stats['requests']} requests ({stats['errors']} errors), "
            f"not {answered}",
        )
        summary += (
            f"; {len(challengers)} shadow (v{shadow}) predictions of the same requests, none "
            f"returned; shadow scoring p50 {stats['latency_p50_ms']:.3f} ms "
            f"(p95 {stats['latency_p95_ms']:.3f}) in GET /model"
        )
    return (
        f"{summary}; {len(files)} files, {figures['dropped']} dropped, "
        f"{figures['write_failures']} failed writes; written {waited:.1f} s after the load"
    )


@dataclass
class Started:
    """One configuration of ours, up and checked, before the load."""

    configuration: Configuration
    server: Server
    described: dict[str, Any]
    """``GET /model`` once it was ready."""
    ready_s: float
    shadow: str | None


def start_ours(session: Session, configuration: Configuration, shadow: str | None) -> Started:
    """Ours in ``configuration`` (``shadow``: the challenger version it must serve in shadow),
    started and checked to serve what it should."""
    from ml_assets.home import PREDICTION_LOG_ENV_VAR

    prepared, checks, name = session.prepared, session.checks, configuration.name
    folder = session.home / "prediction_log" / configuration.folder
    shutil.rmtree(folder, ignore_errors=True)  # what an earlier run on a reused home logged
    server, ready = serve(
        f"ml-assets serve ({name})",
        ours_command(session.pipeline, configuration),
        {**session.env, PREDICTION_LOG_ENV_VAR: str(folder)},
        session.home / f"serve_ours_{configuration.folder}.log",
        ["/ready"],
        session.servers,
    )
    described = get_json(server.port, "/model")
    first = session.payloads is None
    if first:
        partition = described.get("snapshot") or prepared.partition
        session.payloads = build_payloads(session.pipeline, partition, session.load.payloads)
    payloads = session.payloads
    assert payloads is not None
    rollout = described["rollout"]
    challenger = (rollout["challenger"] or {}).get("version")
    print(
        f"ours ({name}): ready in {ready:.1f} s; {described['name']} v{described['version']} "
        f"on {described['predictor']}, snapshot {described['snapshot']}"
        + (f", v{challenger} in {rollout['stage']}" if challenger else "")
        + (f"; {len(payloads.ours)} rows of {payloads.partition} as payloads" if first else ""),
        flush=True,
    )
    checks.require(
        described["version"] == prepared.version,
        f"ours ({name}) serves v{described['version']}, the champion is v{prepared.version}",
    )
    expected = ("shadow", shadow) if shadow else ("full", None)
    checks.require(
        (rollout["stage"], challenger) == expected,
        f"ours ({name}) serves stage {rollout['stage']} with challenger {challenger}, "
        f"not {expected}",
    )
    checks.require(
        ("prediction_log" in described) == configuration.logs,
        f"ours ({name}) {'does not log' if configuration.logs else 'logs'} its predictions",
    )
    return Started(configuration, server, described, ready, shadow)


def exercise_together(
    started: Sequence[Started], bodies: Sequence[bytes], load: LoadSettings
) -> dict[Configuration, tuple[list[dict[str, Any]], Measured]]:
    """``exercise`` of every started configuration, in ``ROUNDS`` interleaved rounds (each
    round in a rotated order), so that a change in the machine's background load falls on all
    of them alike rather than on whichever ran at that moment."""
    rounds = load.rounds
    warm_up = {s.configuration: answers(s.server.port, "/predict", bodies) for s in started}
    alone: dict[Configuration, list[Load]] = {s.configuration: [] for s in started}
    together: dict[Configuration, list[Load]] = {s.configuration: [] for s in started}
    names = ", ".join(s.configuration.name for s in started)
    print(
        f"  {names}: {rounds} rounds each of {load.requests // rounds} sequential requests and "
        f"{load.clients} connections for {load.seconds / rounds:g} s …",
        flush=True,
    )
    for n in range(rounds):
        for s in (*started[n % len(started) :], *started[: n % len(started)]):
            port, c = s.server.port, s.configuration
            alone[c].append(
                sequential(
                    port, "/predict", bodies, load.warm_up // rounds, load.requests // rounds
                )
            )
            together[c].append(
                concurrent(port, "/predict", bodies, load.clients, load.seconds / rounds)
            )
    measured = {}
    for s in started:
        c = s.configuration
        sequential_load, concurrent_load = Load.merged(alone[c]), Load.merged(together[c])
        total = len(warm_up[c]) + sequential_load.ok + concurrent_load.ok
        measured[c] = (warm_up[c], Measured(c.name, sequential_load, concurrent_load, total))
    return measured


def finish_ours(session: Session, started: Started, measured: Measured) -> str | None:
    """Its prediction log checked (None: it logs nothing), then the server stopped."""
    configuration = started.configuration
    folder = session.home / "prediction_log" / configuration.folder
    with stopping(started.server):
        if not configuration.logs:
            return None
        return check_log(configuration.name, started.server, folder, measured,
                         session.prepared.version, started.shadow, session.checks)  # fmt: skip


# --- reports ---------------------------------------------------------------------------------


def load_table(measured: Sequence[Measured], clients: int, label: str) -> str:
    rows = [
        (
            m.name,
            mode,
            len(load.latencies),
            load.errors,
            load.percentile_ms(50),
            load.percentile_ms(95),
            load.percentile_ms(99),
            load.throughput,
            load.client_cpu_s / load.wall_s,
        )
        for m in measured
        for mode, load in (
            ("sequential, 1 connection", m.sequential),
            (f"{clients} connections", m.concurrent),
        )
    ]
    return table(
        (label, "load", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "req/s", "client CPU"),
        rows,
        floatfmt=(None, None, None, None, ".3f", ".3f", ".3f", ".0f", ".0%"),
    )


def report(ours: Measured, theirs: Measured, clients: int) -> tuple[str, list[str]]:
    """Ours against MLflow: the table and the target lines."""
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
    return load_table([ours, theirs], clients, "server"), lines


def cost_report(runs: Mapping[Configuration, Measured], clients: int) -> tuple[str, list[str]]:
    """What the prediction log and the shadow cost against plain: the table and the lines."""
    plain = runs[PLAIN]

    def added_ms(m: Measured, q: float) -> float:
        return m.sequential.percentile_ms(q) - plain.sequential.percentile_ms(q)

    def kept(m: Measured) -> float:
        return m.concurrent.throughput / plain.concurrent.throughput

    logged, both = runs[LOGGED], runs[SHADOWED]
    lines = [
        target(
            "p50 added by the prediction log and the shadow, ms (sequential)",
            added_ms(both, 50),
            ADDED_P50_TARGET_MS,
            True,
            f"{ADDED_P50_TARGET_MS:g} ms",
        ),
        target(
            f"throughput at {clients} connections, log + shadow / plain",
            kept(both),
            KEPT_THROUGHPUT_TARGET,
            False,
            f"{KEPT_THROUGHPUT_TARGET:g}",
        ),
        *(
            f"{m.name} vs plain: p50 {added_ms(m, 50):+.3f} ms, p95 {added_ms(m, 95):+.3f} ms, "
            f"throughput at {clients} connections {kept(m):.3f} of plain's"
            for m in (logged, both)
        ),
    ]
    return load_table([runs[c] for c in CONFIGURATIONS], clients, "ours"), lines


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
    parser.add_argument("--seconds", type=float, help="concurrent load duration (10; 1)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds of ours' loads (5; 2)")
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        prepare(args.prepare, args.pipeline, args.quick)
        return 0
    defaults = (50, 20, 200, 1.0, 2) if args.quick else (200, 200, 2000, 10.0, 5)
    given = (args.payloads, args.warm_up, args.requests, args.seconds, args.rounds)
    payloads, warm_up, requests, seconds, rounds = (
        default if value is None else value for value, default in zip(given, defaults, strict=True)
    )
    load = LoadSettings(payloads, warm_up, requests, args.clients, seconds, rounds)
    with benchmark_home("ml_assets_serving_", args.keep, args.home) as home:
        return benchmark(home, args.pipeline, args.quick, load, reuse=args.home is not None)


def benchmark(home: Path, pipeline: str, quick: bool, load: LoadSettings, reuse: bool) -> int:
    began = time.perf_counter()
    env = enter_home(home)
    warnings.simplefilter("ignore")  # Dagster's beta/preview notes on importing the platform
    checks = Checks()
    session: Session | None = None
    try:
        if not reuse:
            build_home(home, env, pipeline, quick)
        from ml_assets.home import tracking_uri

        prepared = Prepared.load(home)
        declared = declaration(pipeline)
        print(f"{os.cpu_count()} CPUs; load average {load_average()}", flush=True)
        if note := bytecode_note():
            print(note)
        session = Session(home, pipeline, prepared, env, load, checks, [])
        started = []
        for configuration in CONFIGURATIONS:  # each loads the registry's state as it starts
            with (
                shadow_challenger(declared.model.registered_model_name, prepared.version)
                if configuration.shadow
                else contextlib.nullcontext()
            ) as shadow:
                started.append(start_ours(session, configuration, shadow))
        payloads = session.payloads
        assert payloads is not None
        exercised = exercise_together(started, payloads.ours, load)
        runs = {
            s.configuration: OursRun(s.configuration, s.described, s.ready_s, *exercised[
                s.configuration], finish_ours(session, s, exercised[s.configuration][1]))
            for s in started
        }  # fmt: skip

        theirs, theirs_ready = serve(
            "mlflow models serve",
            [str(BIN / "mlflow"), "models", "serve", "-m", prepared.mlflow_model,
             "--env-manager", "local", "-p", "{port}", "-h", "127.0.0.1", "--workers", "1"],
            # no access log, as ours (uvicorn reads UVICORN_* options from the environment)
            {**env, "MLFLOW_TRACKING_URI": tracking_uri(), "UVICORN_ACCESS_LOG": "false"},
            home / "serve_mlflow.log",
            ["/ping", "/health"],
            session.servers,
        )  # fmt: skip
        print(f"MLflow: ready in {theirs_ready:.1f} s; {prepared.mlflow_model}", flush=True)
        with stopping(theirs):
            theirs_answers, theirs_measured = exercise(
                "MLflow", theirs, "/invocations", payloads.mlflow, load
            )

        worst = max(
            parity(f"ours ({c.name})", pipeline, prepared, run.answers, theirs_answers,
                   payloads.ids, checks)
            for c, run in runs.items()
        )  # fmt: skip
        ours = replace(runs[LOGGED].measured, name="ours")
        for m in (*(run.measured for run in runs.values()), theirs_measured):
            failed = m.sequential.errors + m.concurrent.errors
            checks.require(not failed, f"{m.name} answered {failed} measured requests with errors")
        rendered, ratios = report(ours, theirs_measured, load.clients)
        costs, cost_lines = cost_report({c: run.measured for c, run in runs.items()}, load.clients)
        described = runs[LOGGED].described
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
            f"parity on {len(theirs_answers)} rows: max |ours - MLflow| = {worst:.2e} "
            f"(tolerance {declared.deploy.tolerance:g}; each of "
            f"{', '.join(c.name for c in CONFIGURATIONS)})"
        )
        print(
            "\nours against MLflow (ours: the log configuration, as ml-assets serve starts):"
            f"\n{rendered}\n"
        )
        print("\n".join(ratios))
        print(
            "\nwhat the prediction log and a shadow (a second version of the same model) cost, "
            f"against plain (--no-prediction-log):\n{costs}\n"
        )
        print("\n".join(cost_lines))
        print("\n".join(run.logged for run in runs.values() if run.logged))
        if quick:
            print("(quick mode: targets are reported, never a failure)")
        print(f"\nwall time {time.perf_counter() - began:.0f} s")
        return checks.report()
    finally:
        for server in session.servers if session is not None else []:
            stop_server(server)


if __name__ == "__main__":
    sys.exit(main())
