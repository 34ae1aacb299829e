"""The platform executor: steps fork from a per-run forkserver unless the run says otherwise."""

import os

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableJob

from ml_assets.executor import forkserver_or_in_process_executor


@dg.asset
def first() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"pid": os.getpid(), "parent_pid": os.getppid()})


@dg.asset(deps=[first])
def second() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"pid": os.getpid(), "parent_pid": os.getppid()})


def two_step_job() -> dg.JobDefinition:
    return dg.Definitions(
        assets=[first, second],
        jobs=[dg.define_asset_job("two_steps", [first, second])],
        executor=forkserver_or_in_process_executor,
    ).resolve_job_def("two_steps")


def _processes(run_config: dict) -> list[tuple[int, int]]:
    """(pid, parent pid) of each step of a real run of ``two_step_job`` launched from here."""
    with dg.instance_for_test() as instance:
        result = dg.execute_job(
            # by file: step processes load the job from this file, as from a code location
            ReconstructableJob.for_file(__file__, two_step_job.__name__),
            instance=instance,
            run_config=run_config,
        )
        assert result.success
        return [
            (
                event.materialization.metadata["pid"].value,
                event.materialization.metadata["parent_pid"].value,
            )
            for event in result.get_asset_materialization_events()
        ]


@pytest.mark.parametrize(
    "run_config", [{}, {"execution": {"config": {"multiprocess": {"max_concurrent": 1}}}}]
)
def test_steps_fork_from_one_forkserver_by_default(run_config):
    processes = _processes(run_config)
    parents = {parent for _, parent in processes}
    assert len({pid for pid, _ in processes}) == 2
    assert len(parents) == 1
    assert parents != {os.getpid()}  # not children of the run (spawn) but of its forkserver


def test_a_run_may_still_choose_spawn_or_in_process():
    spawn = {"execution": {"config": {"multiprocess": {"start_method": {"spawn": {}}}}}}
    assert all(parent == os.getpid() for _, parent in _processes(spawn))
    in_process = _processes({"execution": {"config": {"in_process": {}}}})
    assert in_process == [(os.getpid(), os.getppid())] * 2
