"""The docs site: ``mkdocs build --strict`` (no broken link, anchor or page left out of the nav)
builds it with its Reference generated from the code, and the configuration page's check
against the code fails when the page misses a variable the code reads."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mkdocs.exceptions import PluginError

from ml_assets import pipelines
from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.home import PROJECT_ROOT

pytestmark = pytest.mark.unit


def _hooks():
    """The site's mkdocs hook module (``docs/hooks/reference.py``, not a package)."""
    path = PROJECT_ROOT / "docs" / "hooks" / "reference.py"
    spec = importlib.util.spec_from_file_location("docs_reference_hooks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site as ``mkdocs build --strict`` writes it, into a temporary folder."""
    built = tmp_path_factory.mktemp("docs") / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(built)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return built


def test_the_reference_is_generated_from_the_code(site: Path) -> None:
    schema = json.loads((site / "reference" / "pipeline-declaration.schema.json").read_text())
    assert schema == json.loads(json.dumps(PipelineDeclaration.model_json_schema()))
    declaration = (site / "reference" / "declaration" / "index.html").read_text()
    assert all(f"<code>{key}</code>" in declaration for key in schema["properties"])
    cli = (site / "reference" / "cli" / "index.html").read_text()
    assert all(command in cli for command in ("publish", "serve", "rollout", "new-pipeline"))
    for name in pipelines.names():
        document = json.loads((site / "reference" / "api" / f"{name}.openapi.json").read_text())
        assert "/predict" in document["paths"], name
        assert (site / "reference" / "api" / name / "index.html").exists()
    configuration = (site / "reference" / "configuration" / "index.html").read_text()
    assert "Where each is read" in configuration


def test_the_configuration_page_must_name_every_variable_the_code_reads() -> None:
    hooks = _hooks()
    page = (PROJECT_ROOT / "docs" / "reference" / "configuration.md").read_text()
    read = hooks.variables_read()
    assert "ML_ASSETS_HOME" in read and "ML_ASSETS_<NAME>_SERVING_URL" in read
    assert hooks.documented_variables(page) == set(read)
    without = page.replace("| `ML_ASSETS_WAREHOUSE_URL` |", "| `ML_ASSETS_WAREHOUSE` |")
    with pytest.raises(PluginError, match=r"read but not documented: ML_ASSETS_WAREHOUSE_URL"):
        hooks._where_variables_are_read(without)
