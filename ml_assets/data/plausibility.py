"""Plausibility rules: values inside every range that still cannot be right.

Two kinds, declared per source (``ml_assets.contract.declaration``): ``consistent_by`` (a value
a key determines must agree with the value the key has in the accepted history, else with the
partition's own majority) and ``group_shift`` (a group whose median moves away from where it
stands among its peers, against its own history). Both judge a partition against statistics of
the earlier *accepted* partitions (the clean rows), which ``AcceptedHistory`` reads once each.
Plain functions of data frames, no Dagster.
"""

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from statistics import median
from typing import Any, NamedTuple, Protocol

import numpy as np
import pandas as pd

ROBUST_SCALE = 1.4826
"""Median absolute deviation times this estimates the standard deviation of normal data."""


class ConsistentRule(Protocol):
    key: list[str]
    tolerance: float
    relative: bool
    action: str
    history_partitions: int


class ShiftRule(Protocol):
    by: str
    max_robust_z: float
    min_scale: float
    min_rows: int
    action: str
    history_partitions: int


class PlausibilityRules(Protocol):
    """A source's declared plausibility rules (``ml_assets.contract.declaration.Source``)."""

    consistent_by: Mapping[str, ConsistentRule]
    group_shift: Mapping[str, ShiftRule]


def inconsistent(column: str) -> str:
    """The name of ``column``'s ``consistent_by`` rule, as rows are rejected or flagged."""
    return f"inconsistent:{column}"


def group_shift(column: str) -> str:
    """The name of ``column``'s ``group_shift`` rule, as rows are rejected or flagged."""
    return f"group_shift:{column}"


def flag_column(rule: str) -> str:
    """The clean table's boolean column of a flagging rule (``inconsistent_<column>``)."""
    return rule.replace(":", "_")


class Judgement(NamedTuple):
    """What one plausibility rule did to one partition."""

    rule: str
    action: str
    basis: str
    """What the partition was judged against (or why it was not judged)."""
    judged: int
    """Keys or groups judged."""
    rows: int
    """Rows rejected or flagged."""
    detail: str = ""
    """The keys or groups hit, with their values."""
    nearest: float = 0.0
    """The largest deviation of the rows or groups that passed, as a share of the rule's bar
    (1: at the bar): how close they came."""


Stats = dict[Any, float]
"""A partition's statistics of one rule: the value per key (a tuple of texts) or the median
per group (a text)."""


class Accepted(NamedTuple):
    """Statistics of the accepted partitions before one partition, oldest first."""

    partitions: tuple[str, ...] = ()
    stats: Mapping[str, tuple[Stats, ...]] = {}
    """By rule name, one mapping per partition (see ``partition_stats``)."""

    def of(self, rule: str) -> tuple[Stats, ...]:
        return self.stats.get(rule, ())


NO_HISTORY = Accepted()


def partition_stats(rules: PlausibilityRules, clean: pd.DataFrame) -> dict[str, Stats]:
    """An accepted partition's statistics by rule name: per key (its columns' texts), the lower
    median of the column (``consistent_by``); per group, the median (``group_shift``). Rows a
    rule flagged are left out of its own."""
    stats: dict[str, Stats] = {}
    for column, rule in rules.consistent_by.items():
        name = inconsistent(column)
        rows = _unflagged(clean, name)
        stats[name] = _key_medians(rows[rule.key].astype("string"), rows[column])
    for column, shift in rules.group_shift.items():
        name = group_shift(column)
        rows = _unflagged(clean, name)
        stats[name] = _group_medians(rows[shift.by], rows[column])[0]
    return stats


def _unflagged(clean: pd.DataFrame, rule: str) -> pd.DataFrame:
    flag = flag_column(rule)
    return clean[~clean[flag].astype(bool)] if flag in clean else clean


def _row_keys(keys: pd.DataFrame) -> list[tuple]:
    """Each row's key, a tuple of its key columns' values (None where missing)."""
    columns = (keys[c].to_numpy(dtype=object, na_value=None) for c in keys.columns)
    return list(zip(*columns, strict=True))


def _key_medians(keys: pd.DataFrame, value: pd.Series) -> Stats:
    """The lower median of ``value`` per key (a tuple of the key columns' texts)."""
    return _medians_by_key(_row_keys(keys), value.to_numpy(dtype="float64", na_value=np.nan))


def _medians_by_key(row_keys: list[tuple], values: np.ndarray) -> Stats:
    by_key: dict[tuple, list[float]] = {}
    for key, number in zip(row_keys, values.tolist(), strict=True):
        if number == number and None not in key:  # not NaN, no part missing
            by_key.setdefault(key, []).append(number)
    return {key: _lower_median(numbers) for key, numbers in by_key.items()}


def _lower_median(numbers: list[float]) -> float:
    return sorted(numbers)[(len(numbers) - 1) // 2]


def _group_medians(groups: pd.Series, value: pd.Series) -> tuple[Stats, dict[Any, int]]:
    """Median and count of the values present, per group (as text)."""
    known = value.notna().to_numpy() & groups.notna().to_numpy()
    values = value.to_numpy(dtype="float64", na_value=np.nan)[known]
    by_group: dict[Any, list[float]] = {}
    for group, number in zip(groups[known].astype(str).tolist(), values.tolist(), strict=True):
        by_group.setdefault(group, []).append(number)
    medians = {g: median(numbers) for g, numbers in sorted(by_group.items())}
    return medians, {g: len(numbers) for g, numbers in by_group.items()}


def judge_consistent(
    name: str, keys: pd.DataFrame, value: pd.Series, rule: ConsistentRule, history: Accepted
) -> tuple[pd.Series, Judgement]:
    """The rows of ``value`` (keyed by the text ``keys``) that disagree with their key's value:
    the lower median of the key's per-partition values in the accepted history or, for a key
    the history lacks, the lower median of its rows here (the value most of them hold)."""
    row_keys = _row_keys(keys)
    actual = value.to_numpy(dtype="float64", na_value=np.nan)
    own = _medians_by_key(row_keys, actual)
    past = history.of(name)
    pooled: dict[tuple, list[float]] = {}
    for stats in past:
        for key, number in stats.items():
            if key in own:
                pooled.setdefault(key, []).append(number)
    reference = own | {key: _lower_median(numbers) for key, numbers in pooled.items()}
    expected = np.array([reference.get(key, np.nan) for key in row_keys], dtype="float64")
    allowed = rule.tolerance * np.abs(expected) if rule.relative else rule.tolerance
    with np.errstate(invalid="ignore", divide="ignore"):
        deviation = np.abs(actual - expected)
        off = deviation > allowed
        shares = deviation / allowed
    hit = pd.Series(off, index=value.index)
    nearest = float(np.nanmax(np.where(off, np.nan, shares), initial=0.0))
    basis = (
        f"{len(pooled)} of {len(own)} keys against {len(past)} accepted partitions, "
        f"{len(own) - len(pooled)} against the partition's own rows"
    )
    shown = dict.fromkeys(
        (key, number, expected_number)
        for key, number, expected_number, bad in zip(row_keys, actual, expected, off, strict=True)
        if bad
    )
    detail = "; ".join(
        f"{'/'.join(map(str, key))}: {number:g} (expected {expected_number:g})"
        for key, number, expected_number in list(shown)[:5]
    )
    judgement = Judgement(name, rule.action, basis, len(own), int(off.sum()), detail, nearest)
    return hit, judgement


def judge_groups(
    name: str, groups: pd.Series, value: pd.Series, rule: ShiftRule, history: Accepted
) -> tuple[pd.Series, Judgement]:
    """The rows of the groups whose median shifted by more than ``rule.max_robust_z`` (see
    ``ml_assets.contract.declaration.GroupShift`` for against what)."""
    medians, counts = _group_medians(groups, value)
    medians = {g: m for g, m in medians.items() if counts[g] >= rule.min_rows}
    past = history.of(name)
    past_offsets = [_peer_offsets(stats) for stats in past]
    offsets = _peer_offsets(medians)
    scores: dict[str, float] = {}
    bases: Counter[str] = Counter()
    for group, middle in medians.items():
        relative = [o[group] for o in past_offsets if group in o]
        own = [stats[group] for stats in past if group in stats]
        if group in offsets and relative:
            scores[group] = _robust_z(offsets[group], relative, rule.min_scale)
            bases["against its history among its peers"] += 1
        elif own:
            scores[group] = _robust_z(middle, own, rule.min_scale)
            bases["against its own history"] += 1
        elif len(medians) >= 3:
            scores[group] = _robust_z(middle, list(medians.values()), rule.min_scale)
            bases["against its peers only (no history)"] += 1
    unjudged = len(medians) - len(scores)
    if unjudged:
        bases["not judged (no history, fewer than 3 groups)"] = unjudged
    shifted = sorted(g for g, z in scores.items() if z > rule.max_robust_z)
    hit = groups.astype(str).isin(shifted) & groups.notna()
    basis = "; ".join(f"{n} group(s) {how}" for how, n in bases.items()) or "no group to judge"
    detail = "; ".join(f"{g}: median {medians[g]:g}, z {scores[g]:.1f}" for g in shifted)
    passed = [z for z in scores.values() if z <= rule.max_robust_z]
    nearest = max(passed, default=0.0) / rule.max_robust_z
    judgement = Judgement(name, rule.action, basis, len(scores), int(hit.sum()), detail, nearest)
    return hit, judgement


def _peer_offsets(medians: Stats) -> Stats:
    """Each group's median minus the median of all groups' (none for a lone group): with three
    groups or more, one group that moved does not move the others' offsets."""
    if len(medians) < 2:
        return {}
    center = median(medians.values())
    return {group: median - center for group, median in medians.items()}


def _robust_z(value: float, reference: Sequence[float], min_scale: float) -> float:
    center = median(reference)
    spread = ROBUST_SCALE * median(abs(number - center) for number in reference)
    return abs(value - center) / max(spread, min_scale)


class AcceptedHistory:
    """The statistics of a source's accepted partitions, computed once each: of the partitions a
    run produces (``add``, in order) and of the stored ones before them (``load``: the stored
    clean partition, None if it was never materialized)."""

    def __init__(
        self, rules: PlausibilityRules, load: Callable[[str], pd.DataFrame | None]
    ) -> None:
        self.rules = rules
        self._load = load
        self._stats: dict[str, dict[str, pd.DataFrame] | None] = {}

    def add(self, partition_key: str, clean: pd.DataFrame | None) -> None:
        """A partition the run produced: its clean rows, None if they were not accepted."""
        self._stats[partition_key] = None if clean is None else partition_stats(self.rules, clean)

    def before(self, keys: Sequence[str]) -> Accepted:
        """The statistics of the accepted partitions among ``keys`` (oldest first)."""
        for key in keys:
            if key not in self._stats:
                stored = self._load(key)
                self._stats[key] = None if stored is None else partition_stats(self.rules, stored)
        present = [key for key in keys if self._stats[key] is not None]
        names = {name for key in present for name in self._stats[key]}  # type: ignore[union-attr]
        return Accepted(
            tuple(present),
            {name: tuple(self._stats[key][name] for key in present) for name in names},  # type: ignore[index]
        )


def stats_columns(rules: PlausibilityRules) -> list[str]:
    """The clean columns ``partition_stats`` reads (flag columns included, where they exist)."""
    needed = [
        *(c for column, rule in rules.consistent_by.items() for c in (*rule.key, column)),
        *(c for column, rule in rules.group_shift.items() for c in (rule.by, column)),
        *(flag_column(inconsistent(column)) for column in rules.consistent_by),
        *(flag_column(group_shift(column)) for column in rules.group_shift),
    ]
    return list(dict.fromkeys(needed))
