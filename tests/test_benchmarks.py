"""Every benchmark's ``--quick`` mode, run as a user runs it: a subprocess that must exit 0 (its
parity and run checks passed) after printing its figures.

The quick modes spend much of their time waiting for processes to start and servers to answer,
so the selected ones are started side by side when the module's first test runs (under
pytest-xdist the module's tests all run on one worker: ``tests/tiers.py``). Their processes
read the bytecode ``make install`` compiled and may write what is missing next to its source
(``PYTHONDONTWRITEBYTECODE`` unset; a cache folder of their own, ``PYTHONPYCACHEPREFIX``, was
empty on a fresh clone, and the ten runs, started at once, each compiled Dagster, pandas and
MLflow again), and they use one OpenMP thread per fit (spinning OpenMP threads slow a busy
machine's fits several-fold); speed is not what these tests check. They run at a lower CPU
priority (``nice``), so the live tests on the other worker, which wait on deadlines, keep their
share of the two cores; and outside ``make test``'s line coverage, whose tracer would double
their work and distort the figures they print.
"""

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 900.0
NUMBER = r"[0-9][0-9.e+-]*"

QUICK_RUNS: dict[str, list[str]] = {
    "backfill": ["backfill.py", "--quick"],
    "distributed": ["distributed.py", "--quick"],
    "forecasting": ["forecasting.py", "--quick"],
    "ingestion": ["ingestion.py", "--quick"],
    "landing": ["landing.py", "--quick"],
    "plausibility": ["plausibility.py", "--quick"],
    "serving-flights": ["serving.py", "--quick", "--pipeline", "flights"],
    "serving-taxi": ["serving.py", "--quick", "--pipeline", "taxi"],
    "startup": ["startup.py", "--quick"],
    "tuning-flights": ["tuning.py", "--quick", "--pipeline", "flights"],
    "tuning-taxi": ["tuning.py", "--quick", "--pipeline", "taxi"],
}
"""Test id → the benchmark script (in ``benchmarks/``) and its arguments."""

SERVING_FIGURES = [
    rf"^ours +sequential, 1 connection +\d+ +0 +{NUMBER} +{NUMBER} +{NUMBER}",
    rf"^ours +8 connections +\d+ +0 +{NUMBER} +{NUMBER} +{NUMBER}",
    rf"^MLflow +sequential, 1 connection +\d+ +0 +{NUMBER} +{NUMBER} +{NUMBER}",
    rf"^MLflow +8 connections +\d+ +0 +{NUMBER} +{NUMBER} +{NUMBER}",
    rf"^parity on 50 rows: max \|ours - MLflow\| = {NUMBER}",
    rf"^p50 latency, ours / MLflow \(sequential\): {NUMBER} \(target",
    rf"^throughput at 8 connections, ours / MLflow: {NUMBER} \(target",
    *(
        rf"^{configuration} +{load} +\d+ +0 +{NUMBER} +{NUMBER} +{NUMBER}"
        for configuration in ("plain", "log", r"log \+ shadow")
        for load in ("sequential, 1 connection", "8 connections")
    ),
    rf"^p50 added by the prediction log and the shadow, ms \(sequential\): -?{NUMBER} \(target",
    rf"^throughput at 8 connections, log \+ shadow / plain: {NUMBER} \(target",
    r"^logged \(log\): (\d+) champion predictions for \1 answers, each once",
    r"^logged \(log \+ shadow\): (\d+) champion predictions for \1 answers, each once; "
    r"\1 shadow \(v\d+\) predictions of the same requests, none returned",
]
TUNING_FIGURES = [
    rf"^1 +{NUMBER} +\d+/\d+ +{NUMBER} +{NUMBER} ",
    rf"^2 +{NUMBER} +\d+/\d+ +{NUMBER} +{NUMBER} ",
    rf"^speedup 2 vs 1 worker\(s\), trials/min: {NUMBER} \(target .*work-adjusted: {NUMBER}",
]
FIGURES: dict[str, list[str]] = {
    "backfill": [
        rf"^dagster wall s \(data layers run\) +{NUMBER}$",
        rf"^direct wall s +{NUMBER}$",
        rf"^ratio dagster / direct +{NUMBER} \(target",
        rf"^  flights__flight_features: work +{NUMBER} s",
        r"^flight_features identical +yes$",
    ],
    "distributed": [
        *(
            rf"^{executor} +{NUMBER} +{NUMBER} +{NUMBER} +\d+ +{NUMBER} +{NUMBER} +{NUMBER} +\d+$"
            for executor in ("multiprocess", "celery")
        ),
        rf"^wall ratio celery / multiprocess: {NUMBER}$",
        rf"^step start-up celery / multiprocess: {NUMBER}$",
        rf"^events per second celery / multiprocess: {NUMBER}$",
        r"rows differing between sides: 0; raw flights not as published: 0;",
    ],
    "forecasting": [
        rf"^first call: import {NUMBER} s, first fit {NUMBER} s, second {NUMBER} s$",
        *(
            rf"^{family} on 365 days: .*, fit {NUMBER} s, forecast path {NUMBER} ms, one row "
            rf"served {NUMBER} ms"
            for family in ("auto_ets", "auto_arima")
        ),
        r"^auto_ets parity: saved vs statsforecast max abs difference 0$",
        rf"^fold 2: auto_ets MAE {NUMBER}, seasonal naive MAE {NUMBER}, MASE {NUMBER}$",
    ],
    "ingestion": [
        rf"^platform +10 +(\d+) +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER}$",
        rf"^COPY -> Arrow +10 +(\d+) +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER}$",
        rf"^platform read \(dlt query, rows as text\) s {NUMBER}: \d+ rows/s$",
        rf"^rows/s platform / COPY: {NUMBER} \(target",
        rf"^peak PSS MB: {NUMBER} \(target",
        rf"^peak PSS range / quarter: {NUMBER} \(target",
        rf"^REST: \d+ requests for 3 days, \d+ rows, {NUMBER} s; {NUMBER} requests/s against 20",
        rf"^REST requests/s achieved / declared: {NUMBER} \(target .*; never above",
        r"^stream: 3680 events; published \d+ events/s, into raw \d+ events/s, end to end \d+",
    ],
    "landing": [
        rf"^daemon wall s \(10 days landed at once\) +{NUMBER}$",
        r"^daemon data-layer runs +\d+ \(",
        rf"^CLI backfill wall s \(10 days\) +{NUMBER}$",
        rf"^new day latency s +{NUMBER} \(median",
        rf"^ratio daemon / CLI backfill: {NUMBER} \(target",
        rf"^new day, worst latency: {NUMBER} s \(target",
        rf"^correction latency s \(last reading day refreshed\) +{NUMBER}$",
        rf"^corrected day, last reader refreshed: {NUMBER} s \(target",
    ],
    "plausibility": [
        r"^inconsistent:distance +reject +10 +0 +0 ",
        r"^group_shift:temp +reject +10 +0 +0 ",
        r"^group_shift:distance +flag +4 +0 +0 ",
        r"distance in km on \d+ of \d+ rows: inconsistent:distance rejects \d+ rows",
        r"in Celsius: group_shift:temp rejects \d+ rows \(JFK: median",
        r"in km \(April\): group_shift:distance flags \d+ rows \(Sun Taxi: median",
    ],
    "startup": [
        *(
            rf"^{side} +{NUMBER} +{NUMBER} +{NUMBER}$"
            for side in ("bare dagster", r"dagster \+ the pipelines' own", "code location")
        ),
        rf"^ratio code location / \(dagster \+ the pipelines' own\): {NUMBER} \(target",
        r"^heavy libraries the code location loads beyond the pipelines' own: none$",
    ],
    "serving-flights": [*SERVING_FIGURES, r"ours on (onnx|sklearn)", r"snapshot 2013-01-10"],
    "serving-taxi": [*SERVING_FIGURES, r"pyfunc_predict_fn='predict_proba'"],
    "tuning-flights": [*TUNING_FIGURES, r"best val mae"],
    "tuning-taxi": [*TUNING_FIGURES, r"best val log_loss"],
}
"""Lines each quick mode must print: its figures, measured, and the passed checks."""


@dataclass
class QuickRun:
    """One benchmark process and where its output goes."""

    command: list[str]
    output: Path
    env: dict[str, str]
    process: subprocess.Popen | None = None
    started: float = 0.0
    seconds: float | None = field(default=None)

    def start(self) -> None:
        if self.process is None:
            with self.output.open("w") as out:
                self.process = subprocess.Popen(
                    self.command,
                    cwd=PROJECT_ROOT,
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its servers and workers stop with it
                )
            self.started = time.perf_counter()

    def wait(self) -> tuple[int, str]:
        """Exit code and output; a run past the timeout is stopped and fails."""
        self.start()
        assert self.process is not None
        try:
            code = self.process.wait(max(1.0, TIMEOUT_S - (time.perf_counter() - self.started)))
        except subprocess.TimeoutExpired:
            self.stop()
            code = -1
        if self.seconds is None:
            self.seconds = time.perf_counter() - self.started
        return code, self.output.read_text()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _environment(tmp: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONDONTWRITEBYTECODE", "COVERAGE_PROCESS_CONFIG")
    }
    env.update(
        TMPDIR=str(tmp),  # the benchmarks' temporary homes land in the test's directory
        OMP_NUM_THREADS="1",
        PYTHONWARNINGS="ignore",
    )
    return env


@pytest.fixture(scope="module")
def quick_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, QuickRun]]:
    """A ``QuickRun`` per benchmark, the selected ones already started."""
    tmp = tmp_path_factory.mktemp("benchmarks")
    env = _environment(tmp)
    runs = {
        name: QuickRun(
            ["nice", "-n", "10", sys.executable, str(PROJECT_ROOT / "benchmarks" / script), *args],
            tmp / f"{name}.log",
            env,
        )
        for name, (script, *args) in QUICK_RUNS.items()
    }
    selected = {
        item.callspec.id
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    }
    for name in selected & set(runs):
        runs[name].start()
    try:
        yield runs
    finally:
        for run in runs.values():
            run.stop()


@pytest.mark.parametrize("name", list(QUICK_RUNS), ids=list(QUICK_RUNS))
def test_quick_mode_passes_its_checks_and_prints_its_figures(
    name: str, quick_runs: dict[str, QuickRun]
) -> None:
    run = quick_runs[name]
    code, output = run.wait()
    tail = output[-4000:]
    assert code == 0, f"{' '.join(run.command[4:])} exited {code}:\n{tail}"
    missing = [p for p in FIGURES[name] if not re.search(p, output, re.MULTILINE)]
    assert not missing, f"not printed: {missing}\n{tail}"
    assert re.search(r"^checks: all passed$", output, re.MULTILINE), tail


def test_every_benchmark_script_runs_in_quick_mode() -> None:
    """A new benchmark cannot rot unnoticed: each script in ``benchmarks/`` (not the ``_``
    helpers it imports) has a quick run here, and each quick run names a script that exists."""
    scripts = {p.name for p in (PROJECT_ROOT / "benchmarks").glob("*.py") if p.name[0] != "_"}
    assert {command[0] for command in QUICK_RUNS.values()} == scripts
    assert all("--quick" in command for command in QUICK_RUNS.values())
