"""What every source kind's ingest shares: the schema drift a load is judged by."""

import pandas as pd
import pytest

from ml_assets.data.checks import CheckOutcome
from ml_assets.data.sources.ingest import drift_outcome, schema_drift

pytestmark = pytest.mark.unit

DECLARED = ["id", "day", "value"]
FRAME = pd.DataFrame(columns=["id", "day", "value", "_parse_error", "_raw_text"])


def test_a_column_beyond_the_declared_ones_and_a_changed_type_are_drift() -> None:
    wider = FRAME.assign(extra=None)
    previous = {"id": "bigint", "day": "date", "value": "double"}
    seen = {"id": "bigint", "day": "text", "value": "double", "extra": "text"}
    assert schema_drift(DECLARED, wider, previous, seen) == [
        "added extra",
        "changed day: date -> text",
    ]


def test_no_drift_on_a_first_load_the_same_schema_or_undeclared_columns() -> None:
    same = {"id": "bigint", "day": "date", "value": "double"}
    assert schema_drift(DECLARED, FRAME, None, same) == []
    assert schema_drift(DECLARED, FRAME, same, same) == []
    assert schema_drift([], FRAME.assign(extra=None), same, None) == []


@pytest.mark.parametrize(("policy", "passed"), [("warn", True), ("fail", False)])
def test_drift_passes_with_a_warning_or_fails_as_declared(policy: str, passed: bool) -> None:
    outcome = drift_outcome(CheckOutcome(True, "ok"), ["added extra"], policy)
    assert outcome.passed is passed
    assert outcome.description == f"schema drift at the source ({policy}): added extra"
    assert outcome.metadata["schema_drift"].value == ["added extra"]


def test_drift_never_passes_a_check_that_failed() -> None:
    failed = CheckOutcome(False, "missing column air_time")
    outcome = drift_outcome(failed, ["added extra"], "warn")
    assert not outcome.passed
    assert outcome.description.startswith("missing column air_time; schema drift")
