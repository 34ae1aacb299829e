"""What the benchmarks share: an isolated platform home, building data through the platform's
own jobs and resources, result checks and tables. A library, not a benchmark (hence the
leading underscore): it has no ``--quick`` mode because it measures nothing; each benchmark that
imports it runs its code in its own quick mode, and ``tests/test_benchmarks.py`` checks that
every benchmark script has one.

Every benchmark runs on a temporary ``$ML_ASSETS_HOME`` with each store at its default under
it, so nothing it writes reaches a user's home, and it builds its data with the code location's
jobs (``ml_assets.definitions.defs``, resources from ``resources.builder``), never a copy of
their wiring.
"""

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import dagster as dg

    from ml_assets.contract.declaration import PipelineDeclaration

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEFAULT_PIPELINE = "flights"
CLEARED_VARIABLES = (
    "ML_ASSETS_LANDING_URL",
    "ML_ASSETS_WAREHOUSE_URL",
    "ML_ASSETS_ONLINE_STORE_URL",
    "ML_ASSETS_OPTUNA_STORAGE",
    "MLFLOW_TRACKING_URI",
    "DAGSTER_HOME",
)
"""Variables that would point a store outside the benchmark's home."""
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
"""Run config fragment: Dagster's console logger only reports errors."""

# The platform's packages first: run as a script, ``benchmarks/`` leads ``sys.path`` and its
# ``serving.py`` would shadow the ``serving`` package.
sys.path[:] = [str(PROJECT_ROOT), *(p for p in sys.path if p != str(PROJECT_ROOT))]


def pipeline_names() -> list[str]:
    """The registered pipelines (``ml_assets.pipelines.names()``)."""
    from ml_assets import pipelines

    return pipelines.names()


def declaration(name: str) -> "PipelineDeclaration":
    """The validated declaration of pipeline ``name``."""
    from ml_assets import pipelines

    return pipelines.declaration(name)


def op(declared: "PipelineDeclaration", asset: str) -> str:
    """The op name of one of the pipeline's assets (``<prefix>__<asset>``)."""
    return f"{declared.prefix}__{asset}"


def _cleared(name: str) -> bool:
    return name in CLEARED_VARIABLES or (
        name.startswith("ML_ASSETS_") and name.endswith("_SERVING_URL")
    )


def environment(home: Path) -> dict[str, str]:
    """This process's environment on ``home``: every store at its default under it, the
    project importable, the virtual environment's scripts first on ``PATH`` (``mlflow models
    serve`` runs ``uvicorn`` from it)."""
    env = {k: v for k, v in os.environ.items() if not _cleared(k)}
    env.update(
        ML_ASSETS_HOME=str(home),
        DAGSTER_HOME=str(home / "dagster"),
        PYTHONPATH=os.pathsep.join(filter(None, (str(PROJECT_ROOT), env.get("PYTHONPATH")))),
        PATH=os.pathsep.join((str(BIN), env.get("PATH", os.defpath))),
    )
    return env


def enter_home(home: Path) -> dict[str, str]:
    """Point this process at ``home`` (before the platform reads its environment); returns
    the environment for child processes."""
    env = environment(home)
    for name in [n for n in os.environ if _cleared(n)]:
        del os.environ[name]
    os.environ.update(env)
    return env


@contextlib.contextmanager
def benchmark_home(prefix: str, keep: bool, reuse: Path | None = None) -> Iterator[Path]:
    """A fresh temporary home (removed afterwards unless ``keep``), or ``reuse`` as it is."""
    home = reuse.resolve() if reuse else Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield home
    finally:
        if keep or reuse:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


def bytecode_note() -> str | None:
    """A warning when this machine's processes compile their imports at every start: the
    start-up figures then include it (several seconds per process for Dagster and MLflow)."""
    import importlib.util

    spec = importlib.util.find_spec("dagster")
    if spec is None or spec.origin is None:
        return None
    if Path(importlib.util.cache_from_source(spec.origin)).exists():
        return None
    if not (os.environ.get("PYTHONDONTWRITEBYTECODE") or sys.flags.dont_write_bytecode):
        return None  # the first process writes the cache, later ones use it
    return (
        "note: PYTHONDONTWRITEBYTECODE is set and no bytecode is cached: every process compiles "
        "its imports at start (set PYTHONPYCACHEPREFIX and unset it for cached start-ups)"
    )


def load_average() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], **options: Any) -> str:
    """``rows`` under ``header`` as plain text (``options``: tabulate's, e.g. ``floatfmt``)."""
    from tabulate import tabulate

    return tabulate(rows, headers=header, **options)


def target(label: str, value: float, bound: float, at_most: bool, shown: str) -> str:
    """One line: a measured ratio against its target (reported, never a failure)."""
    met = value <= bound if at_most else value >= bound
    sign = "≤" if at_most else "≥"
    return f"{label}: {value:.3f} (target {sign} {shown}: {'met' if met else 'NOT met'})"


class Checks:
    """Checks that decide the exit code (parity, runs that must succeed); speed targets are
    reported elsewhere and never land here."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def require(self, ok: bool, failure: str) -> bool:
        if not ok:
            self.failures.append(failure)
        return ok

    def report(self) -> int:
        """Print the outcome; the process's exit code."""
        if not self.failures:
            print("checks: all passed")
            return 0
        for failure in self.failures:
            print(f"CHECK FAILED: {failure}", file=sys.stderr)
        print(f"checks: {len(self.failures)} FAILED")
        return 1


def partition_keys(name: str, first: str, last: str) -> list[str]:
    """The partition keys of pipeline ``name`` in [first, last]."""
    from ml_assets import pipelines
    from ml_assets.contract.dagster_terms import partitions_definition

    keys = partitions_definition(pipelines.declaration(name).partitions).get_partition_keys()
    return [key for key in keys if first <= key <= last]


def run_job(
    job: str,
    instance: "dg.DagsterInstance",
    run_config: Mapping[str, Any] | None = None,
    keys: Sequence[str] | None = None,
    asset_selection: Sequence["dg.AssetKey"] | None = None,
) -> "dg.ExecuteInProcessResult":
    """One run of the code location's job ``job`` (in process), over the partition range of
    ``keys`` if given; raises if it fails."""
    from ml_assets.definitions import defs

    tags = (
        {
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        }
        if keys
        else None
    )
    began = time.perf_counter()
    result = defs.resolve_job_def(job).execute_in_process(
        run_config={**QUIET, **(run_config or {})},
        instance=instance,
        tags=tags,
        asset_selection=asset_selection,
        raise_on_error=False,
    )
    if not result.success:
        failed = {
            event.step_key: event.step_failure_data.error.message.strip()
            if event.step_failure_data.error
            else "?"
            for event in result.get_step_failure_events()
        }
        raise RuntimeError(f"job {job} failed: {failed}")
    steps = ", ".join(f"{step} {seconds:.1f}" for step, seconds in step_seconds(result).items())
    print(f"  {job}: {time.perf_counter() - began:.1f} s ({steps})", flush=True)
    return result


def step_seconds(result: "dg.ExecuteInProcessResult") -> dict[str, float]:
    """Each successful step's duration in seconds, by step key without the pipeline prefix."""
    return {
        event.step_key.split("__", 1)[-1]: event.event_specific_data.duration_ms / 1000
        for event in result.get_step_success_events()
    }


def build_data(name: str, keys: Sequence[str], instance: "dg.DagsterInstance") -> None:
    """Land ``keys`` of pipeline ``name`` with its publisher, then materialize them through the
    pipeline's jobs: the reference tables (if it has any) and ``<prefix>_data`` over the range
    as one run (raw, clean, features and, if declared, the online snapshot)."""
    from ml_assets import pipelines
    from ml_assets.definitions import defs
    from resources.landing_zone import default_landing_zone

    pipeline = pipelines.load(name)
    began = time.perf_counter()
    pipeline.publish(default_landing_zone(), keys)
    print(f"  published {len(keys)} partitions: {time.perf_counter() - began:.1f} s", flush=True)
    prefix = pipeline.declaration.prefix
    jobs = {job.name for job in defs.resolve_all_job_defs()}
    if f"{prefix}_reference_tables" in jobs:
        run_job(f"{prefix}_reference_tables", instance)
    run_job(f"{prefix}_data", instance, keys=keys)


@dataclass(frozen=True)
class Window:
    """The partitions a benchmark lands and builds, and the training set it takes from them."""

    first: str
    """First partition landed and built (the features of later ones may look back to it)."""
    last: str
    """Last partition landed and built; the training window's end."""
    window_start: str
    validation_partitions: int
    test_partitions: int
    min_train_partitions: int | None = None
    """Fewest training partitions the split accepts; None: the declared value."""

    def keys(self, pipeline: str) -> list[str]:
        return partition_keys(pipeline, self.first, self.last)

    def training_config(self) -> dict[str, Any]:
        """The ``training_set`` asset's launchpad config for this window."""
        config: dict[str, Any] = {
            "window_start": self.window_start,
            "window_end": self.last,
            "validation_partitions": self.validation_partitions,
            "test_partitions": self.test_partitions,
        }
        if self.min_train_partitions is not None:
            config["min_train_partitions"] = self.min_train_partitions
        return config


def declared_window(pipeline: str) -> Window:
    """The pipeline's declared training window, built from its first partition."""
    from ml_assets.contract.dagster_terms import partitions_definition

    declared = declaration(pipeline)
    training = declared.model.training
    return Window(
        partitions_definition(declared.partitions).get_partition_keys()[0],
        training.window_end,
        training.window_start,
        training.validation_partitions,
        training.test_partitions,
    )


def window(pipeline: str, quick: bool, windows: Mapping[str, Mapping[bool, Window]]) -> Window:
    """``windows[pipeline][quick]``, else the declared training window (small pipelines)."""
    return windows.get(pipeline, {}).get(quick) or declared_window(pipeline)
