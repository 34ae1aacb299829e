"""A study's worker shares as Celery tasks, for studies on a shared storage (PostgreSQL) when
steps run on Celery workers.

Every share is sent as a task (``ml_assets.study_share``, run by ``ml-assets worker``) and
claimed by whoever starts it first: its advisory lock taken, then a row inserted into
``ml_assets_study_shares`` in the study's database, so no share ever runs twice. The caller
(usually the study's own step, which holds a worker itself) gives idle workers
``CLAIM_GRACE_S`` to claim the shares, runs every unclaimed one itself, one after another
within the study's timeout, then waits for the others by taking their locks: a lock comes free
when its share is done or its worker died (``ml_assets.advisory_locks``), so the caller never
waits for a worker that never comes. A share whose worker died is delivered again but already
claimed: its remaining trials are lost, not run twice.

The training data travels in the task (Parquet, base64 in JSON): workers share no disk. The
storage URL travels without its password; a worker takes it from its own
``ML_ASSETS_OPTUNA_STORAGE`` when that names the same database.
"""

import base64
import contextlib
import io
import logging
import os
import socket
import time
import uuid
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from ml_assets.advisory_locks import session_lock
from ml_assets.contract.model_format import Features
from ml_assets.contract.search_space import FamilySpace
from ml_assets.contract.tasks import Task
from ml_assets.modeling.trials import StudySettings, work

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

STUDY_SHARE_TASK = "ml_assets.study_share"
CLAIM_GRACE_S = 1.0
SHARE_PRIORITY = 9
"""Above every step's (dagster-celery's default is 5): a free worker takes a share first, since
the step that waits for it holds a worker."""
RESULT_WAIT_S = 30.0
"""How long a share's result may take to be stored once its lock is free, before the caller
takes its worker for lost."""
log = logging.getLogger(__name__)


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
    here when none claims it in time; returns when every share ran or lost its worker."""
    from celery.exceptions import TimeoutError as NoResultYet

    from ml_assets.executor import celery_app

    deadline = time.monotonic() + settings.timeout_seconds
    buffer = io.BytesIO()
    data.to_parquet(buffer)
    common = {
        "settings": {**asdict(settings), "storage": _without_password(settings.storage)},
        "space": [family.model_dump() for family in space],
        "features": asdict(features),
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
    with contextlib.ExitStack() as stack:
        app = celery_app()
        stack.callback(app.close)
        claims = ShareClaims(settings.storage)
        stack.callback(claims.dispose)
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
        grace = time.monotonic() + CLAIM_GRACE_S
        while time.monotonic() < grace and len(claims.claimants(list(sent))) < len(sent):
            time.sleep(0.1)
        for share in reversed(list(sent)):  # workers take the queue's first shares
            left = replace(settings, timeout_seconds=max(deadline - time.monotonic(), 1.0))
            if run_share({**payloads[share], "share": share}, me, claims, left):
                sent.pop(share).revoke()  # its task, when a worker takes it, is a no-op
        for share, result in sent.items():
            claims.wait_for(share)  # done, or its worker gone
            try:  # the result is stored just after the lock comes free; raises a share's error
                result.get(timeout=RESULT_WAIT_S, disable_sync_subtasks=False)
            except NoResultYet:
                log.warning("study share %s lost its worker: its remaining trials are lost", share)


def run_share(
    payload: dict[str, Any],
    claimant: str,
    claims: "ShareClaims | None" = None,
    settings: StudySettings | None = None,
) -> bool:
    """Run one share of a study unless another claimant has it; whether this one ran it."""
    from pydantic import TypeAdapter

    settings = settings or StudySettings(
        **{**payload["settings"], "storage": _with_password(payload["settings"]["storage"])}
    )
    mine = claims or ShareClaims(settings.storage)
    try:
        lock = mine.claim(payload["share"], claimant)
    finally:
        if claims is None:
            mine.dispose()
    if lock is None:
        return False
    with contextlib.closing(lock):
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


def _without_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url)._replace(password=None).render_as_string(hide_password=False)


def _with_password(url: str) -> str:
    """``url``, or this machine's Optuna storage when it names the same database."""
    from resources.optuna_storage import default_optuna_storage

    mine = default_optuna_storage().url
    return mine if mine and _without_password(mine) == url else url


class ShareClaims:
    """Who claimed which share: table ``ml_assets_study_shares`` in the study's database, and
    each running share's advisory lock."""

    def __init__(self, storage: str) -> None:
        import sqlalchemy

        self.storage = storage
        self._engine = sqlalchemy.create_engine(storage, pool_pre_ping=True)
        self._run(
            "CREATE TABLE IF NOT EXISTS ml_assets_study_shares (share text PRIMARY KEY, "
            "claimant text NOT NULL, claimed_at timestamptz NOT NULL DEFAULT now())"
        )

    def claim(self, share: str, claimant: str) -> "Connection | None":
        """The connection holding ``share``'s lock if ``claimant`` got it (nobody had it), else
        None. The lock is taken first, so a share seen claimed is locked until it is done."""
        lock = session_lock(self.storage, f"study-share:{share}", wait=False)
        if lock is None:
            return None
        inserted = self._run(
            "INSERT INTO ml_assets_study_shares (share, claimant) VALUES (:share, :claimant) "
            "ON CONFLICT (share) DO NOTHING",
            share=share,
            claimant=claimant,
        ).rowcount
        if inserted == 1:
            return lock
        lock.close()
        return None

    def wait_for(self, share: str) -> None:
        """Until ``share``, claimed, is done or its claimant gone."""
        if lock := session_lock(self.storage, f"study-share:{share}"):
            lock.close()

    def claimants(self, shares: list[str]) -> dict[str, str]:
        """Each of ``shares`` claimed so far, and by whom."""
        rows = self._run(
            "SELECT share, claimant FROM ml_assets_study_shares WHERE share = ANY(:shares)",
            shares=shares,
        )
        return {share: claimant for share, claimant in rows}

    def of_study(self, study_name: str) -> dict[str, str]:
        """Every share of the study's calls claimed so far, and by whom."""
        rows = self._run(
            "SELECT share, claimant FROM ml_assets_study_shares WHERE starts_with(share, :prefix)",
            prefix=f"{study_name}/",
        )
        return {share: claimant for share, claimant in rows}

    def _run(self, statement: str, **params: Any):
        import sqlalchemy

        with self._engine.begin() as connection:
            result = connection.execute(sqlalchemy.text(statement), params)
            return result.all() if result.returns_rows else result

    def dispose(self) -> None:
        self._engine.dispose()
