"""The code location loads, and every asset carries what the UI and the daemons rely on."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from ml_assets import pipelines
from ml_assets.definitions import defs
from ml_assets.home import PROJECT_ROOT

pytestmark = pytest.mark.unit

LAYERS = ("ingest", "clean", "features", "models", "deploy", "monitor")
PIPELINES = pipelines.names()
SNAPSHOTS = {pipelines.declaration(n).serving.snapshot_asset for n in pipelines.names()}
NOT_TABLES = {"hyperparameter_study", "trained_model", "model_evaluation", "registered_model",
              "deployed_endpoint", "rollout_comparison", *SNAPSHOTS}  # fmt: skip
"""JSON handles to MLflow, Optuna and the service, the online snapshots (table sets), and the
rollout comparison (a decision with its figures)."""
TABLES = [s for s in sorted(defs.resolve_all_asset_specs(), key=lambda s: s.key.to_user_string())
          if s.key.path[-1] not in NOT_TABLES]  # fmt: skip
"""Assets stored as one table per partition, which must declare their columns."""
HEAVY_MODULES = ("mlflow", "optuna", "sklearn")
"""Imported inside the functions that need them: step processes re-import the code location."""

SPECS = sorted(defs.resolve_all_asset_specs(), key=lambda spec: spec.key.to_user_string())
GRAPH = defs.resolve_asset_graph()


def spec_id(spec: dg.AssetSpec) -> str:
    return spec.key.to_user_string()


def test_definitions_are_loadable():
    """What ``dagster definitions validate`` checks, in process: resources, jobs, sensors."""
    dg.Definitions.validate_loadable(defs)
    assert len(SPECS) >= 10


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_asset_is_documented_and_owned(spec: dg.AssetSpec):
    """code_version (for laziness), owners, kinds, a description and a layer's group."""
    assert spec.code_version
    assert spec.owners
    assert spec.kinds
    assert spec.description and len(spec.description) > 20
    assert spec.group_name in {f"{spec.key.path[0]}_{layer}" for layer in LAYERS}


@pytest.mark.parametrize("spec", TABLES, ids=spec_id)
def test_asset_declares_its_columns(spec: dg.AssetSpec):
    """``dagster/column_schema`` lists every column with a description a person can read."""
    schema = spec.metadata.get("dagster/column_schema")
    assert isinstance(schema, dg.TableSchema)
    assert schema.columns
    undocumented = [c.name for c in schema.columns if not (c.description or "").strip()]
    assert undocumented == []
    names = [c.name for c in schema.columns]
    assert len(names) == len(set(names))


def test_a_factory_built_asset_links_to_the_pipelines_own_code():
    """Assets built by the platform's factories (every clean and rejected asset, generic
    features) point the UI at the pipeline's own function behind them, not at the factory."""
    linked = {
        spec.key: spec.metadata["dagster/code_references"].code_references
        for spec in SPECS
        if "dagster/code_references" in spec.metadata
    }
    clean = {spec.key for spec in SPECS if spec.key.path[-1].endswith(("_clean", "_rejected"))}
    assert clean and clean <= set(linked), clean - set(linked)
    for key, [reference] in linked.items():
        source = Path(reference.file_path)
        package = PROJECT_ROOT / "ml_assets" / "pipelines" / key.path[0]
        assert source.is_relative_to(package), f"{key.to_user_string()}: {source}"
        line = source.read_text().splitlines()[reference.line_number - 1]
        assert line.startswith(f"def {reference.label.rsplit('.', 1)[-1]}("), line


@pytest.mark.parametrize(
    "spec", [s for s in SPECS if GRAPH.get(s.key).partitions_def is not None], ids=spec_id
)
def test_partitioned_asset_backfills_in_a_single_run(spec: dg.AssetSpec):
    """A year-long backfill is one run per asset, not 365 process launches."""
    assert GRAPH.get(spec.key).backfill_policy == dg.BackfillPolicy.single_run()


def test_partitioned_checks_share_their_asset_partitions():
    """Each check of a partitioned asset reports per partition of that asset."""
    for check_key in GRAPH.asset_check_keys:
        asset_partitions = GRAPH.get(check_key.asset_key).partitions_def
        assert GRAPH.get(check_key).partitions_def == asset_partitions, check_key


def test_every_asset_is_refreshed_by_a_sensor_or_automation():
    """Landed files drive the ingest layer (and, in the same run, the data layers they alone
    determine), the prediction log drives ``served_predictions``; automation conditions drive
    everything else downstream of ingest."""
    by_sensor = set().union(
        *(
            defs.resolve_sensor_def(f"{name}_{kind}_sensor").asset_selection.resolve(GRAPH)
            for name in PIPELINES
            for kind in ("landing_zone", "prediction_log")
        )
    )
    automated = {spec.key for spec in SPECS if spec.automation_condition is not None}
    assert by_sensor | automated == {spec.key for spec in SPECS}
    only_by_sensor = [spec for spec in SPECS if spec.key in by_sensor - automated]
    ingest = {f"{name}_ingest" for name in PIPELINES}
    assert {s.key.to_user_string() for s in only_by_sensor if s.group_name not in ingest} == {
        f"{name}/served_predictions" for name in PIPELINES
    }
    assert ingest <= {s.group_name for s in only_by_sensor}


def test_dagster_cli_validates_the_workspace(home: Path):
    """``dagster definitions validate -w workspace.yaml`` exits 0 on a fresh home."""
    dagster_home = Path(os.environ["DAGSTER_HOME"])
    dagster_home.mkdir(parents=True, exist_ok=True)
    dagster = str(Path(sys.executable).parent / "dagster")
    result = subprocess.run(
        [dagster, "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stdout + result.stderr


def test_code_location_import_stays_light(home: Path):
    """Importing the code location loads none of the ML libraries (measured in a new process)."""
    code = (
        "import json, sys\n"
        "import ml_assets.definitions\n"
        f"heavy = {HEAVY_MODULES!r}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


FEATURE_CODE = ("ml_assets.data", "ml_assets.data.time_features", "ml_assets.data.online_history")
"""Modules of the data layer that the service may import: pure feature code, no Dagster."""


def test_the_service_imports_no_asset_code(home: Path):
    """``serving/`` depends on declarations, feature code and models, never on asset code; the
    data layer's feature code (declared time features, their online history) is feature code."""
    code = (
        "import json, sys\n"
        "import serving.app, serving.spec, serving.predictors\n"
        "from ml_assets import pipelines\n"
        "from serving.spec import served_model\n"
        "for name in pipelines.names():\n"
        "    served_model(pipelines.declaration(name), pipelines.serving_hooks(name))\n"
        "ours = [m for m in sys.modules if m.split('.')[0] in ('ml_assets', 'resources', 'jobs')]\n"
        f"features = {FEATURE_CODE!r}\n"
        "asset_code = [m for m in ours if m not in features and (\n"
        "              m.endswith(('.assets', '.definitions', '.platform'))\n"
        "              or m.startswith(('ml_assets.modeling.training_set', 'ml_assets.data')))]\n"
        "print(json.dumps(sorted(asset_code)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
