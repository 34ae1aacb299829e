"""The registered pipelines: each subpackage with a ``pipeline.yaml`` declaration.

A pipeline's package provides ``definitions.PIPELINE`` (a ``Pipeline``) and ``serving.HOOKS``
(its ``ServingHooks``); the serving side loads only the declaration and the hooks, never the
pipeline's asset code.
"""

import functools
import importlib
from pathlib import Path

from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.contract.loading import DECLARATION_FILE, load_declaration
from ml_assets.contract.pipeline import Pipeline, ServingHooks

PIPELINES_DIR = Path(__file__).parent


def names() -> list[str]:
    """The registered pipelines, by name."""
    return sorted(p.name for p in PIPELINES_DIR.iterdir() if (p / DECLARATION_FILE).is_file())


def declaration_path(name: str) -> Path:
    path = PIPELINES_DIR / name / DECLARATION_FILE
    if not path.is_file():
        raise LookupError(f"no pipeline {name!r}; the registered ones are {', '.join(names())}")
    return path


@functools.cache
def declaration(name: str) -> PipelineDeclaration:
    """The validated declaration of pipeline ``name``."""
    return load_declaration(declaration_path(name))


def load(name: str) -> Pipeline:
    """Pipeline ``name`` with its asset code."""
    declaration_path(name)
    return importlib.import_module(f"{__name__}.{name}.definitions").PIPELINE


def serving_hooks(name: str) -> ServingHooks:
    declaration_path(name)
    return importlib.import_module(f"{__name__}.{name}.serving").HOOKS
