"""The pipeline contract: a mistake in a declaration fails at load, naming file, key and reason."""

import copy
import functools
import math
import re
from collections.abc import Callable
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from source_worlds import REST_WEATHER

from ml_assets import pipelines
from ml_assets.contract.declaration import (
    CrossValidation,
    PipelineDeclaration,
    RequestField,
    Training,
    Tuning,
)
from ml_assets.contract.loading import DeclarationError, load_declaration
from ml_assets.contract.pipeline import Pipeline
from ml_assets.contract.requests import EARLIEST_DATE, LATEST_DATE, parse_item, request_model

pytestmark = pytest.mark.unit

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
    "consistent value of an undeclared column": (
        lambda d: d["sources"][0]["consistent_by"].update(
            range_miles={"key": ["origin", "dest"], "tolerance": 0.01}
        ),
        "sources.0",
        "consistent_by names undeclared columns: range_miles",
    ),
    "consistency key of an undeclared column": (
        lambda d: d["sources"][0]["consistent_by"]["distance"].update(key=["origin", "route"]),
        "sources.0",
        "consistent_by distance key names undeclared columns: route",
    ),
    "negative consistency tolerance": (
        lambda d: d["sources"][0]["consistent_by"]["distance"].update(tolerance=-0.01),
        "sources.0.consistent_by.distance.tolerance",
        "greater than or equal to 0",
    ),
    "consistency key holding the column": (
        lambda d: d["sources"][0]["consistent_by"]["distance"].update(key=["dest", "distance"]),
        "sources.0",
        "consistent_by distance: the key holds the column itself",
    ),
    "unknown consistency action": (
        lambda d: d["sources"][0]["consistent_by"]["distance"].update(action="drop"),
        "sources.0.consistent_by.distance.action",
        "'flag' or 'reject'",
    ),
    "group shift by an undeclared column": (
        lambda d: d["sources"][1]["group_shift"]["temp"].update(by="station"),
        "sources.1",
        "group_shift temp by names undeclared columns: station",
    ),
    "group shift of no z-score": (
        lambda d: d["sources"][1]["group_shift"]["temp"].update(max_robust_z=0),
        "sources.1.group_shift.temp.max_robust_z",
        "greater than 0",
    ),
    "group shift of a negative history": (
        lambda d: d["sources"][1]["group_shift"]["temp"].update(history_partitions=-1),
        "sources.1.group_shift.temp.history_partitions",
        "greater than or equal to 0",
    ),
    "monthly partitions mid-month": (
        lambda d: d["partitions"].update(kind="monthly", start="2013-01-15"),
        "partitions",
        "monthly partitions start and end on the first of a month",
    ),
    "drift reference of no feature": (
        lambda d: d.setdefault("monitoring", {}).update(drift_reference={"altitude": "none"}),
        "<top level>",
        "monitoring.drift_reference: altitude not among the model's features",
    ),
    "unknown drift reference": (
        lambda d: d.setdefault("monitoring", {}).update(drift_reference={"month": "last_year"}),
        "monitoring.drift_reference.month",
        "Input should be 'training', 'same_season' or 'none'",
    ),
    "features read the input twice": (
        lambda d: d["features"]["reads"].append("flights_clean"),
        "features",
        "reads: 'flights_clean' is the input or a parameter the feature function is handed anyway",
    ),
    "features read an input named like a parameter": (
        lambda d: d["features"]["reads"].append("history"),
        "features",
        "reads: 'history' is the input or a parameter",
    ),
    "features read an input twice": (
        lambda d: d["features"]["reads"].append("planes"),
        "features",
        "reads named more than once: planes",
    ),
    "history of a further input": (
        lambda d: d["features"]["history"].update(weather_clean={"days": 1}),
        "features",
        "history: only the history of the input (flights_clean) is read, not of weather_clean",
    ),
    "features reads without an input": (
        lambda d: d["features"].update(input=None, history={}),
        "features",
        "name the input whose rows the features are computed from",
    ),
    "compared predictor named like the model": (
        lambda d: d["model"].update(compare_with={"champion": "route_arr_delay_mean_7d"}),
        "model",
        "compare_with: champion names a predictor already",
    ),
    "statistical family without a time column": (
        lambda d: d["model"]["search_space"].append({"family": "auto_ets"}),
        "model",
        "family 'auto_ets' forecasts a date: declare time_column",
    ),
    "statistical family without a horizon": (
        lambda d: (
            d["model"]["search_space"].append({"family": "auto_arima"}),
            d["model"].update(time_column="date"),
        ),
        "model",
        "forecasts at most a horizon ahead: declare training.horizon_days",
    ),
    "two horizons": (
        lambda d: d["model"]["training"].update(horizon_days=7, horizon_partitions=7),
        "model.training",
        "give horizon_partitions or horizon_days, not both",
    ),
    "test beyond the horizon": (
        lambda d: d["model"]["training"].update(horizon_partitions=1),
        "<top level>",
        "model.training: validation reaches",
    ),
    "cross-validation of one fold": (
        lambda d: d["model"]["tuning"].update(
            cross_validation={"folds": 1, "horizon_partitions": 7}
        ),
        "model.tuning.cross_validation.folds",
        "greater than or equal to 2",
    ),
    "unknown time zone": (
        lambda d: d["partitions"].update(timezone="Mars/Olympus"),
        "partitions",
        "unknown time zone 'Mars/Olympus'",
    ),
    **{
        f"sql source: {what}": (lambda d, c=change: _sql_flights(d, c), where, reason)
        for what, (change, where, reason) in {
            "unknown kind": (
                lambda s: s.update(kind="kafka"),
                "sources.0",
                "Input tag 'kafka' found using _kind() does not match any of the expected tags: "
                "'files', 'sql', 'rest'",
            ),
            "no connection": (lambda s: s.pop("connection"), "sources.0.connection", "required"),
            "no key": (
                lambda s: s.pop("key"),
                "sources.0",
                "a partitioned sql source declares its columns and its key",
            ),
            "no cursor": (
                lambda s: s.pop("cursor_column"),
                "sources.0",
                "a partitioned sql source names its cursor_column",
            ),
            "cursor not a column": (
                lambda s: s.update(cursor_column="updated_at"),
                "sources.0",
                "cursor_column 'updated_at' is not among the columns (year, month, day,",
            ),
            "connection URL inline": (
                lambda s: s.update(connection="postgresql://airline:s3cret@db/ops"),
                "sources.0.connection",
                "a connection is named, never written inline",
            ),
            "password inline": (
                lambda s: s.update(password="s3cret"),
                "sources.0",
                "password: a connection is named, never written inline",
            ),
            "changes watched on the cursor": (
                lambda s: s.update(changed_column="time_hour"),
                "sources.0",
                "changed_column is the cursor_column",
            ),
            "a file format": (
                lambda s: s.update(format="csv"),
                "sources.0.format",
                "Extra inputs are not permitted",
            ),
            "a table that is no name": (
                lambda s: s.update(table="flights; DROP TABLE flights"),
                "sources.0.table",
                "String should match pattern",
            ),
        }.items()
    },
    **{
        f"stream source: {what}": (lambda d, c=change: _stream_flights(d, c), where, reason)
        for what, (change, where, reason) in {
            "event time not a column": (
                lambda s: s.update(event_time="arrived_at"),
                "sources.0",
                "event_time 'arrived_at' is not among the columns (year, month, day,",
            ),
            "no event time": (lambda s: s.pop("event_time"), "sources.0.event_time", "required"),
            "no queue": (lambda s: s.pop("queue"), "sources.0.queue", "required"),
            "no key": (
                lambda s: s.pop("key"),
                "sources.0",
                "a stream source declares its columns and its key",
            ),
            "a reference table": (
                lambda s: s.update(partitioned=False),
                "sources.0",
                "a stream source is partitioned",
            ),
            "an unknown late-event policy": (
                lambda s: s.update(late_events="drop"),
                "sources.0.late_events",
                "Input should be 'reopen' or 'reject'",
            ),
            "prefetch beyond the batch": (
                lambda s: s.update(prefetch=500, batch_size=100),
                "sources.0",
                "prefetch (500) exceeds batch_size (100)",
            ),
            "unbounded prefetch": (
                lambda s: s.update(prefetch=1_000_000),
                "sources.0.prefetch",
                "less than or equal to 10000",
            ),
            "broker URL inline": (
                lambda s: s.update(connection="amqp://guest:guest@broker:5672/%2F"),
                "sources.0.connection",
                "give its URL as ML_ASSETS_STREAM_EVENTS_URL",
            ),
            "password inline": (
                lambda s: s.update(password="s3cret"),
                "sources.0",
                "password: a connection is named, never written inline",
            ),
        }.items()
    },
}


REST_MISTAKES = {
    "no path": (lambda s: s.pop("path"), "sources.1.path", "required"),
    "no rate limit": (
        lambda s: s.pop("rate_limit_per_second"),
        "sources.1.rate_limit_per_second",
        "required",
    ),
    "no window": (
        lambda s: s.pop("window_params"),
        "sources.1",
        "a partitioned rest source names its window_params",
    ),
    "no key": (
        lambda s: s.pop("key"),
        "sources.1",
        "a partitioned rest source declares its columns and its key",
    ),
    "a window on a reference table": (
        lambda s: s.update(partitioned=False),
        "sources.1",
        "a reference table (partitioned: false) has no window_params",
    ),
    "token inline": (
        lambda s: s.update(token="s3cret"),
        "sources.1",
        "token: a connection is named, never written inline (its URL and secret would be in "
        "the declaration): name it, e.g. 'connection: vendor_api', and give its base URL as "
        "ML_ASSETS_REST_VENDOR_API_URL and its token as ML_ASSETS_REST_VENDOR_API_TOKEN",
    ),
    "base URL inline": (
        lambda s: s.update(base_url="https://api.example.com"),
        "sources.1",
        "base_url: a connection is named, never written inline",
    ),
    "an API key among the params": (
        lambda s: s.update(params={"api_key": "s3cret", "per_page": 24}),
        "sources.1",
        "params api_key: a connection is named, never written inline",
    ),
    "a URL as path": (
        lambda s: s.update(path="https://api.example.com/v1/weather"),
        "sources.1.path",
        "path 'https://api.example.com/v1/weather' is a URL: give the path below the "
        "connection's base URL",
    ),
    "a query in the path": (
        lambda s: s.update(path="/v1/weather?per_page=24"),
        "sources.1.path",
        "is not a URL path (no query: give params)",
    ),
    "the window among the params": (
        lambda s: s.update(params={"start": "2013-01-01"}),
        "sources.1",
        "params start: passed the window by window_params",
    ),
    "unknown paginator": (
        lambda s: s.update(paginator={"type": "next_token"}),
        "sources.1.paginator",
        "Input tag 'next_token' found using 'type' does not match any of the expected tags: "
        "'page_number', 'offset', 'cursor', 'link_header'",
    ),
    "offset without a limit": (
        lambda s: s.update(paginator={"type": "offset"}),
        "sources.1.paginator.offset.limit",
        "required",
    ),
    "a connection as URL": (
        lambda s: s.update(connection="https://token@api.example.com"),
        "sources.1.connection",
        "a connection is named, never written inline",
    ),
    "no rate": (
        lambda s: s.update(rate_limit_per_second=0),
        "sources.1.rate_limit_per_second",
        "greater than 0",
    ),
    "a first wait longer than the longest": (
        lambda s: s.update(backoff_seconds=10, max_backoff_seconds=5),
        "sources.1",
        "backoff_seconds is longer than max_backoff_seconds",
    ),
}
"""Mistakes in a rest source: each a clear load error naming the key."""
MISTAKES.update(
    {
        f"rest source: {what}": (lambda d, c=change: _rest_weather(d, c), where, reason)
        for what, (change, where, reason) in REST_MISTAKES.items()
    }
)


def _rest_weather(data: dict, change: Callable[[dict], Any]) -> None:
    """The weather source switched to the rest kind, then changed by ``change``."""
    weather = data["sources"][1]
    weather.update(REST_WEATHER)
    change(weather)


def _stream_flights(data: dict, change: Callable[[dict], Any]) -> None:
    """The flights source switched to the stream kind, then changed by ``change``."""
    flights = data["sources"][0]
    flights.pop("format", None)
    flights.update(kind="stream", connection="airline", queue="flights", event_time="time_hour")
    change(flights)


def _sql_flights(data: dict, change: Callable[[dict], Any]) -> None:
    """The flights source switched to the sql kind, then changed by ``change``."""
    flights = data["sources"][0]
    flights.update(kind="sql", connection="airline", table="flights", cursor_column="time_hour")
    change(flights)


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
        (
            lambda d: d["model"].update(compare_with={"last_value": "delay_yesterday"}),
            "model.compare_with",
            "delay_yesterday",
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


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda d: d["features"]["reads"].append("pilots"),
            "features: 'pilots' is not an asset of the pipeline",
        ),
        (
            lambda d: d["features"].update(input="nowhere_clean", history={}),
            "features: 'nowhere_clean' is not an asset of the pipeline",
        ),
        (
            lambda d: d["features"].update(
                input="planes", reads=["weather_clean"], history={"planes": {"days": 7}}
            ),
            "features.history: 'planes' is not partitioned: it has no earlier partitions to read",
        ),
        (
            lambda d: d["features"]["reads"].append("airports"),
            "features: flight_features does not read 'airports'",
        ),
    ],
)
def test_features_inputs_the_assets_cannot_give_fail_at_load(
    tmp_path: Path, change: Callable[[dict], Any], reason: str
) -> None:
    """What ``features:`` names (input, reads, history) are assets of the pipeline that its
    features asset reads, a history that of a partitioned one."""
    with pytest.raises(DeclarationError) as error:
        _pipeline_with(tmp_path, change)
    assert str(error.value) == f"{tmp_path / 'pipeline.yaml'}: {reason}"


def test_a_warm_up_item_the_request_model_refuses_fails_at_load(tmp_path: Path) -> None:
    with pytest.raises(DeclarationError) as error:
        _pipeline_with(tmp_path, lambda d: d["serving"]["warm_up"][0].update(sched_dep_time=975))
    assert "serving.warm_up.0.sched_dep_time: Value error, a clock time is HHMM" in str(error.value)
    with pytest.raises(DeclarationError) as error:
        _pipeline_with(tmp_path, lambda d: d["serving"]["warm_up"][0].update(flight="1"))
    assert "serving.warm_up.0.flight: Input should be a valid integer" in str(error.value)


def test_warm_up_items_are_json_as_a_caller_sends_them(tmp_path: Path) -> None:
    """An unquoted YAML date is a Python date, which no JSON request can carry."""
    with pytest.raises(DeclarationError) as error:
        load_declaration(
            _declare(tmp_path, lambda d: d["serving"]["warm_up"][0].update(date=date(2013, 7, 4)))
        )
    assert "serving.warm_up.0.date: input was not a valid JSON value" in str(error.value)


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
    with pytest.raises(ValidationError) as refused:
        parse_item(model, {**declared.serving.warm_up[0], field: value})
    assert [e["loc"] for e in refused.value.errors()] == [(field,)]

    row = source_table("flights").iloc[[0]].assign(**{field: str(value)})
    raw = row.astype("string").assign(_parse_error=pd.NA, _raw_text=pd.NA)
    rejected = clean_flights(raw, date(2013, 1, 1), reference_tables()).rejected
    assert rejected["rejection_rule"].tolist() == [rule]


@pytest.mark.parametrize("name", pipelines.names())
def test_a_partition_window_is_that_of_dagster(name: str) -> None:
    """The declaration's own partition windows (the services read them without Dagster) are
    the local dates of Dagster's time windows."""
    from ml_assets.contract.dagster_terms import partitions_definition

    partitions = pipelines.declaration(name).partitions
    definition = partitions_definition(partitions)
    for key in definition.get_partition_keys():
        window = definition.time_window_for_partition_key(key)
        assert partitions.window(key) == (window.start.date(), window.end.date())


def test_launchpad_overrides_are_the_declared_models() -> None:
    """The launchpad shows the declared values as defaults; an override of any field, nested
    sections too, reaches the asset as the declared section with other values, validated the
    same way."""
    import dagster as dg

    from ml_assets.contract.dagster_terms import declared_section, run_config

    declared = pipelines.declaration("flights").model.tuning
    TuningConfig = run_config(declared, "FlightsTuning")
    received = []

    @dg.asset
    def tuned(config: TuningConfig) -> None:
        received.append(declared_section(config, Tuning))

    folds = {"folds": 3, "horizon_partitions": 7}
    overrides = {"n_trials": 3, "cross_validation": folds}
    assert dg.materialize([tuned]).success
    assert dg.materialize([tuned], run_config={"ops": {"tuned": {"config": overrides}}}).success
    assert received == [declared, declared.model_copy(update={
        "n_trials": 3, "cross_validation": CrossValidation(**folds),
    })]  # fmt: skip
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        TuningConfig(n_trials=0)
    TrainingConfig = run_config(pipelines.declaration("flights").model.training, "FlightsTraining")
    with pytest.raises(ValueError, match="not both"):
        declared_section(TrainingConfig(horizon_partitions=3, horizon_days=3), Training)


# strict request types: a field takes its own JSON type only

FIELDS = [
    pytest.param(name, field, id=f"{name}-{field.name}")
    for name in pipelines.names()
    for field in pipelines.declaration(name).serving.request_fields
]
NUMBERS = [p for p in FIELDS if p.values[1].type in ("int", "hhmm", "float")]
PROPERTIES = settings(max_examples=60, deadline=None, derandomize=True, database=None)
ERROR_TYPES = {
    "int": {"int_type"},
    "hhmm": {"int_type"},
    "float": {"float_type"},
    "str": {"string_type", "literal_error"},  # a field with choices is a literal
    "bool": {"bool_type"},
    "date": {"date_type", "date_parsing"},
}
"""The pydantic error a value of another JSON type gets, by declared field type."""
finite = st.floats(allow_nan=False, allow_infinity=False)
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
OTHER_JSON_TYPES = {
    "int": st.booleans() | st.text() | finite,  # a whole float (5.0, 5e0) too
    "hhmm": st.booleans() | st.text() | finite,
    "float": st.booleans() | st.text(),
    "str": st.booleans() | st.integers() | finite,
    "bool": st.integers() | finite | st.text(),
    "date": st.booleans()
    | st.integers()
    | finite
    | st.text().filter(lambda s: not ISO_DATE.fullmatch(s))
    | st.datetimes().map(datetime.isoformat),
}
"""JSON values of every type but a field's own, by declared field type."""


@functools.cache
def _model(pipeline: str) -> type[BaseModel]:
    return request_model(pipelines.declaration(pipeline))


def _with(pipeline: str, field: RequestField, value: Any) -> BaseModel:
    """The pipeline's first warm-up item with ``field`` set to ``value``, parsed from JSON."""
    item = {**pipelines.declaration(pipeline).serving.warm_up[0], field.name: value}
    return parse_item(_model(pipeline), item)


@pytest.mark.parametrize(("pipeline", "field"), FIELDS)
@PROPERTIES
@given(data=st.data())
def test_a_field_refuses_every_other_json_type(
    pipeline: str, field: RequestField, data: st.DataObject
) -> None:
    """No coercion: a boolean is not a number, a string is not a number nor a date-time a date,
    a number is not a string; the one error names the field."""
    value = data.draw(OTHER_JSON_TYPES[field.type])
    with pytest.raises(ValidationError) as refused:
        _with(pipeline, field, value)
    (error,) = refused.value.errors()
    assert error["loc"] == (field.name,) and error["type"] in ERROR_TYPES[field.type]


@pytest.mark.parametrize(("pipeline", "field"), NUMBERS)
@PROPERTIES
@given(value=st.booleans() | st.text())
@example(value=True)
@example(value="5")
@example(value="1_000")
@example(value="1,000")
@example(value=" 5 ")
def test_a_number_field_refuses_any_boolean_or_string(
    pipeline: str, field: RequestField, value: bool | str
) -> None:
    with pytest.raises(ValidationError) as refused:
        _with(pipeline, field, value)
    assert [(e["type"], e["loc"]) for e in refused.value.errors()] == [
        (f"{'float' if field.type == 'float' else 'int'}_type", (field.name,))
    ]


@pytest.mark.parametrize(("pipeline", "field"), NUMBERS)
@PROPERTIES
@given(data=st.data())
def test_a_number_field_takes_any_json_integer_in_its_range(
    pipeline: str, field: RequestField, data: st.DataObject
) -> None:
    """A float field takes JSON integers too (JSON has one number type); an int field takes
    integers only, so ``5.0`` is refused (``test_a_field_refuses_every_other_json_type``)."""
    rules = field.rules(pipelines.declaration(pipeline))
    low = -(10**18) if rules["low"] is None else math.ceil(rules["low"])
    high = 10**18 if rules["high"] is None else math.floor(rules["high"])
    integers = st.integers(low, high)
    if field.type == "hhmm":
        integers = integers.filter(lambda v: v % 100 <= 59)
    value = data.draw(integers)

    parsed = getattr(_with(pipeline, field, value), field.name)

    assert parsed == value and type(parsed) is (float if field.type == "float" else int)


@PROPERTIES
@given(day=st.dates(EARLIEST_DATE, LATEST_DATE))
def test_a_date_field_takes_any_iso_date_string_in_its_range(day: date) -> None:
    """A date is a ``YYYY-MM-DD`` string in JSON; the same day as a date-time is refused."""
    field = next(f for f in pipelines.declaration("flights").serving.request_fields
                 if f.type == "date")  # fmt: skip
    assert _with("flights", field, day.isoformat()).date == day  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        _with("flights", field, datetime.combine(day, time()).isoformat())


def test_a_rest_source_maps_its_paginator_and_window(tmp_path: Path) -> None:
    declared = load_declaration(_declare(tmp_path, lambda d: _rest_weather(d, lambda s: None)))
    weather = declared.source("weather")
    assert (weather.kind, weather.connection, weather.path) == (
        "rest",
        "weather_api",
        REST_WEATHER["path"],
    )
    assert weather.paginator.type == "page_number" and weather.paginator.base_page == 1
    assert weather.window_params.format == "datetime"
    assert (weather.max_retries, weather.timeout_seconds) == (5, 30)
    assert weather.history_partitions == 28  # its rules' history, whatever the kind


def test_a_source_is_files_unless_it_names_another_kind(tmp_path: Path) -> None:
    declared = load_declaration(_declare(tmp_path, lambda d: _sql_flights(d, lambda s: None)))
    flights, weather = declared.source("flights"), declared.source("weather")
    assert (flights.kind, flights.connection, flights.table) == ("sql", "airline", "flights")
    assert flights.cursor_column == "time_hour" and flights.key == FLIGHTS["sources"][0]["key"]
    assert (weather.kind, weather.extension) == ("files", ".csv")


def test_a_stream_source_loads_with_its_bounds_and_late_event_policy(tmp_path: Path) -> None:
    declared = load_declaration(
        _declare(tmp_path, lambda d: _stream_flights(d, lambda s: s.update(late_events="reject")))
    )
    flights = declared.source("flights")
    assert (flights.kind, flights.connection, flights.queue) == ("stream", "airline", "flights")
    assert (flights.event_time, flights.late_events) == ("time_hour", "reject")
    assert (flights.prefetch, flights.batch_size) == (500, 100_000)
