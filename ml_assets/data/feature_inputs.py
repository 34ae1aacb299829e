"""What the features asset and the online snapshot hand a pipeline's function, by parameter
name: ``rows`` (a partition's rows of ``features.input``), ``history`` (the rows of its declared
earlier partitions, oldest first) and each of ``features.reads`` (the same partition of a
partitioned asset, an unpartitioned table whole)."""

import inspect
from collections.abc import Callable, Mapping, Sequence

import dagster as dg
import pandas as pd

from ml_assets.contract.dagster_terms import asset_key
from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.contract.features import HISTORY, ROWS


def parameters(function: Callable, declaration: PipelineDeclaration) -> list[str]:
    """The parameters of the pipeline's ``function``: each is ``rows``, ``history`` (only with a
    declared history of the input) or one of ``features.reads``; anything else fails the load."""
    declared = declaration.features
    names = list(inspect.signature(function).parameters)
    where = f"{declaration.name}: {function.__qualname__}"
    unknown = [name for name in names if name not in (ROWS, HISTORY, *declared.reads)]
    if unknown:
        raise ValueError(
            f"{where} takes {', '.join(unknown)}: it is handed {ROWS}, {HISTORY} and "
            f"features.reads ({', '.join(declared.reads) or 'none'}) by parameter name"
        )
    if HISTORY in names and not declared.history_partitions(
        declared.input, declaration.partitions.kind
    ):
        raise ValueError(f"{where} takes history but features.history declares none")
    return names


def read_ins(declaration: PipelineDeclaration, names: Sequence[str]) -> dict[str, dg.AssetIn]:
    """The asset inputs of the ``features.reads`` among ``names``: the same partition, or a
    whole unpartitioned table."""
    reads = declaration.features.reads
    return {name: dg.AssetIn(asset_key(declaration, name)) for name in names if name in reads}


def earlier_rows(frames: Mapping[str, pd.DataFrame], keys: Sequence[str]) -> pd.DataFrame:
    """The rows of the partitions ``keys`` that were read, oldest first, as one frame; with none
    of them, an empty frame with the columns of a partition that was read (if any)."""
    read = [frames[key] for key in keys if key in frames]
    if read:
        return pd.concat(read, ignore_index=True)
    return next(iter(frames.values())).iloc[:0] if frames else pd.DataFrame()


def arguments(
    names: Sequence[str], inputs: Mapping[str, object], partition_key: str, **given: object
) -> dict[str, object]:
    """What a function taking ``names`` is handed for ``partition_key``: the ``given`` values
    (rows, history), then each read's partition (or whole table) from the asset's ``inputs``."""
    out: dict[str, object] = {}
    for name in names:
        if name in given:
            out[name] = given[name]
        else:
            value = inputs[name]
            out[name] = value[partition_key] if isinstance(value, Mapping) else value
    return out
