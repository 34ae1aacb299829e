"""Registry aliases of a deployment: ``champion`` is live, ``previous_champion`` the fallback,
``challenger`` the newest registered version; the ``rollout_stage`` tag of a challenger says
whether it serves beside the champion (``shadow``, ``canary``) or no longer does (``full``,
``rolled_back``)."""

import time
from dataclasses import dataclass

from ml_assets.contract.names import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION, STAGE_TAG, STAGES


def _client():
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def alias_version(name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(_client().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


@dataclass(frozen=True)
class Aliases:
    """Which versions the deployment aliases point at (None: the alias is not set)."""

    champion: str | None
    previous: str | None


def aliases(name: str) -> Aliases:
    return Aliases(alias_version(name, CHAMPION), alias_version(name, PREVIOUS_CHAMPION))


def _point(name: str, alias: str, version: str | None) -> None:
    if version is None:
        if alias_version(name, alias) is not None:
            _client().delete_registered_model_alias(name, alias)
    else:
        _client().set_registered_model_alias(name, alias, version)


def promote(name: str, version: str) -> Aliases:
    """Make ``version`` the champion, remembering the one it replaces; returns the aliases as
    they were, for ``restore``."""
    before = aliases(name)
    _point(name, CHAMPION, version)
    if before.champion is not None and before.champion != version:
        _point(name, PREVIOUS_CHAMPION, before.champion)
    return before


def restore(name: str, before: Aliases, failed: str, reason: str) -> None:
    """Undo ``promote`` or ``roll_back``: both aliases point where they did, and ``failed``
    (the version that did not go live) says why."""
    _point(name, CHAMPION, before.champion)
    _point(name, PREVIOUS_CHAMPION, before.previous)
    _client().set_model_version_tag(name, failed, "deployment_failed", reason[:4000])


def roll_back(name: str) -> Aliases:
    """Point ``champion`` back at ``previous_champion`` (which is then unset); returns the
    aliases as they were, for ``restore``."""
    before = aliases(name)
    if before.previous is None:
        raise LookupError(f"{name} has no {PREVIOUS_CHAMPION!r} version to roll back to")
    _point(name, CHAMPION, before.previous)
    _point(name, PREVIOUS_CHAMPION, None)
    return before


def mark_rolled_back(name: str, version: str) -> None:
    """Record on ``version`` that a rollback took it out of service."""
    _client().set_model_version_tag(name, version, "rolled_back_at", str(int(time.time())))


def stage(name: str, version: str) -> str | None:
    """The ``rollout_stage`` of ``version`` (None: it never rolled out)."""
    return _client().get_model_version(name, version).tags.get(STAGE_TAG)


def set_stage(name: str, version: str, stage: str, reason: str | None = None) -> None:
    """Put ``version`` in rollout ``stage``; services serve it so once they reload (a version
    entering a rollout becomes the ``challenger``)."""
    if stage in STAGES:
        _point(name, CHALLENGER, version)
    client = _client()
    client.set_model_version_tag(name, version, STAGE_TAG, stage)
    if reason is not None:
        client.set_model_version_tag(name, version, "rollout_reason", reason[:4000])
