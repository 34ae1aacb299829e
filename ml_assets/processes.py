"""Stopping the process groups a command started (its children included): what the CLI's
services, the benchmarks and the tests do with what they launched."""

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence


def stop_groups(groups: Sequence[subprocess.Popen | int], grace_s: float) -> None:
    """SIGTERM each process group: that of a process started with ``start_new_session=True``,
    or a group's id. Then SIGKILL the groups still holding a process after ``grace_s`` seconds
    (one deadline for all of them), and reap the processes started here."""
    children = [group for group in groups if isinstance(group, subprocess.Popen)]
    ids = [group.pid if isinstance(group, subprocess.Popen) else group for group in groups]
    _signal(ids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        for child in children:
            child.poll()  # a child not reaped still counts in its group
        if not any(_holds_a_process(group) for group in ids):
            break
        time.sleep(0.1)
    _signal([group for group in ids if _holds_a_process(group)], signal.SIGKILL)
    for child in children:
        child.wait()


def _signal(groups: Sequence[int], signum: int) -> None:
    for group in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signum)


def _holds_a_process(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
