"""The monitor layer of a pipeline: served predictions, live performance, feature drift and
the rollout comparison, one module per asset, built from the pipeline's declaration."""

import dagster as dg

from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.monitoring import (
    feature_drift,
    live_performance,
    rollout_comparison,
    served_predictions,
)


def build_monitoring_assets(declaration: PipelineDeclaration) -> list[dg.AssetsDefinition]:
    return [
        module.build(declaration)
        for module in (served_predictions, live_performance, feature_drift, rollout_comparison)
    ]
