"""Rolling (time-series) cross-validation folds over whole partitions.

A fold's cutoff is a point in time: the fold trains on partitions before it and is scored on
the partitions of its window after it, a gap of partitions between, so no fold ever sees its
window's future. Cutoffs step back one window at a time from the end, so windows do not
overlap and the last one ends with the last partition.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd

FOLD_PREFIX = "fold_"
"""Study data marks each fold's rows in a column ``fold_<n>``: ``train``, ``validation`` or
missing (not in that fold)."""
SPLIT = "split"
"""Without folds, the study data's one window: the training set's split column."""


@dataclass(frozen=True)
class Fold:
    train: tuple[str, ...]
    """Partition keys the fold trains on, in time order."""
    validation: tuple[str, ...]
    """Partition keys it is scored on (its window), after ``train`` and the gap."""


def rolling_folds(
    partitions: Sequence[str],
    folds: int,
    horizon: int,
    gap: int = 0,
    window: Literal["expanding", "sliding"] = "expanding",
    train_partitions: int = 1,
) -> list[Fold]:
    """``folds`` folds over the sorted ``partitions``, oldest first: each scored on
    ``horizon`` partitions after ``gap`` partitions, training on all partitions before the gap
    (``expanding``, at least ``train_partitions``) or on the last ``train_partitions``
    (``sliding``)."""
    keys = sorted(partitions)
    needed = train_partitions + gap + folds * horizon
    if len(keys) < needed:
        raise ValueError(
            f"{len(keys)} partitions cannot hold {folds} folds of {horizon} partitions after "
            f"{train_partitions} training partitions" + (f" and a gap of {gap}" if gap else "")
        )
    result = []
    for k in range(folds):
        end = len(keys) - (folds - 1 - k) * horizon
        train_end = end - horizon - gap
        train_start = 0 if window == "expanding" else train_end - train_partitions
        result.append(Fold(tuple(keys[train_start:train_end]), tuple(keys[end - horizon : end])))
    return result


def fold_columns(partition: pd.Series, folds: Sequence[Fold]) -> pd.DataFrame:
    """One column per fold (``fold_<n>``) labelling the rows of ``partition`` (their partition
    keys) ``train`` or ``validation`` in that fold, missing otherwise."""
    columns = {}
    for number, fold in enumerate(folds):
        labels = pd.Series(pd.NA, index=partition.index, dtype="string")
        labels[partition.isin(fold.train)] = "train"
        labels[partition.isin(fold.validation)] = "validation"
        columns[f"{FOLD_PREFIX}{number}"] = labels
    return pd.DataFrame(columns)


def windows(data: pd.DataFrame) -> list[str]:
    """The columns of study ``data`` that each mark one scored window: its folds, or else its
    split."""
    return [c for c in data.columns if c.startswith(FOLD_PREFIX)] or [SPLIT]
