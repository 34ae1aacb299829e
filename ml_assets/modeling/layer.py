"""What every model-layer asset of a pipeline shares: its declaration, keys and launchpad
configuration (the declared values as defaults)."""

import functools
from dataclasses import dataclass

import dagster as dg
from pydantic import BaseModel

from ml_assets.contract.dagster_terms import SectionConfig, asset_key, run_config
from ml_assets.contract.declaration import ModelDeclaration, PipelineDeclaration
from ml_assets.contract.model_format import Features, model_inputs

MODELS = "models"
CODE_VERSION = "2"
MODEL_ASSET_NAMES = (
    "training_set", "hyperparameter_study", "trained_model", "model_evaluation", "registered_model",
)  # fmt: skip
BEATS_BASELINE = "beats_baseline"
NOT_WORSE_THAN_CHAMPION = "not_worse_than_champion"
PARTITION_COLUMN = "feature_partition"
SPLIT_COLUMN = "split"


@dataclass(frozen=True)
class ModelLayer:
    """One pipeline's model layer."""

    declaration: PipelineDeclaration
    features_schema: dg.TableSchema
    """Column schema of the feature asset, shown on the training set with its extra columns."""

    @property
    def model(self) -> ModelDeclaration:
        return self.declaration.model

    @property
    def features(self) -> Features:
        return model_inputs(self.declaration)

    @property
    def features_asset(self) -> dg.AssetKey:
        return self.key(self.model.features_asset)

    def key(self, name: str) -> dg.AssetKey:
        return asset_key(self.declaration, name)

    def common(self) -> dict:
        """What every model-layer asset declares."""
        return {
            "group_name": f"{self.declaration.prefix}_{MODELS}",
            "code_version": CODE_VERSION,
            "owners": self.declaration.owners,
        }

    def _config(self, declared: BaseModel, kind: str) -> type[SectionConfig]:
        return run_config(declared, f"{self.declaration.prefix.title().replace('_', '')}{kind}")

    @functools.cached_property
    def training_config(self) -> type[SectionConfig]:
        return self._config(self.model.training, "Training")

    @functools.cached_property
    def tuning_config(self) -> type[SectionConfig]:
        return self._config(self.model.tuning, "Tuning")

    @functools.cached_property
    def acceptance_config(self) -> type[SectionConfig]:
        return self._config(self.model.acceptance, "Acceptance")
