"""``ml-assets dev`` (``make run``) as a user starts and stops it: the Dagster instance it
configures; stopping it (Ctrl-C, SIGTERM) stops every process it started, the prediction
services the platform started detached included; the README's requests ask about what it
lands."""

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path

import pytest
from live import dev_environment, free_port, readme_requests, start_dev, wait_for, webserver_up

from ml_assets import pipelines
from ml_assets.cli import first_model_partitions
from ml_assets.contract.dagster_terms import partitions_definition
from ml_assets.contract.requests import parse_item
from ml_assets.home import PROJECT_ROOT
from ml_assets.instance import instance_yaml
from ml_assets.processes import stop_groups
from serving.spec import served_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MARK = "ML_ASSETS_TEST_DEV_MARK"
"""Set in the environment of ``ml-assets dev``, so every process of its tree carries it."""
START_SERVICE = """
import logging
from ml_assets import pipelines
from resources.prediction_services import prediction_services
services = prediction_services([pipelines.declaration("flights")])
services.endpoint("flights").ensure_running(logging.getLogger())
"""
"""What ``deployed_endpoint`` does first: start the pipeline's service, detached, unless it
answers (here without a model: it answers ``/health`` all the same)."""
STOPPED_WITHIN_S = 10.0


def _marked(mark: str) -> dict[int, str]:
    """Every live process whose environment carries ``mark``: its command line by pid."""
    needle = f"{MARK}={mark}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and needle in (entry / "environ").read_bytes().split(b"\0"):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:  # gone meanwhile
            continue
    return {pid: line.decode(errors="replace")[:160] for pid, line in found.items()}


def _started(home: Path, dagster_home: Path) -> subprocess.Popen:
    """``ml-assets dev`` on ``home`` (seeding nothing) with the user's ``DAGSTER_HOME``, once
    it has said where its UI is (its instance is configured by then)."""
    log = home / "dev.log"
    env = {**dev_environment(home), "DAGSTER_HOME": str(dagster_home)}
    with log.open("w") as output:
        process = start_dev(env, free_port(), output, "--seed-partitions", "0")
    wait_for(lambda: "Dagster UI on" in log.read_text(), 60, "ml-assets dev to start Dagster")
    return process


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0


def test_a_users_dagster_home_without_config_gets_the_platforms(tmp_path: Path) -> None:
    dagster_home = tmp_path / "my-dagster"
    process = _started(tmp_path, dagster_home)
    _stop(process)
    assert (dagster_home / "dagster.yaml").read_text() == instance_yaml(dagster_home)


def test_a_users_own_dagster_yaml_is_kept_and_what_it_lacks_is_said(tmp_path: Path) -> None:
    dagster_home = tmp_path / "my-dagster"
    dagster_home.mkdir()
    theirs = "telemetry:\n  enabled: false\n"
    (dagster_home / "dagster.yaml").write_text(theirs)
    process = _started(tmp_path, dagster_home)
    _stop(process)
    assert (dagster_home / "dagster.yaml").read_text() == theirs
    [said] = [line for line in (tmp_path / "dev.log").read_text().splitlines() if "lacks" in line]
    assert f"keeping your {dagster_home / 'dagster.yaml'} as it is" in said
    for storage in (
        "run_storage (dagster._core.storage.runs.SqliteRunStorage)",
        "event_log_storage (ml_assets.instance.sqlite.KeptOpenSqliteEventLogStorage)",
        "schedule_storage (dagster._core.storage.schedules.SqliteScheduleStorage)",
    ):
        assert storage in said
    assert "move that file away and run this again" in said


@pytest.mark.parametrize("how", ["Ctrl-C", "SIGTERM"])
def test_stopping_dev_stops_every_process_it_started(tmp_path: Path, how: str) -> None:
    """Ctrl-C (SIGINT to the terminal's foreground group) or SIGTERM to ``ml-assets dev``:
    within 10 s no process of its tree is left, nor the service the platform started."""
    mark = uuid.uuid4().hex
    env = {**dev_environment(tmp_path), MARK: mark}
    port = free_port()
    with (tmp_path / "dev.log").open("w") as log:
        process = start_dev(env, port, log, "--seed-partitions", "0")
    try:
        wait_for(lambda: webserver_up(port), 180, "the Dagster webserver")
        started = subprocess.run(
            [sys.executable, "-c", START_SERVICE], cwd=PROJECT_ROOT, env=env, timeout=180,
            capture_output=True, text=True,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        service = int((tmp_path / "serving" / "flights.pid").read_text())
        tree = _marked(mark)
        kinds = ("ml_assets.cli dev", "dagster dev", "dagster_webserver", "dagster._daemon",
                 "code-server", "ml_assets.cli serve flights")  # fmt: skip
        assert all(any(kind in line for line in tree.values()) for kind in kinds), tree
        assert service in tree and os.getpgid(service) != os.getpgid(process.pid)

        began = time.monotonic()
        if how == "Ctrl-C":
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGTERM)
        deadline = began + STOPPED_WITHIN_S
        while _marked(mark) and time.monotonic() < deadline:
            time.sleep(0.1)
        took = time.monotonic() - began
        assert _marked(mark) == {}, f"left {took:.1f} s after {how}"
        assert process.wait(1) == 0
        print(f"{how}: {len(tree)} processes stopped in {took:.1f} s")
    finally:
        stop_groups([process], 5)
        for pid in _marked(mark):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("name", pipelines.names())
def test_the_readmes_request_asks_about_what_make_run_lands(name: str) -> None:
    """The README's ``curl`` of each pipeline is a valid request dated inside the online
    snapshot that ``make run`` lands last (the one the service loads), so its answer carries
    no ``date_outside_snapshot`` warning (``test_live_platform`` sends it)."""
    declared = pipelines.declaration(name)
    served = served_model(declared, pipelines.serving_hooks(name))
    request = readme_requests()[name]
    parse_item(served.request, request)  # as the service reads a JSON body
    if served.snapshot_dates is None:
        return
    keys = partitions_definition(declared.partitions).get_partition_keys()
    first, end = served.snapshot_dates(keys[first_model_partitions(name) - 1])
    assert first <= date.fromisoformat(request[served.snapshot_date_field]) < end
