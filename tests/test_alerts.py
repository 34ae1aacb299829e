"""The ``alerts`` sensor against a real local HTTP receiver: failed blocking and monitoring
checks and automatic rollbacks are posted once each, in order, and survive a receiver that is
down; nothing else is posted; the webhook's URL is never logged."""

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from ml_assets.contract.names import (
    FEATURE_DRIFT_CHECK,
    LIVE_PERFORMANCE_CHECK,
    ROLLED_BACK,
    ROLLOUT_DECISION,
)
from ml_assets.definitions import defs
from ml_assets.monitoring.alerts import (
    alert_message,
    build_alerts_sensor,
    plain_metadata,
    records_after,
)
from ml_assets.pipelines import declaration, names
from resources.alert_webhook import ALERT_WEBHOOK_ENV_VAR, REDACTED, AlertWebhook
from resources.builder import platform_resources

pytestmark = pytest.mark.unit

DAYS = dg.StaticPartitionsDefinition(["2024-05-01", "2024-05-02"])


@dataclass
class Receiver:
    """A webhook that records the JSON bodies it accepted, and refuses with a 500 while
    ``refusing`` (recording what it refused)."""

    url: str = ""
    accepted: list[dict] = field(default_factory=list)
    refused: list[dict] = field(default_factory=list)
    refusing: bool = False
    accept_before_refusing: int = 0
    """While refusing, accept this many posts first."""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if state.refusing and state.accept_before_refusing <= 0:
                state.refused.append(body)
                self.send_response(500)
            else:
                state.accept_before_refusing -= 1
                state.accepted.append(body)
                self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/T000/B000/s3cr3t-token"
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


@dg.asset(check_specs=[dg.AssetCheckSpec("rows_valid", asset="scored_rows", blocking=True)])
def scored_rows() -> dg.MaterializeResult:
    return dg.MaterializeResult(
        check_results=[
            dg.AssetCheckResult(
                passed=False,
                severity=dg.AssetCheckSeverity.ERROR,
                description="3 rows broke the fare range rule",
                metadata={"rejected_rows": 3, "rules": dg.MetadataValue.json({"fare": 3})},
            )
        ]
    )


@dg.asset(
    key_prefix="demo",
    partitions_def=DAYS,
    check_specs=[
        dg.AssetCheckSpec(LIVE_PERFORMANCE_CHECK, asset=["demo", "live_performance"]),
        dg.AssetCheckSpec(FEATURE_DRIFT_CHECK, asset=["demo", "live_performance"]),
    ],
)
def live_performance(context: dg.AssetExecutionContext) -> Iterator:
    """A one-partition run: the live metric's check is an ``AssetCheckResult`` (no partition of
    its own), the drift check a per-partition evaluation that names it."""
    yield dg.Output(None)
    yield dg.AssetCheckResult(
        check_name=LIVE_PERFORMANCE_CHECK,
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description="live accuracy 0.61 under the bar 0.70",
        metadata={"live_accuracy": 0.61, "bar": 0.70, "nan": float("nan")},
    )
    key = dg.AssetCheckKey(dg.AssetKey(["demo", "live_performance"]), FEATURE_DRIFT_CHECK)
    yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(key))
    yield dg.AssetCheckEvaluation(
        asset_key=key.asset_key,
        check_name=FEATURE_DRIFT_CHECK,
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description="distance PSI 0.31 over 0.25",
        partition=context.partition_key,
    )


@dg.asset(
    check_specs=[
        dg.AssetCheckSpec("row_count_ok", asset="quiet"),
        dg.AssetCheckSpec("row_count_trend", asset="quiet"),
    ]
)
def quiet() -> dg.MaterializeResult:
    """A passing check and a failing WARN check that is no monitoring check: neither alerts."""
    return dg.MaterializeResult(
        check_results=[
            dg.AssetCheckResult(check_name="row_count_ok", passed=True),
            dg.AssetCheckResult(
                check_name="row_count_trend", passed=False, severity=dg.AssetCheckSeverity.WARN
            ),
        ]
    )


@dg.asset(key_prefix="demo")
def deployed_endpoint(context: dg.AssetExecutionContext) -> None:
    """A promotion (not alerted) then an automatic rollback, as the rollout controller records
    them."""
    key = dg.AssetKey(["demo", "deployed_endpoint"])
    context.log_event(
        dg.AssetObservation(
            asset_key=key, metadata={ROLLOUT_DECISION: "promoted", "rollout/version": "7"}
        )
    )
    context.log_event(
        dg.AssetObservation(
            asset_key=key,
            metadata={
                ROLLOUT_DECISION: ROLLED_BACK,
                "rollout/version": "7",
                "rollout/reason": "canary error rate 4.0% over 1.0%",
                "rollout/stage": "canary",
            },
        )
    )


def land_events(instance: dg.DagsterInstance) -> None:
    """One run each: the blocking failure, the monitor's partition, the quiet checks, the
    rollout; the checked runs fail their blocking check but not the test."""
    dg.materialize([scored_rows], instance=instance, raise_on_error=False)
    dg.materialize([live_performance], instance=instance, partition_key="2024-05-02")
    dg.materialize([quiet], instance=instance)
    dg.materialize([deployed_endpoint], instance=instance)


EXPECTED = [
    "Blocking check failed: scored_rows, rows_valid (ERROR): 3 rows broke the fare range rule",
    "Monitoring check failed: demo/live_performance [partition 2024-05-02], "
    "live_performance_within_bar (WARN): live accuracy 0.61 under the bar 0.70",
    "Monitoring check failed: demo/live_performance [partition 2024-05-02], "
    "feature_drift_within_bar (WARN): distance PSI 0.31 over 0.25",
    "Automatic rollback: demo/deployed_endpoint, version 7 rolled back at canary: "
    "canary error rate 4.0% over 1.0%",
]


class Logs(logging.Handler):
    """The sensor's log lines, and beside them every Python log record of the test (httpx's
    request lines among them)."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.caplog = caplog

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def everything(self) -> str:
        return self.text + "\n" + self.caplog.text


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Logs:
    caplog.set_level(logging.DEBUG)
    return Logs(caplog)


def tick(
    instance: dg.DagsterInstance,
    cursor: str | None,
    url: str | None,
    logs: Logs | None = None,
    sensor: dg.SensorDefinition | None = None,
    webhook: AlertWebhook | None = None,
) -> dg.SensorResult | dg.SkipReason:
    """One evaluation of the sensor (the code location's own, or a fresh one)."""
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"alert_webhook": webhook or AlertWebhook(url=url)},
    )
    if logs is not None:
        context.log.addHandler(logs)  # the sensor's logger does not propagate
    return (sensor or build_alerts_sensor())(context)


@pytest.fixture
def started(instance: dg.DagsterInstance, receiver: Receiver) -> str:
    """The cursor of the sensor's first tick, taken before any event: it starts at the log's
    end, so an instance's history is not replayed."""
    dg.materialize([scored_rows], instance=instance, raise_on_error=False)  # history
    first = tick(instance, None, receiver.url, logs)
    assert receiver.accepted == []
    assert isinstance(first, dg.SensorResult)
    return first.cursor


def test_each_alert_is_posted_once_in_order(
    instance: dg.DagsterInstance, receiver: Receiver, started: str, logs: Logs
) -> None:
    land_events(instance)

    result = tick(instance, started, receiver.url, logs)

    assert [body["text"] for body in receiver.accepted] == EXPECTED
    events = [body["event"] for body in receiver.accepted]
    assert [e["kind"] for e in events] == ["check_failed"] * 3 + ["rollback"]
    storage_ids = [e["storage_id"] for e in events]
    assert storage_ids == sorted(storage_ids) and storage_ids[0] > int(started)
    blocking, live, drift, rollback = events
    assert blocking["asset_key"] == "scored_rows" and blocking["blocking"] is True
    assert blocking["severity"] == "ERROR" and blocking["partition"] is None
    assert blocking["metadata"] == {"rejected_rows": 3}  # the JSON document left out
    assert live["partition"] == drift["partition"] == "2024-05-02"
    assert live["check_name"] == LIVE_PERFORMANCE_CHECK and live["severity"] == "WARN"
    assert live["metadata"] == {"live_accuracy": 0.61, "bar": 0.70, "nan": "nan"}
    assert rollback["asset_key"] == "demo/deployed_endpoint"
    assert rollback["metadata"]["rollout/stage"] == "canary"
    assert len({e["run_id"] for e in events}) == 3
    assert isinstance(result, dg.SensorResult) and int(result.cursor) >= storage_ids[-1]

    again = tick(instance, result.cursor, receiver.url, logs)

    assert isinstance(again, dg.SkipReason)
    assert len(receiver.accepted) == len(EXPECTED)
    assert "Alert posted: Automatic rollback" in logs.text
    assert f"HTTP Request: POST {REDACTED}" in logs.caplog.text  # httpx's own line
    assert receiver.url not in logs.everything
    assert "s3cr3t" not in logs.everything


def test_an_alert_the_receiver_refuses_is_posted_again_and_nothing_twice(
    instance: dg.DagsterInstance, receiver: Receiver, started: str, logs: Logs
) -> None:
    land_events(instance)
    receiver.refusing, receiver.accept_before_refusing = True, 1

    down = tick(instance, started, receiver.url, logs)

    assert [body["text"] for body in receiver.accepted] == EXPECTED[:1]
    assert [body["text"] for body in receiver.refused] == EXPECTED[1:2]  # the tick stopped there
    assert isinstance(down, dg.SensorResult)
    assert int(started) < int(down.cursor) < receiver.refused[0]["event"]["storage_id"]
    assert "not delivered (the webhook answered 500)" in logs.everything

    still_down = tick(instance, down.cursor, receiver.url, logs)

    assert still_down.cursor == down.cursor and len(receiver.refused) == 2
    receiver.refusing = False

    recovered = tick(instance, still_down.cursor, receiver.url, logs)
    tick(instance, recovered.cursor, receiver.url, logs)

    assert [body["text"] for body in receiver.accepted] == EXPECTED
    assert receiver.refused[0] == receiver.accepted[1]  # the same message, the same storage id
    assert receiver.url not in logs.everything
    assert "s3cr3t" not in logs.everything


def test_an_unreachable_receiver_holds_the_cursor(
    instance: dg.DagsterInstance, receiver: Receiver, started: str, logs: Logs
) -> None:
    land_events(instance)
    closed = "http://127.0.0.1:9/hooks/s3cr3t-token"  # discard port: nothing listens

    result = tick(instance, started, closed, logs)

    assert result.cursor == started
    assert "not delivered (the webhook did not answer (ConnectError))" in logs.everything
    assert "s3cr3t" not in logs.everything


def test_without_a_url_alerts_are_logged_and_the_cursor_moves_on(
    instance: dg.DagsterInstance, receiver: Receiver, started: str, logs: Logs
) -> None:
    land_events(instance)

    logged = tick(instance, started, None, logs)

    for text in EXPECTED:
        assert f"Alert (no webhook configured): {text}" in logs.everything
    tick(instance, logged.cursor, receiver.url, logs)
    assert receiver.accepted == []


def test_only_alerted_records_have_a_message(instance: dg.DagsterInstance) -> None:
    dg.materialize([quiet], instance=instance)
    dg.materialize([deployed_endpoint], instance=instance)
    records = records_after(instance, 0, 100)
    kinds = [r.event_log_entry.dagster_event.event_type_value for r in records]
    assert kinds == ["ASSET_CHECK_EVALUATION"] * 2 + ["ASSET_OBSERVATION"] * 2
    messages = [alert_message(record) for record in records]
    assert messages[:3] == [None, None, None]
    assert messages[3]["event"]["metadata"][ROLLOUT_DECISION] == ROLLED_BACK
    assert records_after(instance, records[1].storage_id, 1) == [records[2]]


def test_plain_metadata_keeps_short_plain_values() -> None:
    metadata = {
        "n": dg.MetadataValue.int(3),
        "share": dg.MetadataValue.float(float("inf")),
        "ok": dg.MetadataValue.bool(True),
        "note": dg.MetadataValue.text("x" * 500),
        "table": dg.MetadataValue.json({"a": [1, 2]}),
        "doc": dg.MetadataValue.md("**bold**"),
    }
    plain = plain_metadata(metadata)
    assert plain["n"] == 3 and plain["share"] == "inf" and plain["ok"] is True
    assert len(plain["note"]) == 200 and plain["note"].endswith("…")
    assert "table" not in plain and plain["doc"] == "**bold**"
    many = plain_metadata({f"k{i}": dg.MetadataValue.int(i) for i in range(30)})
    assert len(many) == 12


def test_the_code_location_alerts_through_the_platform_resource(
    home: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, instance, logs: Logs
) -> None:
    sensor = defs.resolve_sensor_def("alerts")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 30
    assert "alert_webhook" in sensor.required_resource_keys
    assert isinstance(defs.resources["alert_webhook"], AlertWebhook)
    monkeypatch.setenv(ALERT_WEBHOOK_ENV_VAR, receiver.url)
    webhook = platform_resources([declaration(name) for name in names()])["alert_webhook"]
    assert receiver.url not in repr(webhook)  # shown by the variable's name

    first = tick(instance, None, None, logs, sensor=sensor, webhook=webhook)
    land_events(instance)
    tick(instance, first.cursor, None, logs, sensor=sensor, webhook=webhook)

    assert [body["text"] for body in receiver.accepted] == EXPECTED
    assert receiver.url not in logs.everything
