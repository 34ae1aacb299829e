"""The prediction API as its OpenAPI document describes it, for every pipeline.

schemathesis reads each live service's ``/openapi.json`` (a real ``ml-assets serve`` process
with its tiny model deployed, as in ``test_deployment``) and sends every operation examples
generated from the document, valid and invalid: a bounded number of random ones per operation,
and every case of its coverage phase (each keyword's boundaries and violations, values of every
wrong JSON type, undeclared and malformed content types, a missing token). No answer may be a
server error; every answer must have a documented status, content type and schema; invalid
data must be refused (415 for a body of an undeclared content type, 422 for a wrong field, 413
for too many items). What the fuzzer once found stays below as plain regression tests.
Requests dated outside the loaded feature snapshot are answered as the declaration says, with
a warning or a refusal.
"""

import asyncio
import dataclasses
import datetime as dt
import gc
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks
from schemathesis.config import SchemathesisConfig
from serving_fixtures import PIPELINES, SETUPS, Platform, World, go_live

from ml_assets import pipelines
from ml_assets.contract.loading import DeclarationError, load_declaration
from ml_assets.home import online_store_url
from resources.table_snapshots import TableSnapshots
from serving.app import create_app
from serving.settings import admin_token

pytestmark = pytest.mark.integration

EXAMPLES = 40
"""Random examples per operation and pipeline (the coverage phase's cases come on top)."""
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": [401, 405, 413, 415, 422]}}}
)
"""Invalid data gets one of these: no token, an undocumented method, too many items, an
undeclared content type, an invalid field."""


def refuses_undeclared_content_types(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """A request to an operation with a body, declaring a content type its body is not
    documented in, gets 415 (schemathesis's own checks let a 200 pass)."""
    sent = (case.headers or {}).get("Content-Type")
    documented = {body.media_type for body in case.operation.body}
    if sent is not None and documented and sent.partition(";")[0].strip() not in documented:
        assert response.status_code == 415, f"Content-Type {sent!r} answered {response.status_code}"


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
    refuses_undeclared_content_types,
]


@pytest.fixture
def platform(serving_platform: Platform) -> Platform:
    return serving_platform


@pytest.fixture(params=PIPELINES)
def world(request: pytest.FixtureRequest, platform: Platform) -> World:
    """A pipeline whose first model is the live champion."""
    world = platform.world(request.param)
    go_live(world, world.first_version)
    return world


@pytest.fixture
def flights(platform: Platform) -> World:
    world = platform.world("flights")
    go_live(world, world.first_version)
    return world


OPERATIONS = (
    "POST /predict",
    "GET /health",
    "GET /ready",
    "GET /model",
    "GET /metrics",
    "POST /admin/reload",
    "POST /admin/unload",
)
"""Every operation of the document (``test_the_document_lists_every_operation`` holds it to
that)."""


@pytest.mark.parametrize("label", OPERATIONS)
def test_every_answer_is_documented_and_none_is_a_server_error(world: World, label: str) -> None:
    """Valid and invalid examples from the live document; the admin token goes along, so the
    reloads are exercised too, not only their 401."""
    api = schemathesis.openapi.from_url(f"{world.endpoint.url}/openapi.json", config=CONFIG)
    operation = api.find_operation_by_label(label)
    assert operation is not None, label
    token = {"Authorization": f"Bearer {admin_token()}"}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.one_of(*(operation.as_strategy(mode) for mode in GenerationMode)))
    def answers_as_documented(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=world.endpoint.url, headers=token, checks=CHECKS)

    answers_as_documented()


@pytest.mark.parametrize("label", OPERATIONS)
def test_every_coverage_case_is_answered_as_documented(world: World, label: str) -> None:
    """Every case of schemathesis's coverage phase, under the same checks; an operation with a
    body refuses an undeclared content type with 415 and a field of a wrong type with 422
    (values of every other JSON type: booleans for numbers, numbers for strings, ...)."""
    api = schemathesis.openapi.from_url(f"{world.endpoint.url}/openapi.json", config=CONFIG)
    operation = api.find_operation_by_label(label)
    assert operation is not None, label
    token = {"Authorization": f"Bearer {admin_token()}"}
    cases = api.iter_coverage_cases(
        operation,
        generation_modes=list(GenerationMode),
        generation_config=api.config.generation_for(operation=operation, phase="coverage"),
    )

    refused: Counter[int] = Counter()
    for case in cases:
        response = case.call_and_validate(base_url=world.endpoint.url, headers=token, checks=CHECKS)
        assert case.meta is not None
        if case.meta.generation.mode is GenerationMode.NEGATIVE:
            refused[response.status_code] += 1

    assert refused
    if operation.body:
        assert refused[415] >= 2 and refused[422] >= 1, refused  # text/plain, multipart; a field


# the document


def test_the_document_describes_predict_from_the_declaration(world: World) -> None:
    document = world.get("/openapi.json").json()
    declared = world.declaration.serving
    operation = document["paths"]["/predict"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    one, many = body["oneOf"]
    assert many == {"type": "array", "items": one, "maxItems": declared.max_batch}
    item = _resolve(document, one)
    assert list(item["properties"]) == [f.name for f in declared.request_fields]
    assert set(item["required"]) == {f.name for f in declared.request_fields if f.required}
    assert item["additionalProperties"] is False
    for field in declared.request_fields:
        assert item["properties"][field.name]["description"] == field.description
        choices = field.rules(world.declaration)["choices"]
        if choices:
            assert item["properties"][field.name]["enum"] == choices
    assert set(operation["responses"]) == {"200", "401", "409", "413", "415", "422", "503"}
    reload = document["paths"]["/admin/reload"]["post"]
    assert set(reload["responses"]) == {"200", "401", "415", "422"}
    for taking in (operation, reload):  # a JSON body only, and 415 says so
        assert list(taking["requestBody"]["content"]) == ["application/json"]
        unsupported = taking["responses"]["415"]
        assert "application/json" in unsupported["description"]
        assert list(unsupported["headers"]) == ["Accept"]
        assert _resolve(document, unsupported["content"]["application/json"]) == _resolve(
            document, {"$ref": "#/components/schemas/Problem"}
        )
    answer = _resolve(document, operation["responses"]["200"]["content"]["application/json"])
    prediction = _resolve(document, answer["properties"]["predictions"]["items"])
    served = world.served
    expected = {served.id_column, served.score_field, served.prediction, "warnings"}
    assert set(prediction["properties"]) == expected
    listed = {f"{method.upper()} {path}" for path, item in document["paths"].items()
              for method in item}  # fmt: skip
    assert listed == set(OPERATIONS)
    assert world.get("/docs").status_code == 200


def _resolve(document: dict, node: dict) -> dict:
    """``node`` with its ``$ref`` (or its ``schema``'s) followed."""
    node = node.get("schema", node)
    while "$ref" in node:
        node = document["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


# dates outside the loaded snapshot


def _in_process(app, *requests: tuple[str, str, dict[str, Any]]) -> list[httpx.Response]:
    """``app`` (its lifespan run) asked ``(method, path, httpx keywords)`` in turn."""

    async def ask() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://app") as client,
        ):
            return [await client.request(m, path, **kwargs) for m, path, kwargs in requests]

    return asyncio.run(ask())


def _snapshot_day(world: World) -> dt.date:
    return dt.date.fromisoformat(world.get("/model").json()["snapshot"])


def test_a_date_outside_the_snapshot_gets_a_warning(flights: World) -> None:
    """Declared ``outside_snapshot: warn``: scored with the lookups' defaults, and told so."""
    assert flights.declaration.serving.outside_snapshot == "warn"
    day = _snapshot_day(flights)
    inside = flights.requests()[0]
    assert inside["date"] == day.isoformat()
    outside = {**inside, "date": (day + dt.timedelta(days=1)).isoformat()}

    response = flights.post("/predict", json=[inside, outside])

    assert response.status_code == 200
    first, second = response.json()["predictions"]
    assert first["warnings"] == []
    (warning,) = second["warnings"]
    assert warning["code"] == "date_outside_snapshot"
    assert warning["field"] == "date"
    assert outside["date"] in warning["message"] and day.isoformat() in warning["message"]


def test_a_date_outside_the_snapshot_is_refused_when_declared(flights: World) -> None:
    """Declared ``outside_snapshot: refuse``: 422 naming the item and the field, as a bad field
    is; items on the snapshot's day are answered. The app in process, on the live one's store."""
    refusing = dataclasses.replace(flights.served, outside_snapshot="refuse")
    app = create_app(refusing, TableSnapshots(online_store_url()), token="unused", home="test")
    day = _snapshot_day(flights)
    inside = flights.requests()[0]
    outside = {**inside, "date": (day - dt.timedelta(days=1)).isoformat()}

    described, refused, single, answered = _in_process(
        app,
        ("GET", "/model", {}),
        ("POST", "/predict", {"json": [inside, outside]}),
        ("POST", "/predict", {"json": outside}),
        ("POST", "/predict", {"json": inside}),
    )

    assert described.json()["snapshot"] == day.isoformat()
    assert refused.status_code == 422
    assert [(e["type"], e["loc"]) for e in refused.json()["detail"]] == [
        ("date_outside_snapshot", [1, "date"])
    ]
    assert [e["loc"] for e in single.json()["detail"]] == [["date"]]
    assert answered.status_code == 200
    assert answered.json()["predictions"][0]["warnings"] == []


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"snapshot_date_field": "carrier"}, "'carrier' is not a date request field"),
        ({"snapshot_date_field": "departure"}, "'departure' is not a date request field"),
        ({"snapshot_asset": None}, "'date' needs a snapshot_asset"),
        ({"snapshot_date_field": None}, "outside_snapshot applies to a snapshot_date_field"),
        ({"outside_snapshot": "ignore"}, "'warn' or 'refuse'"),
    ],
)
def test_the_snapshot_date_rule_is_checked_at_load(
    tmp_path: Path, changes: dict[str, Any], reason: str
) -> None:
    """A wrong rule fails when the declaration loads, naming the file, the key and why."""
    data = yaml.safe_load(pipelines.declaration_path("flights").read_text())
    data["serving"] = {**data["serving"], **changes}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))

    with pytest.raises(DeclarationError) as raised:
        load_declaration(path)

    assert str(path) in str(raised.value)
    assert "  serving" in str(raised.value) and reason in str(raised.value)


# regressions: what the fuzzer found


def test_dates_the_feature_code_cannot_hold_get_422_not_500(flights: World) -> None:
    """A date whose time overflows a nanosecond timestamp (years 1 and 9999) crashed the
    feature code with a 500; such dates are now invalid fields."""
    item = flights.requests()[0]
    for day in ("0001-01-01", "9999-12-31", "1677-09-21", "2262-04-12"):
        response = flights.post("/predict", json={**item, "date": day})
        assert response.status_code == 422, day
        assert [e["loc"] for e in response.json()["detail"]] == [["date"]]


def test_dates_beyond_the_holiday_calendar_get_an_answer_not_500(flights: World) -> None:
    """Found by the fuzzer: in years the holiday calendar knows no holiday in (before 1862,
    after 2100) ``days_to_holiday`` raised IndexError, a 500."""
    item = flights.requests()[0]
    for day in ("1819-03-17", "2150-06-01"):
        response = flights.post("/predict", json={**item, "date": day})
        assert response.status_code == 200, day
        assert response.json()["predictions"][0]["warnings"]


def test_a_service_without_a_champion_says_so_and_a_reload_keeps_it_so(world: World) -> None:
    """The documented 503 and 404 bodies; a reload with no champion is refused (it used to
    answer 200 and make whatever was live, if anything, not live)."""
    absent = dataclasses.replace(world.served, registered_model="no-such-model")
    app = create_app(absent, TableSnapshots(online_store_url()), token="t", home="test")
    not_live = {"name": "no-such-model", "ready": False}

    ready, model, predicted, reload, after = _in_process(
        app,
        ("GET", "/ready", {}),
        ("GET", "/model", {}),
        ("POST", "/predict", {"json": world.requests()[0]}),
        ("POST", "/admin/reload", {"headers": {"Authorization": "Bearer t"}}),
        ("GET", "/ready", {}),
    )

    assert (ready.status_code, ready.json()) == (503, not_live)
    assert (model.status_code, model.json()) == (404, not_live)
    assert predicted.status_code == 503 and isinstance(predicted.json()["detail"], str)
    assert reload.status_code == 422 and "no champion" in reload.json()["detail"]
    assert (after.status_code, after.json()) == (503, not_live)


def test_a_live_service_keeps_its_long_lived_objects_out_of_full_collections(world: World) -> None:
    """Once a model is live, and again after a reload, the heap is frozen: a full collection
    scans only what was allocated since (unfrozen, one took a third of a second of a loaded
    service's time, answering nothing, every few seconds with a shadow). In process."""
    app = create_app(world.served, TableSnapshots(online_store_url()), token="t", home="test")

    async def frozen_counts() -> tuple[int, int, int]:
        transport = httpx.ASGITransport(app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://app") as client,
        ):
            started = gc.get_freeze_count()
            gc.unfreeze()
            reload = await client.post("/admin/reload", headers={"Authorization": "Bearer t"})
            return started, reload.status_code, gc.get_freeze_count()

    gc.unfreeze()  # what this test process froze before (its forks freeze it)
    try:
        started, reloaded, after = asyncio.run(frozen_counts())
    finally:
        gc.unfreeze()
    assert reloaded == 200
    assert started > 100_000 and after > 100_000  # the libraries and the models, at least


def test_reload_bodies_that_are_not_an_object_get_422(world: World) -> None:
    token = {"Authorization": f"Bearer {admin_token()}"}
    for body in (b"[1]", b'"1"', b"{not json", b'{"version": 1}', b'{"other": "1"}'):
        response = world.post(
            "/admin/reload", content=body, headers={**token, "content-type": "application/json"}
        )
        assert response.status_code == 422, body
        assert isinstance(response.json()["detail"], list)


def test_an_unknown_version_is_rejected_and_the_live_one_stays(world: World) -> None:
    token = {"Authorization": f"Bearer {admin_token()}"}
    for version in ("999", "not-a-version", ""):
        response = world.post("/admin/reload", json={"version": version}, headers=token)
        assert response.status_code == (200 if version == "" else 422), version
    assert world.get("/model").json()["version"] == world.first_version


def test_bad_requests_name_their_field_in_lists_too(world: World) -> None:
    """The 422 shape of the document: every error has a type, a location and a message."""
    item = world.requests()[0]
    change, field = SETUPS[world.name].bad_fields[0]
    response = world.post("/predict", json=[item, {**item, **change}])
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert set(error) == {"type", "loc", "msg"} and error["loc"] == [1, field]
    assert httpx.post(f"{world.endpoint.url}/predict", content=b"").status_code == 422
