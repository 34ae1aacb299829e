"""Small JSON documents for assets whose real payload lives elsewhere (MLflow runs, studies).

The model layer hands Dagster a handle (ids, URIs, metrics) while MLflow and Optuna keep the
model and the study; the handle is stored as ``<base>/<asset key path>.json``.
"""

import json

import dagster as dg
from upath import UPath

from resources.paths import read_bytes, to_upath, write_bytes_atomically


class _JsonIOManager(dg.UPathIOManager):
    extension = ".json"

    def dump_to_path(self, context: dg.OutputContext, obj: dict, path: UPath) -> None:
        write_bytes_atomically(
            path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
        )

    def load_from_path(self, context: dg.InputContext, path: UPath) -> dict:
        return json.loads(read_bytes(path))


class JsonIOManager(dg.ConfigurableIOManagerFactory):
    """Stores JSON-serialisable handles under ``base_url``: a local directory or ``s3://...``."""

    base_url: str

    def create_io_manager(self, context: dg.InitResourceContext) -> dg.UPathIOManager:
        return _JsonIOManager(base_path=to_upath(self.base_url))
