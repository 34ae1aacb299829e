"""Stopping the process groups a command started (its children included): what the CLI's
services, the benchmarks and the tests do with what they launched."""

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence


def stop_groups(processes: Sequence[subprocess.Popen], grace_s: float) -> None:
    """SIGTERM the process group of each of ``processes`` (each started with
    ``start_new_session=True``), then SIGKILL the groups of those still running after
    ``grace_s`` seconds."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
