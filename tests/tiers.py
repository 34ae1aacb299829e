"""The test tiers, registered in ``pyproject.toml`` and enforced here."""

import pytest

TIERS = ("unit", "integration", "ui")
"""Every test is in one tier (a ``pytestmark`` of its module, or its own mark): ``unit`` needs no
service and starts no server, ``integration`` needs PostgreSQL, RabbitMQ, moto S3 or runs the
platform's own processes (services, daemon, workers, benchmarks), ``ui`` drives the Dagster UI
in a browser. ``make check`` runs the unit tier without the ``slow`` tests."""
SLOW_TEST_S = 60.0
"""A test that takes longer than this must be marked ``slow``, or it fails. Tests that take over
20 s on an idle 2-core machine are marked; the difference is the margin for a loaded one."""


SHARED_FIXTURES = {
    "live_platform": "live",
    "first_models": "live",
    "browser": "live",
    "serving_platform": "serving",
}
"""Session fixtures too costly to build twice: under ``pytest -n`` (``make test``) every test
that uses one runs on the same worker. Other tests keep their module together, so a module's
fixtures are built once too."""


STARTS_FIRST = "live"
"""The group whose tests wait on the live daemon's deadlines (automation, backfills): first in
the queue, so it runs beside the light modules rather than beside another heavy group."""
STARTS_LAST = (
    "serving",
    "test_benchmarks",
    "test_distributed",
    "test_models",
    "test_prod",
    "test_scaffold",
    "test_dev",
    "test_s3_faults",
)
"""Groups that start processes of their own (services, daemons, workers, benchmark runs), the
costliest first: after the light modules, so two of them share the two cores as little as
possible. ``make test`` keeps this order (``--no-loadscope-reorder``); xdist's default puts the
groups with the most tests first, which left the live platform, the benchmarks and the Celery
workers to run side by side at the end (load 10, deadlines missed)."""


def _rank(group: str) -> int:
    if group == STARTS_FIRST:
        return 0
    return 2 + STARTS_LAST.index(group) if group in STARTS_LAST else 1


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse a test that is in no tier or in two; give each its ``xdist_group``, the groups in
    the order they should start."""
    groups = {}
    for item in items:
        groups[item] = next(
            (g for fixture, g in SHARED_FIXTURES.items() if fixture in item.fixturenames),
            item.module.__name__,
        )
        item.add_marker(pytest.mark.xdist_group(groups[item]))
    items.sort(key=lambda item: _rank(groups[item]))  # stable: a module's own order stays
    wrong = [
        f"{item.nodeid}: {tiers or 'no tier'}"
        for item in items
        if len(tiers := [t for t in TIERS if item.get_closest_marker(t)]) != 1
    ]
    if wrong:
        raise pytest.UsageError(
            f"every test needs exactly one of the marks {', '.join(TIERS)}:\n" + "\n".join(wrong)
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Fail a test that took longer than ``SLOW_TEST_S`` without the ``slow`` mark."""
    report = yield
    if (
        report.when == "call"
        and report.passed
        and call.duration > SLOW_TEST_S
        and not item.get_closest_marker("slow")
    ):
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} took {call.duration:.0f} s (over {SLOW_TEST_S:g} s): mark it "
            "@pytest.mark.slow, or make it faster"
        )
    return report
