"""Going live: the registry's aliases move only together with what the service serves.

A deploy (``promote``) or a rollback (``roll_back``) moves the aliases first, then has the
service load the new champion and checks it; when any of that fails, ``undone_on_failure``
points the aliases back, reloads what they name and fails the step saying so, so the registry
never names a champion that the service does not serve.
"""

import contextlib
from collections.abc import Iterator
from typing import Any

import dagster as dg

from ml_assets.deployment import registry
from resources.prediction_services import ServingEndpoint


@contextlib.contextmanager
def undone_on_failure(
    endpoint: ServingEndpoint,
    name: str,
    before: registry.Aliases,
    version: str,
    action: str,
    log: Any,
) -> Iterator[None]:
    """Run the block that puts ``version`` live (the aliases already moved from ``before``);
    if it raises, restore the aliases, tag ``version`` with the reason, reload the service and
    raise a ``dg.Failure`` that starts with ``action``."""
    try:
        yield
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
        registry.restore(name, before, version, reason)
        restored = _reload_quietly(endpoint, before.champion, log)
        raise dg.Failure(
            description=(
                f"{action} failed and was undone: {reason}. The service now serves {restored}."
            ),
            metadata={"failed_version": version, "restored_version": str(before.champion)},
        ) from error


def _reload_quietly(endpoint: ServingEndpoint, champion: str | None, log: Any) -> str:
    """The service put back on ``champion``, or on no model when there is none (a failed first
    deploy: the version that failed must not go on answering); what it serves now."""
    try:
        if champion is None:
            endpoint.unload()
            return "no model (there is no champion)"
        served = endpoint.reload()
    except Exception as error:  # the undo is reported; the original failure matters more
        log.error(f"putting the service back failed: {error}")
        return "an unknown version (putting it back failed)"
    return f"v{served['version']}" if served.get("ready") else "no model (there is no champion)"
