"""A study's worker shares as Celery tasks, for studies on a shared storage (PostgreSQL) when
steps run on Celery workers.

Every share is sent as a task (``ml_assets.study_share``, run by ``ml-assets worker``) and
claimed by whoever starts it first: a row inserted into ``ml_assets_study_shares`` in the
study's database, so no share ever runs twice. The caller (usually the study's own step, which
holds a worker itself) gives idle workers ``CLAIM_GRACE_S`` to claim the shares, then runs
every unclaimed one itself and waits for the others: with one worker, or every other one busy,
the study still finishes instead of waiting for a worker that never comes. A share whose
worker died mid-share is delivered again but already claimed: its trials are lost, not run
twice, and the caller does not wait for it again.

The training data travels in the task (Parquet, base64 in JSON): workers share no disk.
"""

import base64
import io
import os
import socket
import time
import uuid
from dataclasses import asdict
from typing import Any

import pandas as pd

from ml_assets.contract.search_space import FamilySpace
from ml_assets.contract.tasks import Task
from ml_assets.modeling.estimators import Features
from ml_assets.modeling.study import StudySettings, work

STUDY_SHARE_TASK = "ml_assets.study_share"
CLAIM_GRACE_S = 1.0
SHARE_PRIORITY = 9
"""Above every step's (dagster-celery's default is 5): a free worker takes a share first, since
the step that waits for it holds a worker."""


def run_shares(
    settings: StudySettings,
    shares: list[int],
    space: list[FamilySpace],
    features: Features,
    data: pd.DataFrame,
    target: str,
    task: Task,
    metric: str,
) -> None:
    """Run each worker's share (``shares[w]`` trials) of the study on the Celery workers, or
    here when none claims it in time; returns when every share ran."""
    from ml_assets.executor import celery_app

    buffer = io.BytesIO()
    data.to_parquet(buffer)
    common = {
        "settings": asdict(settings),
        "space": [family.model_dump() for family in space],
        "features": {"categorical": list(features.categorical), "numeric": list(features.numeric)},
        "data": base64.b64encode(buffer.getvalue()).decode(),
        "target": target,
        "task": task,
        "metric": metric,
    }
    call = uuid.uuid4().hex[:12]
    payloads = {
        f"{settings.study_name}/{call}/{w}": {**common, "worker": w, "trials": n}
        for w, n in enumerate(shares)
        if n
    }
    me = f"caller@{socket.gethostname()}:{os.getpid()}"
    app, claims = celery_app(), ShareClaims(settings.storage)
    try:
        sent = {
            share: app.send_task(
                STUDY_SHARE_TASK,
                args=[{**payload, "share": share}],
                queue="dagster",
                routing_key=f"dagster.{STUDY_SHARE_TASK}",
                priority=SHARE_PRIORITY,
            )
            for share, payload in payloads.items()
        }
        deadline = time.monotonic() + CLAIM_GRACE_S
        while time.monotonic() < deadline and len(claims.claimants(list(sent))) < len(sent):
            time.sleep(0.1)
        for share in reversed(list(sent)):  # workers take the queue's first shares
            run_share({**payloads[share], "share": share}, me, claims)
        for share, claimant in claims.claimants(list(sent)).items():
            if claimant != me:
                sent[share].get(timeout=settings.timeout_seconds + 600, disable_sync_subtasks=False)
    finally:
        claims.dispose()
        app.close()


def run_share(payload: dict[str, Any], claimant: str, claims: "ShareClaims | None" = None) -> bool:
    """Run one share of a study unless another claimant has it; whether this one ran it."""
    from pydantic import TypeAdapter

    settings = StudySettings(**payload["settings"])
    mine = claims or ShareClaims(settings.storage)
    try:
        if not mine.claim(payload["share"], claimant):
            return False
    finally:
        if claims is None:
            mine.dispose()
    work(
        settings,
        payload["worker"],
        TypeAdapter(list[FamilySpace]).validate_python(payload["space"]),
        Features(**payload["features"]),
        base64.b64decode(payload["data"]),
        payload["target"],
        payload["task"],
        payload["metric"],
        payload["trials"],
    )
    return True


class ShareClaims:
    """Who claimed which share: table ``ml_assets_study_shares`` in the study's database."""

    def __init__(self, storage: str) -> None:
        import sqlalchemy

        self._sql = sqlalchemy.text
        self._engine = sqlalchemy.create_engine(storage, pool_pre_ping=True)
        with self._engine.begin() as connection:
            connection.execute(self._sql(
                "CREATE TABLE IF NOT EXISTS ml_assets_study_shares (share text PRIMARY KEY, "
                "claimant text NOT NULL, claimed_at timestamptz NOT NULL DEFAULT now())"
            ))  # fmt: skip

    def claim(self, share: str, claimant: str) -> bool:
        """Whether ``claimant`` got ``share``: nobody had it."""
        with self._engine.begin() as connection:
            inserted = connection.execute(
                self._sql(
                    "INSERT INTO ml_assets_study_shares (share, claimant) "
                    "VALUES (:share, :claimant) ON CONFLICT (share) DO NOTHING"
                ),
                {"share": share, "claimant": claimant},
            ).rowcount
        return inserted == 1

    def claimants(self, shares: list[str]) -> dict[str, str]:
        """Each of ``shares`` claimed so far, and by whom."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                self._sql(
                    "SELECT share, claimant FROM ml_assets_study_shares WHERE share = ANY(:shares)"
                ),
                {"shares": shares},
            ).all()
        return {share: claimant for share, claimant in rows}

    def of_study(self, study_name: str) -> dict[str, str]:
        """Every share of the study's calls claimed so far, and by whom."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                self._sql("SELECT share, claimant FROM ml_assets_study_shares WHERE share LIKE :p"),
                {"p": study_name.replace("%", r"\%").replace("_", r"\_") + "/%"},
            ).all()
        return {share: claimant for share, claimant in rows}

    def dispose(self) -> None:
        self._engine.dispose()
