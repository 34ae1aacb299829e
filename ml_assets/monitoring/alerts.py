"""The ``alerts`` sensor: what a person must know posted to a webhook, each event exactly once.

Alerted: a failed check evaluation that is blocking or of severity ERROR, a failed monitoring
check (``MONITORING_CHECKS``, WARN), and an automatic rollback (an observation whose
``rollout/decision`` is ``rolled_back``). Each alert is one Slack-compatible JSON message:
``text``, one readable line (what, which asset and partition, why), and ``event``, the same as
plain fields with the event's ``storage_id``, by which a receiver can tell a repeat.

The cursor is the storage id of the last event handled. A tick reads the check evaluations and
observations after it in storage-id order (at most ``RECORDS_PER_TICK``) and posts their alerts
in that order, moving the cursor past an event only once its alert was accepted: when a post
fails the tick stops there and the next one posts that alert again, so nothing is lost and
nothing accepted is sent twice. Without a webhook URL the alerts are only logged. The first
tick (no cursor) starts at the end of the event log: turning the sensor on for an instance with
a history does not replay it.
"""

import math
import time
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster import DagsterEventType

from ml_assets.contract.names import MONITORING_CHECKS, ROLLED_BACK, ROLLOUT_DECISION
from resources.alert_webhook import AlertWebhook, AlertWebhookError

SENSOR_NAME = "alerts"
EVENT_TYPES = (DagsterEventType.ASSET_CHECK_EVALUATION, DagsterEventType.ASSET_OBSERVATION)
RECORDS_PER_TICK = 500
POST_BUDGET_S = 40.0
"""Seconds a tick may spend posting: it stops (cursor saved) well before the daemon's 60-s
tick timeout, which would discard the cursor and send the tick's accepted alerts again."""
METADATA_ENTRIES = 12
METADATA_TEXT_CHARS = 200
CHECK = "check_failed"
ROLLBACK = "rollback"


def alert_message(record: dg.EventLogRecord, partition: str | None = None) -> dict | None:
    """The webhook message for one event-log record, or None when it is not alerted.

    ``partition`` names the checked partition when the evaluation itself does not (a check
    result of a one-partition run; the sensor looks it up from the target materialization).
    """
    entry = record.event_log_entry
    event = entry.dagster_event
    if event is None:
        return None
    if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
        return _check_message(record, event.event_specific_data, partition)
    if event.event_type == DagsterEventType.ASSET_OBSERVATION:
        return _rollback_message(record, event.event_specific_data.asset_observation)
    return None


def is_alerted_check(evaluation: dg.AssetCheckEvaluation) -> bool:
    """A failure that is blocking, of severity ERROR, or of a monitoring check."""
    return not evaluation.passed and (
        bool(evaluation.blocking)
        or evaluation.severity == dg.AssetCheckSeverity.ERROR
        or evaluation.check_name in MONITORING_CHECKS
    )


def _check_message(
    record: dg.EventLogRecord, evaluation: dg.AssetCheckEvaluation, partition: str | None
) -> dict | None:
    if not is_alerted_check(evaluation):
        return None
    partition = evaluation.partition or partition
    severity = evaluation.severity.value
    metadata = plain_metadata(evaluation.metadata)
    if evaluation.blocking:
        what = "Blocking check failed"
    elif evaluation.check_name in MONITORING_CHECKS:
        what = "Monitoring check failed"
    else:
        what = "Check failed"
    why = evaluation.description or _summary(metadata) or "no description"
    asset = evaluation.asset_key.to_user_string()
    text = (
        f"{what}: {asset}{_partition_text(partition)}, {evaluation.check_name} ({severity}): {why}"
    )
    return _message(
        text,
        record,
        kind=CHECK,
        asset_key=asset,
        partition=partition,
        check_name=evaluation.check_name,
        severity=severity,
        blocking=bool(evaluation.blocking),
        description=evaluation.description,
        metadata=metadata,
    )


def _rollback_message(record: dg.EventLogRecord, observation: dg.AssetObservation) -> dict | None:
    metadata = plain_metadata(observation.metadata)
    if metadata.get(ROLLOUT_DECISION) != ROLLED_BACK:
        return None
    asset = observation.asset_key.to_user_string()
    version = metadata.get("rollout/version", "?")
    stage = metadata.get("rollout/stage")
    at = f" at {stage}" if stage else ""
    why = metadata.get("rollout/reason") or observation.description or "no reason given"
    text = (
        f"Automatic rollback: {asset}{_partition_text(observation.partition)}, "
        f"version {version} rolled back{at}: {why}"
    )
    return _message(
        text,
        record,
        kind=ROLLBACK,
        asset_key=asset,
        partition=observation.partition,
        check_name=None,
        severity=None,
        metadata=metadata,
    )


def _message(text: str, record: dg.EventLogRecord, **event: Any) -> dict:
    entry = record.event_log_entry
    return {
        "text": text,
        "event": {
            **event,
            "run_id": entry.run_id,
            "timestamp": entry.timestamp,
            "storage_id": record.storage_id,
        },
    }


def plain_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The entries whose values are plain (text, numbers, booleans), texts cut short: what a
    chat message and a receiver can show, never tables, plots or JSON documents."""
    plain: dict[str, Any] = {}
    for key, value in metadata.items():
        raw = value.value if isinstance(value, dg.MetadataValue) else value
        if isinstance(raw, float) and not math.isfinite(raw):
            raw = str(raw)  # JSON has no NaN or infinity
        if isinstance(raw, str) and len(raw) > METADATA_TEXT_CHARS:
            raw = raw[: METADATA_TEXT_CHARS - 1] + "…"
        if raw is None or isinstance(raw, str | int | float | bool):
            plain[key] = raw
        if len(plain) == METADATA_ENTRIES:
            break
    return plain


def _summary(metadata: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in list(metadata.items())[:3])


def _partition_text(partition: str | None) -> str:
    return f" [partition {partition}]" if partition else ""


def records_after(instance: dg.DagsterInstance, cursor: int, limit: int) -> list[dg.EventLogRecord]:
    """The first ``limit`` check evaluations and observations after storage id ``cursor``, in
    storage-id order.

    ``instance.get_event_records`` is deprecated, refuses a plain storage-id cursor for check
    evaluations on the run-sharded SQLite event log, and ``fetch_observations`` needs an asset
    key; this is the read Dagster's own event-log consumer daemon makes, on the cross-run index
    that every SQL event log (SQLite's index shard, PostgreSQL) keeps for both event types.
    """
    storage = instance.event_log_storage
    entries: dict[int, dg.EventLogEntry] = {}
    for event_type in EVENT_TYPES:
        entries.update(
            storage.get_logs_for_all_runs_by_log_id(
                after_cursor=cursor, dagster_event_type=event_type, limit=limit
            )
        )
    return [
        dg.EventLogRecord(storage_id=storage_id, event_log_entry=entries[storage_id])
        for storage_id in sorted(entries)[:limit]
    ]


def _checked_partition(instance: dg.DagsterInstance, record: dg.EventLogRecord) -> str | None:
    """The partition of the materialization a check evaluation targeted, if any."""
    evaluation = record.event_log_entry.dagster_event.event_specific_data
    target = evaluation.target_materialization_data
    if evaluation.partition is not None or target is None:
        return evaluation.partition
    found = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=evaluation.asset_key, storage_ids=[target.storage_id]),
        limit=1,
    )
    return found.records[0].partition_key if found.records else None


def build_alerts_sensor() -> dg.SensorDefinition:
    """The platform's ``alerts`` sensor (every 30 s, running by default), for every pipeline."""

    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Posts failed blocking or ERROR checks, failed monitoring checks and automatic "
            "rollbacks to $ML_ASSETS_ALERT_WEBHOOK_URL, each once, in event-log order."
        ),
    )
    def alerts(context: dg.SensorEvaluationContext, alert_webhook: AlertWebhook):
        instance = context.instance
        if context.cursor is None:
            head = instance.event_log_storage.get_maximum_record_id() or 0
            return dg.SensorResult(
                cursor=str(head), skip_reason=f"Alerting on events after storage id {head}."
            )
        cursor = int(context.cursor)
        records = records_after(instance, cursor, RECORDS_PER_TICK)
        if not records:
            return dg.SkipReason(f"No new check evaluation or observation after {cursor}.")
        deadline = time.monotonic() + POST_BUDGET_S
        handled, alerted = cursor, 0
        for record in records:
            message = alert_message(record)
            if message is not None:
                if time.monotonic() > deadline:
                    break
                if message["event"]["kind"] == CHECK and message["event"]["partition"] is None:
                    message = alert_message(record, _checked_partition(instance, record))
                if not alert_webhook.configured:
                    context.log.warning(f"Alert (no webhook configured): {message['text']}")
                else:
                    try:
                        alert_webhook.post(message)
                    except AlertWebhookError as error:
                        context.log.error(
                            f"Alert of storage id {record.storage_id} not delivered ({error}); "
                            "the next tick posts it again."
                        )
                        return dg.SensorResult(
                            cursor=str(handled),
                            skip_reason=(
                                f"{alerted} alerts posted; the alert of storage id "
                                f"{record.storage_id} was not delivered ({error})."
                            ),
                        )
                    context.log.info(f"Alert posted: {message['text']}")
                alerted += 1
            handled = record.storage_id
        return dg.SensorResult(
            cursor=str(handled),
            skip_reason=f"{alerted} alerts for the events up to storage id {handled}.",
        )

    return alerts
