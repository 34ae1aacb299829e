"""The model layer of a pipeline: training set → study → trained model → evaluation →
registry, one module per asset, built from the pipeline's declaration."""

import dagster as dg

from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.modeling import (
    hyperparameter_study,
    model_evaluation,
    registered_model,
    trained_model,
    training_set,
)
from ml_assets.modeling.layer import ModelLayer


def build_model_assets(
    declaration: PipelineDeclaration, features_schema: dg.TableSchema
) -> list[dg.AssetsDefinition]:
    """The five model-layer assets of ``declaration``'s pipeline, with their blocking checks."""
    layer = ModelLayer(declaration, features_schema)
    return [
        module.build(layer)
        for module in (
            training_set,
            hyperparameter_study,
            trained_model,
            model_evaluation,
            registered_model,
        )
    ]
