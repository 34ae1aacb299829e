"""Where Optuna studies live: a journal file per study locally, a database in production."""

import dagster as dg
from pydantic import Field

from ml_assets.home import ml_assets_home


class OptunaStorage(dg.ConfigurableResource):
    """Optuna's storage: ``url`` (e.g. ``postgresql+psycopg2://…``), or journal files under
    ``journal_dir`` when it is unset."""

    url: str | None = Field(default=None, description="An Optuna storage URL.")
    journal_dir: str = Field(description="Folder of the journal files when url is unset.")

    def for_study(self, study_name: str) -> str:
        """The storage of ``study_name``: the URL, or its journal file's path."""
        return self.url or f"{self.journal_dir.rstrip('/')}/{study_name}.journal"


def default_journal_dir() -> str:
    return str(ml_assets_home() / "optuna")
