"""Loading the code location: ``import ml_assets.definitions`` against bare ``import dagster`` plus
the pipelines' own imports.

Run as ``.venv/bin/python benchmarks/startup.py [--quick]`` from the project root. Every step
process, sensor tick and code server pays for loading the code location, so the platform's own
part of it must stay small: the target is a code location within 1.3 times of its peer, a
process importing Dagster and every third-party module the pipelines' packages import at their
top level (what no platform could avoid). Each side is a fresh interpreter timed from before
its first import to after its last (interpreter start-up excluded), the sides interleaved over
the rounds (10; ``--quick``: 2); the medians are compared. Checks (the exit code): every process
exits 0, and the code location loads none of the heavy libraries the platform imports where
they are used (MLflow, Optuna, scikit-learn, dlt, statsforecast, ONNX, torch) unless the
pipelines' own top-level imports do.
"""

import argparse
import ast
import json
import statistics
import subprocess
import sys

from _common import PROJECT_ROOT, Checks

HEAVY = ("mlflow", "optuna", "sklearn", "dlt", "statsforecast", "onnx", "onnxruntime", "torch")
"""Libraries imported where they are used, never by loading the code location."""
PROJECT_PACKAGES = {"ml_assets", "resources", "sensors", "jobs", "serving"}
TIMED = """
import json, sys, time
started = time.perf_counter()
for name in {modules!r}:
    __import__(name)
seconds = time.perf_counter() - started
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print(json.dumps({{"seconds": seconds, "heavy": heavy}}))
"""


def pipelines_own_imports() -> list[str]:
    """The third-party modules the pipelines' packages import at their top level."""
    found = set()
    for path in sorted((PROJECT_ROOT / "ml_assets" / "pipelines").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
    return sorted(
        name
        for name in found
        if name.split(".")[0] not in PROJECT_PACKAGES
        and name.split(".")[0] not in sys.stdlib_module_names
    )


def timed(modules: list[str]) -> dict:
    """A fresh interpreter's time to import ``modules``, and the heavy libraries it loaded."""
    code = TIMED.format(modules=modules, heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds instead of 10")
    parser.add_argument("--rounds", type=int, help="rounds of the three imports, interleaved")
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 10)
    own = pipelines_own_imports()
    sides = {
        "bare dagster": ["dagster"],
        "dagster + the pipelines' own": ["dagster", *own],
        "code location": ["ml_assets.definitions"],
    }
    checks = Checks()
    timed(["dagster", *own, "ml_assets.definitions"])  # a first process writes the bytecode
    results: dict[str, list[float]] = {side: [] for side in sides}
    heavy: dict[str, set[str]] = {side: set() for side in sides}
    for _ in range(rounds):
        for side, modules in sides.items():
            result = timed(modules)
            if checks.require("error" not in result, f"{side}: {result.get('error')}"):
                results[side].append(result["seconds"])
                heavy[side].update(result["heavy"])
    print(f"the pipelines' own top-level imports: {', '.join(own)}")
    print(f"{'import':<32}{'median s':>10}{'min s':>8}{'max s':>8}  (rounds: {rounds})")
    for side, seconds in results.items():
        if seconds:
            print(
                f"{side:<32}{statistics.median(seconds):>10.2f}"
                f"{min(seconds):>8.2f}{max(seconds):>8.2f}"
            )
    peer, location = results["dagster + the pipelines' own"], results["code location"]
    if peer and location:
        ratio = statistics.median(location) / statistics.median(peer)
        verdict = "yes" if ratio <= 1.3 else "no"
        print(f"ratio code location / (dagster + the pipelines' own): {ratio:.2f} "
              f"(target <= 1.3: {verdict})")  # fmt: skip
    extra = heavy["code location"] - heavy["dagster + the pipelines' own"]
    print(
        "heavy libraries the code location loads beyond the pipelines' own: "
        f"{', '.join(sorted(extra)) or 'none'}"
    )
    checks.require(not extra, f"loading the code location imports {sorted(extra)}")
    return checks.report()


if __name__ == "__main__":
    sys.exit(main())
