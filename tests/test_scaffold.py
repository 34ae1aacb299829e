"""``ml-assets new-pipeline``: the skeleton loads, validates and materializes end to end.

Run in a copy of the project (the skeleton is written into the pipelines package, as for a
user), so the suite's own code location never sees it.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import pytest_plugins

from ml_assets.home import PROJECT_ROOT
from ml_assets.pipelines import names

pytestmark = [pytest.mark.unit, pytest.mark.slow]

COPIED = ("ml_assets", "resources", "sensors", "jobs", "serving", "pyproject.toml",
          "workspace.yaml", "tests/conftest.py",
          *(f"tests/{plugin}.py" for plugin in pytest_plugins))  # fmt: skip
"""The code, and the test configuration a user's new test runs with (with its plugins)."""


def _copy_project(root: Path) -> Path:
    """A copy of the project's code in ``root``, with the bytecode ``make install`` compiled
    (times kept, so it stays valid): with ``PYTHONDONTWRITEBYTECODE`` set, each process the
    tests start would compile the platform again."""
    for name in COPIED:
        source, target = PROJECT_ROOT / name, root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project's code, where the first test writes a new pipeline ``demo``."""
    return _copy_project(tmp_path_factory.mktemp("project"))


@pytest.fixture
def scaffolded(tmp_path: Path) -> Path:
    """A copy of the project's code of this test's own, with a new pipeline ``demo``."""
    root = _copy_project(tmp_path)
    written = _run(root, "-m", "ml_assets.cli", "new-pipeline", "demo")
    assert written.returncode == 0, written.stderr
    return root


def _run(project: Path, *command: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(project), "ML_ASSETS_HOME": str(project / ".home")}
    env.pop("DAGSTER_HOME", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, *command], cwd=project, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


KIND_MODULES = {"sql": "database.py", "rest": "events_api.py", "stream": "events_stream.py"}
"""Each source kind but files, and the module its skeleton adds (what plays its upstream)."""


def test_new_pipeline_writes_a_runnable_skeleton(project: Path) -> None:
    """A skeleton of each source kind (``demo``: files, ``demo_sql``: a PostgreSQL table,
    ``demo_rest``: a paged API it serves, ``demo_stream``: events on a RabbitMQ stream) loads
    with the platform's and materializes end to end, to a served prediction, by its own
    generated test (all run in one pytest)."""
    written = _run(project, "-m", "ml_assets.cli", "new-pipeline", "demo")
    assert written.returncode == 0, written.stderr
    package = project / "ml_assets" / "pipelines" / "demo"
    assert {p.name for p in package.iterdir() if p.is_file()} >= {
        "pipeline.yaml", "sample.csv", "publish.py", "cleaning.py", "schemas.py", "features.py",
        "assets.py", "serving.py", "definitions.py",
    }  # fmt: skip
    assert (project / "tests" / "test_demo_pipeline.py").is_file()
    again = _run(project, "-m", "ml_assets.cli", "new-pipeline", "demo")
    assert again.returncode != 0 and "exists; pass --force" in again.stderr
    for kind, module in KIND_MODULES.items():
        made = _run(
            project, "-m", "ml_assets.cli", "new-pipeline", f"demo_{kind}", "--source", kind
        )
        assert made.returncode == 0, made.stderr
        package = project / "ml_assets" / "pipelines" / f"demo_{kind}"
        assert yaml.safe_load((package / "pipeline.yaml").read_text())["sources"][0]["kind"] == kind
        assert (package / module).is_file()
    skeletons = ["demo", *(f"demo_{kind}" for kind in KIND_MODULES)]

    listed = _run(project, "-m", "ml_assets.cli", "pipelines")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == sorted(
        [*skeletons, *names()]
    )

    validated = _run(
        project, "-m", "dagster", "definitions", "validate", "-m", "ml_assets.definitions"
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr

    tests = [f"tests/test_{name}_pipeline.py" for name in skeletons]
    tested = _run(project, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests, timeout=900)
    assert tested.returncode == 0, tested.stdout[-4000:] + tested.stderr[-2000:]
    assert f"{len(skeletons)} passed" in tested.stdout


def test_an_unknown_source_kind_is_refused(project: Path) -> None:
    refused = _run(project, "-m", "ml_assets.cli", "new-pipeline", "other", "--source", "ftp")
    assert refused.returncode != 0 and "invalid choice: 'ftp'" in refused.stderr


def test_a_bad_name_is_refused(project: Path) -> None:
    refused = _run(project, "-m", "ml_assets.cli", "new-pipeline", "My-Pipeline")
    assert refused.returncode != 0
    assert "lower case letters, digits and _" in refused.stderr


def test_the_generated_test_reads_the_id_column_from_the_declaration(scaffolded: Path) -> None:
    """A user replaces the sample with theirs, whose id column has another name: the
    generated test (not touched) still passes, with a study small enough for a test."""
    package = scaffolded / "ml_assets" / "pipelines" / "demo"
    for path in package.iterdir():
        if path.is_file():
            path.write_text(path.read_text().replace("event_id", "order_id"))
    generated = scaffolded / "tests" / "test_demo_pipeline.py"
    assert "event_id" not in generated.read_text()

    tested = _run(scaffolded, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(generated),
                  timeout=600)  # fmt: skip
    assert tested.returncode == 0, tested.stdout[-4000:] + tested.stderr[-2000:]
    assert "1 passed" in tested.stdout


def test_pipelines_fails_on_a_feature_the_feature_schema_lacks(scaffolded: Path) -> None:
    """``ml-assets pipelines`` validates what a definitions load validates: a declared
    feature missing from the feature schema is named with its file and key, exit 1."""
    declaration = scaffolded / "ml_assets" / "pipelines" / "demo" / "pipeline.yaml"
    text = declaration.read_text()
    declaration.write_text(text.replace("numeric: [size,", "numeric: [weekday, size,"))

    listed = _run(scaffolded, "-m", "ml_assets.cli", "pipelines")

    assert listed.returncode == 1
    assert f"{declaration}: model.numeric: 'weekday' not among the columns" in listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == names()
