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


def run(
    pytester: pytest.Pytester, source: str, slow_s: str = "0.5", *args: str
) -> pytest.RunResult:
    """``source`` as a test module, run by pytest with the tiers plugin (tests slow after
    ``slow_s`` seconds) and ``args``."""
    pytester.makeconftest(
        f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        f"import tiers\ntiers.SLOW_TEST_S = {slow_s}\npytest_plugins = ['tiers']\n"
    )
    pytester.makeini(
        "[pytest]\nmarkers =\n    unit: u\n    integration: i\n    ui: b\n    slow: s\n"
    )
    pytester.makepyfile(source)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


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


def test_under_xdist_a_modules_tests_share_one_worker(pytester: pytest.Pytester) -> None:
    """``make test``'s ``-n 2 --dist loadgroup`` keeps a module (and a shared fixture's users)
    on one worker, so its expensive fixtures are built once."""
    test = (
        "import os, pytest\npytestmark = pytest.mark.unit\n"
        "@pytest.mark.parametrize('n', range(6))\n"
        "def test_it(n, request):\n"
        "    with open(f'{request.module.__name__}.workers', 'a') as out:\n"
        "        out.write(os.environ['PYTEST_XDIST_WORKER'] + '\\n')\n"
    )
    pytester.makepyfile(test_two=test)
    result = run(pytester, test, "0.5", "-p", "xdist", "-n", "2", "--dist", "loadgroup")
    result.assert_outcomes(passed=12)
    for module in ("test_two", "test_under_xdist_a_modules_tests_share_one_worker"):
        workers = (pytester.path / f"{module}.workers").read_text().split()
        assert len(workers) == 6 and len(set(workers)) == 1, (module, workers)


def test_the_live_group_starts_first_and_the_heavy_groups_last(pytester: pytest.Pytester) -> None:
    """``make test`` hands the groups to the workers in this order (``--no-loadscope-reorder``):
    the live platform beside the light modules, the process-heavy groups after them."""
    light = "import pytest\npytestmark = pytest.mark.unit\ndef test_a():\n    pass\n"
    pytester.makepyfile(test_prod=light, test_models=light)
    pytester.makepyfile(
        test_ui=(
            "import pytest\npytestmark = pytest.mark.ui\n"
            "@pytest.fixture\ndef live_platform():\n    return None\n"
            "def test_clicks(live_platform):\n    pass\n"
        )
    )
    result = run(pytester, light, "0.5", "--collect-only", "-q")
    collected = [line.split("::")[0] for line in result.stdout.lines if "::" in line]
    assert collected == [
        "test_ui.py",
        "test_the_live_group_starts_first_and_the_heavy_groups_last.py",
        "test_models.py",
        "test_prod.py",
    ]
