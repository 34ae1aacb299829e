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
from typing import NamedTuple, Protocol

import numpy as np
import pandas as pd

ROBUST_SCALE = 1.4826
"""Median absolute deviation times this estimates the standard deviation of normal data."""
VALUE, MEDIAN, GROUP = "value", "median", "group"


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
    """The largest deviation of the partition as a share of the rule's bar (1: at the bar):
    how close the rows that passed came."""


class Accepted(NamedTuple):
    """Statistics of the accepted partitions before one partition, oldest first."""

    partitions: tuple[str, ...] = ()
    stats: Mapping[str, tuple[pd.DataFrame, ...]] = {}
    """By rule name, one frame per partition (see ``partition_stats``)."""

    def of(self, rule: str) -> tuple[pd.DataFrame, ...]:
        return self.stats.get(rule, ())


NO_HISTORY = Accepted()


def partition_stats(rules: PlausibilityRules, clean: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """An accepted partition's statistics by rule name: per key, the lower median of the
    column (``consistent_by``: key columns as text and ``value``); per group, the median
    (``group_shift``: ``group`` and ``median``). Rows a rule flagged are left out of its own."""
    stats = {}
    for column, rule in rules.consistent_by.items():
        name = inconsistent(column)
        rows = _unflagged(clean, name)
        keys = rows[rule.key].astype("string")
        stats[name] = _key_medians(keys, rows[column].astype("float64"), rule.key)
    for column, shift in rules.group_shift.items():
        name = group_shift(column)
        rows = _unflagged(clean, name)
        medians, _ = _group_medians(rows[shift.by].astype("string"), rows[column])
        stats[name] = medians.rename(MEDIAN).rename_axis(GROUP).reset_index()
    return stats


def _unflagged(clean: pd.DataFrame, rule: str) -> pd.DataFrame:
    flag = flag_column(rule)
    return clean[~clean[flag].astype(bool)] if flag in clean else clean


def _key_medians(keys: pd.DataFrame, value: pd.Series, key: Sequence[str]) -> pd.DataFrame:
    known = value.notna().to_numpy() & keys.notna().all(axis=1).to_numpy()
    data = keys[known].assign(**{VALUE: value[known]})
    medians = data.groupby(list(key), sort=False)[VALUE].quantile(0.5, interpolation="lower")
    return medians.reset_index()


def _group_medians(groups: pd.Series, value: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Median and count of the values present, per group."""
    known = value.notna() & groups.notna()
    by = value[known].astype("float64").groupby(groups[known].astype(str), sort=True)
    return by.median(), by.size()


def judge_consistent(
    name: str, keys: pd.DataFrame, value: pd.Series, rule: ConsistentRule, history: Accepted
) -> tuple[pd.Series, Judgement]:
    """The rows of ``value`` (keyed by the text ``keys``) that disagree with their key's value:
    the lower median of the key's per-partition values in the accepted history or, for a key
    the history lacks, the lower median of its rows here (the value most of them hold)."""
    own = _key_medians(keys, value, rule.key).set_index(rule.key)[VALUE]
    past = history.of(name)
    reference = own
    from_history = 0
    if past:
        pooled = pd.concat(past, ignore_index=True).astype({c: "string" for c in rule.key})
        earlier = pooled.groupby(rule.key, sort=False)[VALUE].quantile(0.5, interpolation="lower")
        earlier = earlier.reindex(own.index)
        from_history = int(earlier.notna().sum())
        reference = earlier.fillna(own)
    index = pd.MultiIndex.from_frame(keys) if len(rule.key) > 1 else pd.Index(keys[rule.key[0]])
    expected = reference.reindex(index).to_numpy(dtype="float64", na_value=np.nan)
    actual = value.to_numpy(dtype="float64", na_value=np.nan)
    allowed = rule.tolerance * np.abs(expected) if rule.relative else rule.tolerance
    with np.errstate(invalid="ignore"):
        off = np.abs(actual - expected) > allowed
    hit = pd.Series(off, index=value.index)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.abs(actual - expected) / allowed
    nearest = float(np.nanmax(shares, initial=0.0))
    basis = (
        f"{from_history} of {len(own)} keys against {len(past)} accepted partitions, "
        f"{len(own) - from_history} against the partition's own rows"
    )
    shown = (
        keys[hit].assign(**{VALUE: value[hit], "expected": expected[off]}).drop_duplicates().head(5)
    )
    detail = "; ".join(
        f"{'/'.join(map(str, row[:-2]))}: {row[-2]:g} (expected {row[-1]:g})"
        for row in shown.itertuples(index=False)
    )
    judgement = Judgement(name, rule.action, basis, len(own), int(off.sum()), detail, nearest)
    return hit, judgement


def judge_groups(
    name: str, groups: pd.Series, value: pd.Series, rule: ShiftRule, history: Accepted
) -> tuple[pd.Series, Judgement]:
    """The rows of the groups whose median shifted by more than ``rule.max_robust_z`` (see
    ``ml_assets.contract.declaration.GroupShift`` for against what)."""
    medians, counts = _group_medians(groups, value)
    medians = medians[counts >= rule.min_rows]
    past = [frame.set_index(GROUP)[MEDIAN] for frame in history.of(name)]
    past_offsets = [_peer_offsets(m) for m in past]
    offsets = _peer_offsets(medians)
    scores: dict[str, float] = {}
    bases: Counter[str] = Counter()
    for group, median in medians.items():
        relative = [o[group] for o in past_offsets if not np.isnan(o.get(group, np.nan))]
        own = [m[group] for m in past if group in m.index]
        if len(medians) > 1 and relative:
            scores[group] = _robust_z(offsets[group], relative, rule.min_scale)
            bases["against its history among its peers"] += 1
        elif own:
            scores[group] = _robust_z(median, own, rule.min_scale)
            bases["against its own history"] += 1
        elif len(medians) >= 3:
            scores[group] = _robust_z(median, list(medians), rule.min_scale)
            bases["against its peers only (no history)"] += 1
    unjudged = len(medians) - len(scores)
    if unjudged:
        bases["not judged (no history, fewer than 3 groups)"] = unjudged
    shifted = sorted(g for g, z in scores.items() if z > rule.max_robust_z)
    hit = groups.astype(str).isin(shifted) & groups.notna()
    basis = "; ".join(f"{n} group(s) {how}" for how, n in bases.items()) or "no group to judge"
    detail = "; ".join(f"{g}: median {medians[g]:g}, z {scores[g]:.1f}" for g in shifted)
    nearest = max(scores.values(), default=0.0) / rule.max_robust_z
    judgement = Judgement(name, rule.action, basis, len(scores), int(hit.sum()), detail, nearest)
    return hit, judgement


def _peer_offsets(medians: pd.Series) -> pd.Series:
    """Each group's median minus the median of all groups' (NaN for a lone group): with three
    groups or more, one group that moved does not move the others' offsets."""
    if len(medians) < 2:
        return pd.Series(np.nan, index=medians.index, dtype="float64")
    return (medians - float(np.median(medians.to_numpy(dtype="float64")))).astype("float64")


def _robust_z(value: float, reference: Sequence[float], min_scale: float) -> float:
    center = float(np.median(reference))
    spread = ROBUST_SCALE * float(np.median(np.abs(np.asarray(reference) - center)))
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

    def add(self, partition_key: str, clean: pd.DataFrame) -> None:
        self._stats[partition_key] = partition_stats(self.rules, clean)

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
