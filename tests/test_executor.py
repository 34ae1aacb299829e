"""The platform executor: steps fork from a per-run forkserver unless the run says otherwise."""

import os
import sys

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableJob

from ml_assets.executor import CODE_LOCATION, forkserver_or_in_process_executor

pytestmark = pytest.mark.unit


def _where_am_i() -> dg.MaterializeResult:
    return dg.MaterializeResult(
        metadata={
            "pid": os.getpid(),
            "parent_pid": os.getppid(),
            "code_location_loaded": CODE_LOCATION in sys.modules,
        }
    )


@dg.asset
def first() -> dg.MaterializeResult:
    return _where_am_i()


@dg.asset(deps=[first])
def second() -> dg.MaterializeResult:
    return _where_am_i()


def two_step_job() -> dg.JobDefinition:
    return dg.Definitions(
        assets=[first, second],
        jobs=[dg.define_asset_job("two_steps", [first, second])],
        executor=forkserver_or_in_process_executor,
    ).resolve_job_def("two_steps")


def _processes(run_config: dict) -> list[tuple[int, int, bool]]:
    """(pid, parent pid, code location imported) of each step of a real run of ``two_step_job``
    launched from here."""
    with dg.instance_for_test() as instance:
        result = dg.execute_job(
            # by file: step processes load the job from this file, as from a code location
            ReconstructableJob.for_file(__file__, two_step_job.__name__),
            instance=instance,
            run_config=run_config,
        )
        assert result.success
        return [
            tuple(
                event.materialization.metadata[name].value
                for name in ("pid", "parent_pid", "code_location_loaded")
            )
            for event in result.get_asset_materialization_events()
        ]


@pytest.mark.parametrize(
    "run_config", [{}, {"execution": {"config": {"multiprocess": {"max_concurrent": 1}}}}]
)
def test_steps_fork_from_one_forkserver_that_loaded_the_code_location(run_config):
    processes = _processes(run_config)
    parents = {parent for _, parent, _ in processes}
    assert len({pid for pid, _, _ in processes}) == 2
    assert len(parents) == 1
    assert parents != {os.getpid()}  # not children of the run (spawn) but of its forkserver
    assert all(loaded for _, _, loaded in processes)


def test_a_run_may_still_choose_spawn_or_in_process():
    spawn = {"execution": {"config": {"multiprocess": {"start_method": {"spawn": {}}}}}}
    assert [(parent, loaded) for _, parent, loaded in _processes(spawn)] == [
        (os.getpid(), False)
    ] * 2
    in_process = _processes({"execution": {"config": {"in_process": {}}}})
    assert [(pid, parent) for pid, parent, _ in in_process] == [(os.getpid(), os.getppid())] * 2
