"""The pipeline contract: a mistake in a declaration fails at load, naming file, key and reason."""

import copy
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from ml_assets import pipelines
from ml_assets.contract.declaration import PipelineDeclaration
from ml_assets.contract.loading import DeclarationError, load_declaration
from ml_assets.contract.pipeline import Pipeline
from ml_assets.contract.requests import request_model

FLIGHTS_FILE = pipelines.declaration_path("flights")
FLIGHTS = yaml.safe_load(FLIGHTS_FILE.read_text())


def _space(data: dict, family: str) -> dict:
    return next(s for s in data["model"]["search_space"] if s["family"] == family)


def _declare(tmp_path: Path, change: Callable[[dict], Any]) -> Path:
    data = copy.deepcopy(FLIGHTS)
    change(data)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


MISTAKES = {
    "unknown family": (
        lambda d: d["model"]["search_space"].append({"family": "xgboost"}),
        "model.search_space.3",
        "does not match any of the expected tags",
    ),
    "family for another task": (
        lambda d: d["model"]["search_space"].append({"family": "logistic_regression"}),
        "model",
        "'logistic_regression' cannot learn regression",
    ),
    "unknown parameter": (
        lambda d: _space(d, "ridge").update(beta={"type": "float", "low": 0, "high": 1}),
        "model.search_space.2.ridge.beta",
        "Extra inputs are not permitted",
    ),
    "unknown distribution": (
        lambda d: _space(d, "ridge").update(alpha={"type": "normal", "low": 0, "high": 1}),
        "model.search_space.2.ridge.alpha",
        "does not match any of the expected tags",
    ),
    "wrong type": (
        lambda d: d["model"]["tuning"].update(n_trials="many"),
        "model.tuning.n_trials",
        "valid integer",
    ),
    "low > high": (
        lambda d: _space(d, "random_forest").update(
            max_depth={"type": "int", "low": 20, "high": 6}
        ),
        "model.search_space.1.random_forest.max_depth.int",
        "low (20) is greater than high (6)",
    ),
    "log scale from zero": (
        lambda d: _space(d, "ridge").update(
            alpha={"type": "float", "low": 0, "high": 1, "log": True}
        ),
        "model.search_space.2.ridge.alpha.float",
        "log scale needs low > 0",
    ),
    "unknown task": (
        lambda d: d["model"].update(task="ranking"),
        "model.task",
        "'regression' or 'binary_classification'",
    ),
    "objective of another task": (
        lambda d: d["model"].update(objective="log_loss"),
        "model",
        "objective 'log_loss' is not one of mae, rmse",
    ),
    "target among the features": (
        lambda d: d["model"]["numeric"].append("arr_delay"),
        "model",
        "the target 'arr_delay' is also a feature",
    ),
    "missing key": (
        lambda d: d["model"].pop("target"),
        "model.target",
        "Field required",
    ),
    "misspelt key": (
        lambda d: d["model"]["tuning"].update(n_trails=3),
        "model.tuning.n_trails",
        "Extra inputs are not permitted",
    ),
    "range low > high": (
        lambda d: d["sources"][0]["ranges"].update(distance={"low": 5000, "high": 17}),
        "sources.0.ranges.distance",
        "low (5000) is greater than high (17)",
    ),
    "range of an undeclared column": (
        lambda d: d["sources"][0]["ranges"].update(speed={"low": 0, "high": 1}),
        "sources.0",
        "ranges names undeclared columns: speed",
    ),
    "request range of a column without one": (
        lambda d: d["serving"]["request_fields"][8].update(rule_of="flights.origin"),
        "<top level>",
        "distance: rule_of 'flights.origin': source 'flights' declares no range for 'origin'",
    ),
    "request code of a column without one": (
        lambda d: d["serving"]["request_fields"][3].update(rule_of="flights.air_time"),
        "<top level>",
        "source 'flights' declares no code rule for 'air_time'",
    ),
    "request rule given twice": (
        lambda d: d["serving"]["request_fields"][3].update(pattern="^[A-Z]{2}$"),
        "serving.request_fields.3",
        "give rule_of or pattern, not both",
    ),
    "code looked up in a partitioned source": (
        lambda d: d["sources"][0]["codes"]["dest"].update(reference="weather.origin"),
        "<top level>",
        "sources flights codes dest: reference 'weather.origin' is not an unpartitioned source",
    ),
    "code pattern that is not a regular expression": (
        lambda d: d["sources"][0]["codes"]["dest"].update(pattern="^[A-Z{3}$"),
        "sources.0.codes.dest",
        "pattern '^[A-Z{3}$'",
    ),
    "domain code of another form": (
        lambda d: d["sources"][0]["codes"]["origin"].update(domain=["EWR", "jfk"]),
        "sources.0.codes.origin",
        "domain codes ['jfk'] do not match the pattern",
    ),
    "code rule with no rule": (
        lambda d: d["sources"][0]["codes"].update(flight={}),
        "sources.0.codes.flight",
        "a code rule gives a pattern, a domain or a reference",
    ),
    "unknown action for an unreferenced code": (
        lambda d: d["sources"][0]["codes"]["dest"].update(unreferenced="drop"),
        "sources.0.codes.dest.unreferenced",
        "'flag' or 'reject'",
    ),
    "clock time of an undeclared column": (
        lambda d: d["sources"][0]["clock_times"].append("landing_time"),
        "sources.0",
        "clock_times names undeclared columns: landing_time",
    ),
    "rejected share above one": (
        lambda d: d["sources"][0].update(max_rejected_share=5),
        "sources.0.max_rejected_share",
        "less than or equal to 1",
    ),
    "negative min_rows": (
        lambda d: d["sources"][0].update(min_rows=-1),
        "sources.0.min_rows",
        "greater than or equal to 0",
    ),
    "whole-file share of nothing": (
        lambda d: d["sources"][0].update(whole_file={"share": 0}),
        "sources.0.whole_file.share",
        "greater than 0",
    ),
    "whole-file rule with an unknown field": (
        lambda d: d["sources"][0].update(whole_file={"rows": 5}),
        "sources.0.whole_file.rows",
        "Extra inputs are not permitted",
    ),
    "integer id of an undeclared column": (
        lambda d: d["sources"][0].update(integer_ids=["flight_no"]),
        "sources.0",
        "integer_ids names undeclared columns: flight_no",
    ),
    "values of no length": (
        lambda d: d["sources"][0].update(max_length=0),
        "sources.0.max_length",
        "greater than or equal to 1",
    ),
    "monthly partitions mid-month": (
        lambda d: d["partitions"].update(kind="monthly", start="2013-01-15"),
        "partitions",
        "monthly partitions start and end on the first of a month",
    ),
    "unknown time zone": (
        lambda d: d["partitions"].update(timezone="Mars/Olympus"),
        "partitions",
        "unknown time zone 'Mars/Olympus'",
    ),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_mistake_fails_at_load_with_file_key_and_reason(tmp_path: Path, mistake: str) -> None:
    change, where, reason = MISTAKES[mistake]
    path = _declare(tmp_path, change)

    with pytest.raises(DeclarationError) as error:
        load_declaration(path)

    message = str(error.value)
    assert message.startswith(f"{path}: invalid pipeline declaration")
    assert f"  {where}: " in message
    assert reason in message


def test_unreadable_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text("model: [unclosed")
    with pytest.raises(DeclarationError, match=f"^{path}: cannot be read as YAML"):
        load_declaration(path)


def _pipeline_with(tmp_path: Path, change: Callable[[dict], Any]) -> None:
    """Build the flights ``Pipeline`` around a changed declaration (checked against its code)."""
    real = pipelines.load("flights")
    path = _declare(tmp_path, change)
    Pipeline(
        declaration=load_declaration(path),
        source_file=path,
        data_assets=real.data_assets,
        feature_schema=real.feature_schema,
        publish=real.publish,
        faults=real.faults,
    )


@pytest.mark.parametrize(
    ("change", "where", "name"),
    [
        (lambda d: d["model"].update(target="arrival_delay"), "model.target", "arrival_delay"),
        (lambda d: d["model"]["numeric"].append("wind_chill"), "model.numeric", "wind_chill"),
        (lambda d: d["model"]["categorical"].append("pilot"), "model.categorical", "pilot"),
        (lambda d: d["model"].update(id_column="row"), "model.id_column", "row"),
        (
            lambda d: d["model"]["baseline"].update(column="route_mean"),
            "model.baseline.column",
            "route_mean",
        ),
        (lambda d: d["serving"].update(batch_columns=["seat"]), "serving.batch_columns", "seat"),
        (
            lambda d: d["model"].update(features_asset="features"),
            "model.features_asset",
            "features",
        ),
    ],
)
def test_columns_the_features_lack_fail_at_load(
    tmp_path: Path, change: Callable[[dict], Any], where: str, name: str
) -> None:
    with pytest.raises(DeclarationError) as error:
        _pipeline_with(tmp_path, change)
    assert str(error.value).startswith(f"{tmp_path / 'pipeline.yaml'}: {where}: ")
    assert repr(name) in str(error.value)


def test_a_warm_up_item_the_request_model_refuses_fails_at_load(tmp_path: Path) -> None:
    with pytest.raises(DeclarationError) as error:
        _pipeline_with(tmp_path, lambda d: d["serving"]["warm_up"][0].update(sched_dep_time=975))
    assert "serving.warm_up.0.sched_dep_time: Value error, a clock time is HHMM" in str(error.value)


@pytest.mark.parametrize("name", pipelines.names())
def test_every_registered_declaration_is_valid(name: str) -> None:
    declared = pipelines.declaration(name)
    assert isinstance(declared, PipelineDeclaration)
    assert pipelines.load(name).declaration == declared


SHARED = {
    # field: a value the service and the cleaner both refuse, and the cleaner's rule for it
    "distance": (6000, "out_of_range:distance"),
    "flight": (10000, "out_of_range:flight"),
    "sched_dep_time": (2360, "out_of_range:sched_dep_time"),
    "carrier": ("A!", "malformed_code:carrier"),
    "origin": ("BOS", "unknown_code:origin"),
    "dest": ("Lax", "malformed_code:dest"),
    "tailnum": ("N-123", "malformed_code:tailnum"),
}


@pytest.mark.parametrize("field", sorted(SHARED))
def test_the_service_and_the_cleaner_refuse_the_same_values(field: str) -> None:
    """One source of truth: a request field with ``rule_of`` takes the cleaner's declared rule
    of that column, so a value the batch path rejects is one the service refuses."""
    from ml_assets.pipelines.flights.cleaning import clean_flights
    from ml_assets.pipelines.flights.publish import reference_tables, source_table

    value, rule = SHARED[field]
    declared = pipelines.declaration("flights")
    model = request_model(declared)
    with pytest.raises(ValueError, match=field):
        model.model_validate({**declared.serving.warm_up[0], field: value})

    row = source_table("flights").iloc[[0]].assign(**{field: str(value)})
    raw = row.astype("string").assign(_parse_error=pd.NA, _raw_text=pd.NA)
    rejected = clean_flights(raw, date(2013, 1, 1), reference_tables()).rejected
    assert rejected["rejection_rule"].tolist() == [rule]


def test_launchpad_overrides_are_the_declared_models(tmp_path: Path) -> None:
    """An override is the declared Config class with other values, validated the same way."""
    from ml_assets.contract.overrides import declared_defaults

    declared = pipelines.declaration("flights").model.tuning
    config = declared_defaults(declared, "FlightsTuning")
    assert config().n_trials == declared.n_trials
    assert config(n_trials=3).workers == declared.workers
    assert isinstance(config(), type(declared))
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        config(n_trials=0)
