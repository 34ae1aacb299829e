"""The code location: the platform's shared resources plus every registered pipeline."""

from ml_assets import pipelines
from ml_assets.platform import code_location

defs = code_location([pipelines.load(name) for name in pipelines.names()])
