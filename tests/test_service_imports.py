"""The prediction services run without Dagster or the platform's asset code: ``ml-assets serve``
builds a pipeline's service, up to where it would load the model, with neither imported (the
import contracts in ``pyproject.toml`` hold the code to it; this holds the process to it, the
pipeline's serving hooks and feature code included)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ml_assets import pipelines
from ml_assets.home import (
    ONLINE_STORE_ENV_VAR,
    PREDICTION_LOG_ENV_VAR,
    TRACKING_URI_ENV_VAR,
    WAREHOUSE_ENV_VAR,
)
from serving.settings import PROFILE_ENV_VAR

pytestmark = pytest.mark.unit

NOT_IN_A_SERVICE = (
    "dagster", "ml_assets.modeling", "ml_assets.deployment", "ml_assets.monitoring",
    "ml_assets.platform", "ml_assets.definitions", "sensors", "jobs",
)  # fmt: skip
"""Packages a service never imports (Dagster's integrations import Dagster); the feature code a
pipeline's serving hooks use may live beside the data layer's assets."""
SERVE = """
import json, sys
import uvicorn

def run(app, **options):
    packages = json.loads(sys.argv[2])
    loaded = sorted(m for m in sys.modules for p in packages if m == p or m.startswith(p + "."))
    print(json.dumps({"title": app.title, "loaded": loaded}))

uvicorn.run = run  # the app as ml-assets serve builds it, never started
from ml_assets.cli import main
main(["serve", sys.argv[1], "--port", "1"])
"""


@pytest.mark.parametrize("pipeline", pipelines.names())
def test_a_prediction_service_runs_without_dagster(pipeline: str, tmp_path: Path) -> None:
    env = {**os.environ, "ML_ASSETS_HOME": str(tmp_path)}
    for variable in (PROFILE_ENV_VAR, TRACKING_URI_ENV_VAR, WAREHOUSE_ENV_VAR,
                     ONLINE_STORE_ENV_VAR, PREDICTION_LOG_ENV_VAR):  # fmt: skip
        env.pop(variable, None)
    served = subprocess.run(
        [sys.executable, "-c", SERVE, pipeline, json.dumps(NOT_IN_A_SERVICE)],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    built = json.loads(served.stdout.splitlines()[-1])
    model = pipelines.declaration(pipeline).model.registered_model_name
    assert built == {"title": f"{model} predictions", "loaded": []}
