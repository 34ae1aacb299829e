"""The ``files`` kind: exports an upstream system lands in the landing zone (a local folder,
S3 or any fsspec URL), found by the landing-zone sensor (``sensors/landing_zone.py``)."""

import dagster as dg
import pandera.pandas as pa

from ml_assets.contract.declaration import FilesSource, PipelineDeclaration
from ml_assets.data.assets import raw_asset, reference_asset


def asset(
    declaration: PipelineDeclaration, source: FilesSource, schema: pa.DataFrameSchema
) -> dg.AssetsDefinition:
    """``raw_<source>`` (one landed file per partition) or the reference table ``<source>``."""
    return (raw_asset if source.partitioned else reference_asset)(declaration, source, schema)
