"""A pipeline: its declaration plus the few functions only it has.

The declaration (``pipeline.yaml``) is data; the pipeline's module adds what cannot be data:
its data assets (built with the generic factories of ``ml_assets.data``), the Pandera schema of
its features, its publisher, and how a prediction request becomes feature columns. Building a
``Pipeline`` checks the declaration against that code, so a feature, target or column that the
features do not have fails when the definitions load, naming the file and the key.
"""

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pydantic import BaseModel, ValidationError

from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.contract.loading import DeclarationError, format_errors

if TYPE_CHECKING:  # the services load pipelines' declarations and hooks without Dagster
    import dagster as dg


class Publish(Protocol):
    def __call__(
        self, landing: Any, partition_keys: Sequence[str], fault: str | None = None
    ) -> list[str]:
        """Land the exports of ``partition_keys`` (and the unpartitioned sources); the URIs."""


PublishToDatabases = Callable[[Callable[[str], str], Sequence[str]], int]
"""``(url_of, partition_keys)``: write the rows of ``partition_keys`` into the databases an
upstream keeps them in, each reached by ``url_of(connection name)``; the rows written."""

PublishToApi = Callable[[Callable[[str], tuple[str, str]], Sequence[str]], AbstractContextManager]
"""``(settings_of, partition_keys)``: the API an upstream serves the rows of ``partition_keys``
through, at the URL and with the bearer token ``settings_of(connection name)`` gives; it serves
while it is entered."""


PublishToStream = Callable[..., int]
"""``(url_of, partition_keys, queue=...)``: publish the rows of ``partition_keys`` as events on
the stream ``queue`` (the publisher's own by default) of the broker ``url_of`` names; how many."""


@dataclass(frozen=True)
class ServingHooks:
    """How the prediction service turns request items into the model's feature columns,
    with the same feature code the pipeline's assets use."""

    columns: Callable[[Any, Sequence[BaseModel]], Mapping[str, np.ndarray]]
    """``(lookups, items)``: feature columns of the items (``lookups`` is None without a
    snapshot)."""
    request_items: Callable[[pd.DataFrame], list[dict[str, Any]]]
    """What a caller would send for each row of the ``requests_asset``, in order. The deploy
    smoke test sends a sample of them and matches each answer to its feature row by the id the
    service answers with (``model.id_column``): items need not line up with feature rows."""
    lookups: Callable[[Mapping[str, pd.DataFrame]], Any] | None = None
    """Index a snapshot's tables for lookups, once per reload (pipelines with a snapshot)."""


@dataclass(frozen=True)
class Pipeline:
    declaration: PipelineDeclaration
    source_file: Path
    """The declaration file, named in errors."""
    data_assets: Sequence["dg.AssetsDefinition"]
    feature_schema: pa.DataFrameSchema
    """Schema of the ``features_asset``: the columns the model and the service may use."""
    publish: Publish
    faults: Sequence[str] = field(default_factory=tuple)
    """Kinds of damage ``publish`` can land, for testing bad input."""
    publish_to_databases: PublishToDatabases | None = None
    """Where the upstream keeps its data in databases (``ml-assets publish --to sql``)."""
    publish_to_api: PublishToApi | None = None
    """The API the upstream serves its data through (``ml-assets publish --to rest``)."""
    publish_to_stream: PublishToStream | None = None
    """Where the upstream sends its rows as events (``ml-assets publish --to stream``)."""

    def __post_init__(self) -> None:
        declared = self.declaration
        model = declared.model
        columns = set(self.feature_schema.columns)
        wanted = {
            "model.target": [model.target],
            "model.id_column": [model.id_column],
            "model.time_column": [model.time_column] if model.time_column else [],
            "model.categorical": model.categorical,
            "model.numeric": model.numeric,
            "model.baseline.column": [model.baseline.column] if model.baseline.column else [],
            "model.compare_with": list(model.compare_with.values()),
            "model.error_by": [model.error_by] if model.error_by else [],
            "serving.batch_columns": declared.serving.batch_columns,
        }
        for where, names in wanted.items():
            unknown = [n for n in names if n not in columns]
            if unknown:
                raise DeclarationError(
                    f"{self.source_file}: {where}: {', '.join(map(repr, unknown))} "
                    f"not among the columns of {model.features_asset} "
                    f"({self.feature_schema.name})"
                )
        keys = {tuple(key.path) for a in self.data_assets for key in a.keys}
        for where, name in (
            ("model.features_asset", model.features_asset),
            ("serving.requests_asset", declared.serving.requests_asset),
            ("serving.snapshot_asset", declared.serving.snapshot_asset),
        ):
            if name is not None and declared.asset_path(name) not in keys:
                raise DeclarationError(
                    f"{self.source_file}: {where}: the pipeline has no asset {name!r}"
                )
        self._check_features(columns)
        validate_warm_up(self.declaration, self.source_file)

    def _check_features(self, feature_columns: set[str]) -> None:
        """The ``features:`` section against the assets: its input, reads and histories are
        assets of the pipeline that the features asset reads, a history is that of a partitioned
        asset, the transforms read columns the input has and add columns the feature schema
        has."""
        declared, where = self.declaration, f"{self.source_file}: features"
        section = declared.features
        # each asset and its key, by key path
        assets = {tuple(key.path): (a, key) for a in self.data_assets for key in a.keys}
        reading, _ = assets.get(declared.asset_path(declared.model.features_asset), (None, None))
        read = {tuple(k.path) for k in reading.keys_by_input_name.values()} if reading else set()
        named = [*([section.input] if section.input else []), *section.reads, *section.history]
        for name in named:
            if declared.asset_path(name) not in assets:
                raise DeclarationError(f"{where}: {name!r} is not an asset of the pipeline")
        for name in section.history:
            if assets[declared.asset_path(name)][0].partitions_def is None:
                raise DeclarationError(
                    f"{where}.history: {name!r} is not partitioned: it has no earlier "
                    "partitions to read"
                )
        for name in named:
            if declared.asset_path(name) not in read:
                raise DeclarationError(
                    f"{where}: {declared.model.features_asset} does not read {name!r}"
                )
        missing = [n for n in section.outputs if n not in feature_columns]
        if missing:
            raise DeclarationError(
                f"{where}: the time features {', '.join(map(repr, missing))} are not among the "
                f"columns of {declared.model.features_asset} ({self.feature_schema.name})"
            )
        if section.input is None:
            return
        asset, key = assets.get(declared.asset_path(section.input), (None, None))
        source = asset.metadata_by_key.get(key, {}) if asset is not None else {}
        schema = source.get("dagster/column_schema")
        if schema is not None:
            have = {column.name for column in schema.columns}
            unknown = [n for n in section.inputs if n not in have]
            if unknown:
                raise DeclarationError(
                    f"{where}: {', '.join(map(repr, unknown))} not among the columns of "
                    f"{section.input}"
                )

    @property
    def name(self) -> str:
        return self.declaration.name


def validate_warm_up(declaration: PipelineDeclaration, source_file: Path) -> None:
    """Every warm-up item must be a valid request."""
    from ml_assets.contract.requests import parse_item, request_model

    model = request_model(declaration)
    for i, item in enumerate(declaration.serving.warm_up):
        try:
            parse_item(model, item)
        except ValidationError as error:
            raise DeclarationError(
                format_errors(source_file, error).replace("\n  ", f"\n  serving.warm_up.{i}.")
            ) from None
