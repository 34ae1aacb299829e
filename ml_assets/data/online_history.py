"""Declared history features online: the prediction service computes a request's lags and
windows itself, from a snapshot of the recent rows, with the batch code (``time_features``).

A pipeline with declared history (``features:``) and a ``serving.snapshot_asset`` gets a
snapshot per partition of the rows its features read: the partition's own rows and its declared
history, only the columns the transforms read. A request item is a row as the features input
has it, without the target (the request fields are its columns, the time column among them); its
time features are computed over the snapshot's rows before its day, so a day of the partition
gets exactly its batch features, and so do the days after it whose windows end inside the
snapshot (``Features.nearest_days``). No Dagster here: the service imports this.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.contract.features import Features
from ml_assets.contract.pipeline import ServingHooks
from ml_assets.data.time_features import time_features, with_time_features

HISTORY_TABLE = "history"
"""The snapshot's one table: the rows read, in the features input's columns."""


def snapshot_tables(rows: pd.DataFrame, declared: Features) -> dict[str, pd.DataFrame]:
    """The snapshot of a partition whose window (declared history and own rows) is ``rows``."""
    return {HISTORY_TABLE: rows.loc[:, declared.inputs].reset_index(drop=True)}


class HistoryLookups:
    """A snapshot's rows, indexed once per reload, and the time features of request rows.

    When no declared window reads its own day (``Features.nearest_days`` ≥ 1), the features of
    every day and group the snapshot holds, and of the days after it whose windows end inside
    it, are computed once here, in one pass of the batch code: a row's own value is never read,
    so a held day's features are those of a request for it. Other days (and any day when a
    window reads its own) are computed per request over the rows before the day.
    """

    def __init__(self, history: pd.DataFrame, declared: Features) -> None:
        self.declared = declared
        self.time = declared.time.column
        self.keys = [self.time, *dict.fromkeys(b for t in declared.windows for b in t.by)]
        self.history = history.assign(**{self.time: pd.to_datetime(history[self.time])})
        self.known = self._every_day() if declared.nearest_days and len(self.history) else None

    def _every_day(self) -> pd.DataFrame:
        """The time features of each (day, group) held and of the ``nearest_days`` after, by
        day and group."""
        last = self.history[self.time].max()
        after = pd.DataFrame(
            {self.time: pd.date_range(last, periods=self.declared.nearest_days + 1)[1:]}
        )
        if len(self.keys) > 1:
            after = after.merge(self.history[self.keys[1:]].drop_duplicates(), how="cross")
        frame = pd.concat([self.history, after], ignore_index=True)
        table = time_features(frame, self.declared).set_index(self._index(frame))
        return table[~table.index.duplicated()]

    def _index(self, rows: pd.DataFrame) -> pd.Index:
        if len(self.keys) > 1:
            return pd.MultiIndex.from_frame(rows[self.keys])
        return pd.Index(rows[self.time])

    def _over_earlier_days(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The time features of ``rows``'s (day, group)s, each day's over the rows before it."""
        queries = rows[self.keys].drop_duplicates()
        computed = [
            with_time_features(day_rows, self.history[self.history[self.time] < day], self.declared)
            for day, day_rows in queries.groupby(self.time, sort=False)
        ]
        table = pd.concat(computed, ignore_index=True)
        return table.set_index(self._index(table)).loc[:, self.declared.outputs]

    def with_time_features(self, rows: pd.DataFrame) -> pd.DataFrame:
        """``rows`` (request rows) with the declared time features, each day's over the
        snapshot's rows before that day."""
        index = self._index(rows)
        if self.known is None:
            table = self._over_earlier_days(rows).reindex(index)
        else:
            table = self.known.reindex(index)
            missing = ~index.isin(self.known.index)
            if missing.any():
                earlier = self._over_earlier_days(rows[missing]).reindex(index[missing])
                table.loc[missing, :] = earlier.to_numpy()
        return pd.concat([rows, table.set_axis(rows.index)], axis=1)


def history_hooks(
    declaration: PipelineDeclaration,
    feature_columns: Callable[[pd.DataFrame], Mapping[str, np.ndarray]],
) -> ServingHooks:
    """Serving hooks of a pipeline whose features are its declared time features plus
    ``feature_columns`` of each row (row by row, the code its features asset runs too): a
    request carries the columns of a features-input row that a caller knows (the declared
    request fields), never its history."""
    declared, fields = declaration.features, declaration.serving.request_fields
    names = [f.name for f in fields]
    if declared.time is None or declared.time.column not in names:
        raise ValueError(
            f"{declaration.name}: serving.request_fields must include the time column "
            f"{declared.time.column if declared.time else '(none declared)'!r} of features.time"
        )
    dates = [f.name for f in fields if f.type == "date"]

    def lookups(tables: Mapping[str, pd.DataFrame]) -> HistoryLookups:
        return HistoryLookups(tables[HISTORY_TABLE], declared)

    def columns(history: HistoryLookups, items: Sequence[BaseModel]) -> Mapping[str, np.ndarray]:
        rows = pd.DataFrame({name: [getattr(item, name) for item in items] for name in names})
        rows[dates] = rows[dates].apply(pd.to_datetime)
        return feature_columns(history.with_time_features(rows))

    def request_items(rows: pd.DataFrame) -> list[dict[str, Any]]:
        frame = rows.loc[:, names].astype(object)
        for name in dates:
            frame[name] = pd.to_datetime(rows[name]).dt.strftime("%Y-%m-%d")
        frame = frame.where(rows[names].notna(), None)
        return [
            {k: v.item() if isinstance(v, np.generic) else v for k, v in item.items()}
            for item in frame.to_dict("records")
        ]

    return ServingHooks(columns=columns, request_items=request_items, lookups=lookups)
