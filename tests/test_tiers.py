"""The suite's own checks of its tiers: a test in no tier is refused, an unmarked slow one fails."""

from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def only_the_tiers_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs without the installed plugins (dagster's, hypothesis', schemathesis'): their imports
    made each run take a minute on a loaded machine."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


def run(pytester: pytest.Pytester, source: str, slow_s: str = "0.5") -> pytest.RunResult:
    """``source`` as a test module, run by pytest with the tiers plugin (tests slow after
    ``slow_s`` seconds)."""
    pytester.makeconftest(
        f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        f"import tiers\ntiers.SLOW_TEST_S = {slow_s}\npytest_plugins = ['tiers']\n"
    )
    pytester.makeini(
        "[pytest]\nmarkers =\n    unit: u\n    integration: i\n    ui: b\n    slow: s\n"
    )
    pytester.makepyfile(source)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider")


def test_a_test_in_no_tier_is_refused(pytester: pytest.Pytester) -> None:
    result = run(pytester, "def test_loose():\n    pass\n")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_loose: no tier*"])


def test_a_test_in_two_tiers_is_refused(pytester: pytest.Pytester) -> None:
    source = "import pytest\n@pytest.mark.unit\n@pytest.mark.ui\ndef test_both():\n    pass\n"
    result = run(pytester, source)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.re_match_lines([r".*test_both: \['unit', 'ui'\]"])


def test_an_unmarked_slow_test_fails_and_a_marked_one_passes(pytester: pytest.Pytester) -> None:
    source = (
        "import time, pytest\npytestmark = pytest.mark.unit\n"
        "def test_unmarked():\n    time.sleep(1)\n"
        "@pytest.mark.slow\ndef test_marked():\n    time.sleep(1)\n"
        "def test_quick():\n    pass\n"
    )
    result = run(pytester, source)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_unmarked took 1 s (over 0.5 s): mark it*"])
