"""The live group's session fixtures stop after their last test, not at the end of the session:
the tests a worker runs after them meet neither the platform's processes nor the browser."""

from pathlib import Path

import pytest

pytestmark = pytest.mark.ui
pytest_plugins = ["pytester"]


def test_after_the_browsers_last_test_asyncio_runs_again(pytester: pytest.Pytester) -> None:
    """Sync Playwright runs an event loop in the worker's thread while the browser is open; the
    serving tests after the UI flows on the same worker failed with "asyncio.run() cannot be
    called from a running event loop" while the browser stayed open until the session's end."""
    pytester.makeconftest(
        f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "pytest_plugins = ['live', 'ui_flows']\n"
    )
    pytester.makepyfile(
        "import asyncio\n"
        "def test_a_flow(page):\n"
        "    page.set_content('<p>flow</p>')\n"
        "    assert page.text_content('p') == 'flow'\n"
        "def test_a_later_service_test():\n"
        "    assert asyncio.run(asyncio.sleep(0, result=1)) == 1\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
