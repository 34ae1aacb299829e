"""Where Optuna studies live: a journal file per study locally, a database in production."""

import os

import dagster as dg
from pydantic import Field

from ml_assets.home import ml_assets_home

OPTUNA_STORAGE_ENV_VAR = "ML_ASSETS_OPTUNA_STORAGE"


class OptunaStorage(dg.ConfigurableResource):
    """Optuna's storage: ``url`` (e.g. ``postgresql+psycopg2://…``), or journal files under
    ``journal_dir`` when it is unset."""

    url: str | None = Field(default=None, description="An Optuna storage URL.")
    journal_dir: str = Field(description="Folder of the journal files when url is unset.")

    def for_study(self, study_name: str) -> str:
        """The storage of ``study_name``: the URL, or its journal file's path."""
        return self.url or f"{self.journal_dir.rstrip('/')}/{study_name}.journal"


def default_optuna_storage() -> OptunaStorage:
    """``$ML_ASSETS_OPTUNA_STORAGE``, or journal files in the platform's home."""
    return OptunaStorage(
        url=os.environ.get(OPTUNA_STORAGE_ENV_VAR) or None,
        journal_dir=str(ml_assets_home() / "optuna"),
    )
