"""Data-quality checks that report per partition, with metadata a person can act on.

Pandera validates a frame lazily (every failing rule at once); the outcome carries the failing
rules, how often each failed and a sample of the failing rows. Partitioned assets compute one
outcome per partition key of the run while they produce the partitions (in bounded chunks, see
``SchemaCheck``) and report each against its own partition once the output is written, so a
year-long single-run backfill shows which days failed, and a failed blocking check stops
downstream steps.
"""

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pandas as pd
import pandera.pandas as pa
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from pandera.errors import SchemaError, SchemaErrors

from ml_assets.data.plausibility import Judgement

SAMPLE_ROWS = 5
SUMMARY_ROWS = 50
"""Most rows of the plausibility table of a run's materialization (a year judges 365 days)."""
CHUNK_ROWS = 20_000
"""Most rows Pandera validates in one call: a run's partitions are checked in chunks of about
this size (several small partitions together, a large one in slices), so the memory a check
takes does not grow with the range or the partition."""


@dataclass(frozen=True)
class CheckOutcome:
    """The verdict of one check on one partition (or one unpartitioned asset)."""

    passed: bool
    description: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR


def schema_outcome(
    schema: pa.DataFrameSchema, frame: pd.DataFrame, chunk_rows: int = CHUNK_ROWS
) -> CheckOutcome:
    """Validate ``frame`` against ``schema``; on failure, name each rule with counts and samples.

    A frame of more than ``chunk_rows`` rows is validated in slices of that many rows, its
    uniqueness rules over the whole frame; the outcome is the same as for one call.
    """
    if len(frame) <= chunk_rows:
        cases = _failure_cases(schema, frame)
    else:
        cases = _sliced_failure_cases(schema, frame, chunk_rows)
    if cases is None:
        return _conforms(schema, frame)
    # A missing or undeclared column is reported against the schema: name the column.
    about_columns = cases["check"].isin(["column_in_dataframe", "column_in_schema"])
    column = cases["column"].where(~about_columns, cases["failure_case"])
    rules = (
        cases.assign(column=column.fillna("<frame>").astype(str))
        .groupby(["column", "check"], dropna=False)
        .size()
        .rename("failures")
        .reset_index()
        .sort_values("failures", ascending=False)
    )
    row_index = pd.to_numeric(cases["index"], errors="coerce").dropna().astype(int).unique()
    sample = frame.iloc[[i for i in row_index[:SAMPLE_ROWS] if i < len(frame)]]
    return CheckOutcome(
        passed=False,
        description=f"{len(cases)} failures of {len(rules)} rule(s) of {schema.name}",
        metadata={
            "failure_count": len(cases),
            "failing_rules": dg.MetadataValue.md(rules.to_markdown(index=False)),
            "sample_failing_rows": dg.MetadataValue.md(_sample_markdown(sample)),
            "rows_checked": len(frame),
        },
    )


def _failure_cases(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> pd.DataFrame | None:
    """Pandera's failure cases of ``frame`` (one row per failing value), None if it conforms."""
    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as errors:
        return errors.failure_cases
    return None


def _sliced_failure_cases(
    schema: pa.DataFrameSchema, frame: pd.DataFrame, chunk_rows: int
) -> pd.DataFrame | None:
    """``_failure_cases`` of a large frame, validated ``chunk_rows`` rows at a time.

    A slice cannot see a duplicate in another slice, so the slices are validated without the
    uniqueness rules, which are then checked on the whole frame (as Pandera reports them:
    every copy of a repeated value). A rule about the whole frame (a missing column, a wrong
    type) fails in every slice and is counted once.
    """
    unique_columns = [name for name, column in schema.columns.items() if column.unique]
    sliced = schema.update_columns({name: {"unique": False} for name in unique_columns})
    sliced.unique = None
    found = [
        _failure_cases(sliced, frame.iloc[start : start + chunk_rows])
        for start in range(0, len(frame), chunk_rows)
    ]
    for names, check, context in [
        *(([name], "field_uniqueness", "Column") for name in unique_columns),
        *(
            [(list(schema.unique), "multiple_fields_uniqueness", "DataFrameSchema")]
            * bool(schema.unique)
        ),
    ]:
        if not set(names) <= set(frame.columns):
            continue  # the missing column is reported by the slices
        repeated = frame.duplicated(subset=names, keep=False).to_numpy()
        if repeated.any():
            rows = frame.loc[repeated, names]
            found.append(
                pd.DataFrame(
                    {
                        "schema_context": context,
                        "column": [name for name in names for _ in range(len(rows))],
                        "check": check,
                        "check_number": None,
                        "failure_case": [v for name in names for v in rows[name].tolist()],
                        "index": [i for _ in names for i in rows.index.tolist()],
                    }
                )
            )
    cases = [c for c in found if c is not None and len(c)]
    if not cases:
        return None
    merged = pd.concat(cases, ignore_index=True)
    whole_frame = merged["index"].isna()
    once = merged[whole_frame].astype(str).drop_duplicates().index
    return merged[~whole_frame | merged.index.isin(once)].reset_index(drop=True)


def _conforms(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> CheckOutcome:
    return CheckOutcome(
        passed=True,
        description=f"{len(frame)} rows conform to {schema.name}",
        metadata={"rows_checked": len(frame), "failure_count": 0},
    )


class SchemaCheck:
    """``schema_outcome`` of each partition of a run, fed the partitions as they are produced.

    Pandera's fixed cost per call dominates small frames (a year-long backfill validates 365 of
    them), so consecutive partitions with identical columns and types are validated together in
    chunks of up to ``chunk_rows`` rows (then every column rule sees every row it would see
    alone); only a chunk that fails is checked partition by partition, so a failure is always
    reported against the partitions that have it. At most one chunk of frames is held.
    """

    def __init__(self, schema: pa.DataFrameSchema, chunk_rows: int = CHUNK_ROWS) -> None:
        self.schema = schema
        self.chunk_rows = chunk_rows
        self._outcomes: dict[str, CheckOutcome] = {}
        self._pending: list[tuple[str, pd.DataFrame]] = []
        self._pending_rows = 0
        self._pending_shape: tuple | None = None

    def add(self, key: str, frame: pd.DataFrame) -> None:
        """Check ``frame``, the partition ``key``, (perhaps later, with the next ones)."""
        shape = tuple(frame.dtypes.items())
        if self._pending and (
            shape != self._pending_shape or self._pending_rows + len(frame) > self.chunk_rows
        ):
            self._flush()
        self._pending.append((key, frame))
        self._pending_rows += len(frame)
        self._pending_shape = shape
        if self._pending_rows >= self.chunk_rows:
            self._flush()

    def outcomes(self) -> dict[str, CheckOutcome]:
        """The outcome of every partition added so far, by partition key."""
        self._flush()
        return dict(self._outcomes)

    def _flush(self) -> None:
        pending, self._pending, self._pending_rows = self._pending, [], 0
        if len(pending) > 1:
            try:
                self.schema.validate(pd.concat([f for _, f in pending], ignore_index=True))
            except (SchemaError, SchemaErrors, ValueError, TypeError):
                pass
            else:
                self._outcomes.update({key: _conforms(self.schema, f) for key, f in pending})
                return
        for key, frame in pending:
            self._outcomes[key] = schema_outcome(self.schema, frame, self.chunk_rows)


def schema_outcomes(
    schema: pa.DataFrameSchema, frames: Mapping[str, pd.DataFrame]
) -> dict[str, CheckOutcome]:
    """``schema_outcome`` of every partition of ``frames`` (see ``SchemaCheck``)."""
    check = SchemaCheck(schema)
    for key, frame in frames.items():
        check.add(key, frame)
    return check.outcomes()


def row_conservation_outcome(raw_rows: int, kept_rows: int, rejected_rows: int) -> CheckOutcome:
    """Nothing is lost: every raw row is either kept or rejected with a reason."""
    metadata = {"raw_rows": raw_rows, "kept_rows": kept_rows, "rejected_rows": rejected_rows}
    if raw_rows == kept_rows + rejected_rows:
        return CheckOutcome(
            True, f"{raw_rows} raw = {kept_rows} kept + {rejected_rows} rejected", metadata
        )
    return CheckOutcome(
        False,
        f"{raw_rows} raw rows but {kept_rows} kept + {rejected_rows} rejected: "
        f"{raw_rows - kept_rows - rejected_rows} unaccounted for",
        metadata,
    )


def rejected_share_outcome(raw_rows: int, rules: pd.Series, bar: float) -> CheckOutcome:
    """A warning when more than ``bar`` of a partition's raw rows were rejected: an upstream
    degrading shows before the model sees the data. ``rules``: the rejected rows' rules."""
    share = len(rules) / raw_rows if raw_rows else 0.0
    counts = rules.value_counts()
    top = ", ".join(f"{rule} {n}" for rule, n in counts.head(3).items())
    return CheckOutcome(
        passed=share <= bar,
        description=f"{share:.2%} of {raw_rows} raw rows rejected (bar {bar:.2%})"
        + (f": {top}" if top else ""),
        metadata={**rejection_metadata(raw_rows, rules), "bar": float(bar)},
        severity=dg.AssetCheckSeverity.WARN,
    )


def whole_file_outcome(
    raw_rows: int, rules: pd.Series, share: float, min_rows: int
) -> CheckOutcome:
    """Fails when one rule rejected at least ``share`` of a partition's ``raw_rows`` (of at least
    ``min_rows``): the export changed (a column's type, format or units), not its rows.
    ``rules``: the rejected rows' rules (``rule:column`` or ``rule``)."""
    counts = rules.value_counts()
    largest = counts.iloc[0] / raw_rows if len(counts) else 0.0
    whole = counts[counts >= share * raw_rows] if raw_rows >= min_rows else counts.iloc[:0]
    failing = pd.DataFrame(
        [(*str(rule).partition(":")[::2], int(n)) for rule, n in whole.items()],
        columns=["rule", "column", "rows"],
    )
    metadata = {
        "raw_rows": raw_rows,
        "largest_rule_share": float(largest),
        "whole_file_rules": dg.MetadataValue.md(
            failing.to_markdown(index=False) if len(failing) else "(none)"
        ),
    }
    if raw_rows < min_rows:
        return CheckOutcome(
            True, f"{raw_rows} raw rows: fewer than {min_rows}, too few to tell", metadata
        )
    if failing.empty:
        most = f" (the most: {counts.index[0]}, {largest:.2%})" if len(counts) else ""
        return CheckOutcome(
            True, f"No rule rejects {share:.0%} or more of the raw rows{most}", metadata
        )
    named = "; ".join(
        f"{f'column {column}: ' if column else ''}{rule} rejected {n} of {raw_rows} raw rows"
        for rule, column, n in failing.itertuples(index=False)
    )
    return CheckOutcome(
        False, f"{named} (bar {share:.0%}): the export changed, not its rows", metadata
    )


def rejection_metadata(raw_rows: int, rules: pd.Series) -> dict[str, float | int]:
    """A partition's rejections as numbers the UI plots over partitions: the rejected share
    and the rows each rule rejected (``rejected/<rule>``)."""
    return {
        "raw_rows": raw_rows,
        "rejected_rows": len(rules),
        "rejected_share": len(rules) / raw_rows if raw_rows else 0.0,
        **{f"rejected/{rule}": int(n) for rule, n in rules.value_counts().items()},
    }


def plausibility_metadata(judgements: Sequence[Judgement]) -> dict[str, Any]:
    """What the plausibility rules did to one partition, for the rejection plots: the rows each
    rule rejected (``rejected/<rule>``, 0 included, so every rule has a point in every
    partition it judged) or flagged (``flagged/<rule>``), how close the rest came to the rule's
    bar (``nearest/<rule>``, 1: at the bar), and a table of what each was judged against."""
    if not judgements:
        return {}
    counts = {
        f"{'rejected' if j.action == 'reject' else 'flagged'}/{j.rule}": j.rows for j in judgements
    }
    nearest = {f"nearest/{j.rule}": round(j.nearest, 3) for j in judgements}
    return {**counts, **nearest, "plausibility": dg.MetadataValue.md(_judgement_table(judgements))}


def plausibility_summary(judged: Mapping[str, Sequence[Judgement]]) -> dict[str, Any]:
    """The plausibility rules over a run's partitions, for the clean materialization: per
    partition and rule, what it was judged against and what it hit."""
    rows = [(key, j) for key, judgements in sorted(judged.items()) for j in judgements]
    if not rows:
        return {}
    hits = [(key, j) for key, j in rows if j.rows]
    shown = hits[:SUMMARY_ROWS] if len(rows) > SUMMARY_ROWS else rows
    table = pd.DataFrame(
        [(key, j.rule, j.action, j.rows, j.basis, j.detail) for key, j in shown],
        columns=["partition", "rule", "action", "rows", "judged against", "hit"],
    )
    more = f"\n\n{len(rows)} judgements, {len(hits)} that hit rows" if shown is not rows else ""
    return {
        "plausibility": dg.MetadataValue.md(
            (table.to_markdown(index=False) if len(table) else "(nothing hit)") + more
        )
    }


def _judgement_table(judgements: Sequence[Judgement]) -> str:
    columns = ["rule", "action", "keys or groups judged", "rows", "nearest / bar"]
    return pd.DataFrame(
        [
            (j.rule, j.action, j.judged, j.rows, f"{j.nearest:.2f}", j.basis, j.detail)
            for j in judgements
        ],
        columns=[*columns, "judged against", "hit"],
    ).to_markdown(index=False)


def report_per_partition(
    context: dg.AssetExecutionContext,
    asset_key: dg.AssetKey,
    check_name: str,
    outcomes: Mapping[str, CheckOutcome],
) -> Iterator[dg.Output | dg.AssetCheckEvaluation]:
    """Yield one check evaluation per partition key, each recorded against its own partition.

    Each evaluation names the partition's materialization it checked (yield the asset's output
    first). Without that target, Dagster treats the result as stale, so automation conditions
    such as ``all_deps_blocking_checks_passed`` would never see the check pass.
    """
    check_key = dg.AssetCheckKey(asset_key, check_name)
    if check_key not in context.selected_asset_check_keys:
        return
    spec = next(spec for spec in context.assets_def.check_specs if spec.key == check_key)
    yield dg.Output(
        None, output_name=context.assets_def.get_output_name_for_asset_check_key(check_key)
    )
    targets = _latest_materializations(context, asset_key, list(outcomes))
    for partition_key, outcome in sorted(outcomes.items()):
        yield dg.AssetCheckEvaluation(
            asset_key=asset_key,
            check_name=check_name,
            passed=outcome.passed,
            metadata=outcome.metadata,
            description=outcome.description,
            severity=outcome.severity,
            blocking=spec.blocking,
            partition=partition_key,
            target_materialization_data=targets.get(partition_key),
        )


def _latest_materializations(
    context: dg.AssetExecutionContext, asset_key: dg.AssetKey, partition_keys: list[str]
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """Each partition's latest materialization, as ``AssetCheckResult`` records it for a step.

    One query for all partitions of the run, not one per partition as ``AssetCheckResult`` does
    (6 ms each, 20 s of a year's backfill): the step has just materialized every partition, so
    the newest ``len(partition_keys)`` records cover them all unless another run materialized
    one of them meanwhile; only such a partition is looked up on its own.
    """
    targets: dict[str, AssetCheckEvaluationTargetMaterializationData] = {}

    def add_newest(keys: list[str]) -> None:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=keys), limit=len(keys)
        ).records
        for record in records:  # newest first
            targets.setdefault(
                str(record.partition_key),
                AssetCheckEvaluationTargetMaterializationData(
                    storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
                ),
            )

    add_newest(partition_keys)
    for key in partition_keys:
        if key not in targets:
            add_newest([key])
    return targets


def _sample_markdown(sample: pd.DataFrame) -> str:
    visible = sample.loc[:, [c for c in sample.columns if not c.startswith("_")] or sample.columns]
    return visible.head(SAMPLE_ROWS).to_markdown(index=False) if len(visible) else "(no rows)"
