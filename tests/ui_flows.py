"""The user's flows in the Dagster UI, driven in a real browser (Debian's chromium, headless).

Each flow is a function over a Playwright ``Page`` and the session's running platform: it does
what a user does (open a page, click, type), waits for what the user waits to see, and ends on
the page that shows the outcome, which it saves as ``<name>.png`` when screenshots are asked
for (``--screenshots DIR``; ``make screenshots`` regenerates the docs'). What the user sees
is asserted with Playwright's ``expect``, which retries until the page shows it; the tests in
``test_ui.py`` then check the platform's state behind the page.

The run page's live event log is not relied on: in ``ml-assets dev`` it stops following a run
(see ``test_ui.py``), so a flow sees a run succeed where the UI polls, on the asset page, the
runs list and the backfill page.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from live import FINISHED, LivePlatform, stopped_after_last_user, wait_for
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from resources.landing_zone import LandingZone

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 800}
"""The docs' screenshots (docs/screenshots) are taken at this size."""
RUN_TIMEOUT_MS = 300_000
"""How long a flow waits for a run it launched, on a loaded 2-core machine."""
LOAD_TIMEOUT_MS = 60_000
"""How long a flow waits for a page to show what it expects (both shared by ``expect``)."""
expect.set_options(timeout=LOAD_TIMEOUT_MS)
DISMISS_COMMUNITY_DIALOG = "window.localStorage.setItem('communityNux', JSON.stringify('1'))"
"""The webserver asks a first-time visitor on localhost to join its newsletter; a returning
user has answered (the UI remembers it under this key)."""
SHORT_RUN_ID = re.compile(r"Launched run\s+([0-9a-f]{8})")
RUNS_FEED_ROW_CSS = "[class*='RunsFeedRow_row']"
RUNS_FEED_ROW = "xpath=ancestor::div[contains(@class, 'RunsFeedRow_row')][1]"
"""A row of a runs list (a virtualized table of divs, without ARIA rows): every row, and the
row an element is in."""
BACKFILL_ID = re.compile(r"Created backfill\s+([a-z0-9]+)")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--screenshots",
        metavar="DIR",
        type=Path,
        default=None,
        help="save the final page of every UI flow as DIR/<flow>.png (the docs' screenshots)",
    )


@dataclass(frozen=True)
class Screenshots:
    """Where the flows' final pages are saved; nowhere when ``directory`` is None."""

    directory: Path | None

    def save(self, page: Page, name: str) -> None:
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            # dialogs fade in: finish their transitions first
            page.screenshot(path=self.directory / f"{name}.png", animations="disabled")


@pytest.fixture(scope="session")
def screenshots(request: pytest.FixtureRequest) -> Screenshots:
    return Screenshots(request.config.getoption("--screenshots"))


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's chromium, never a downloaded browser (``.ci/run`` installs it)."""
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, args=["--headless", "--no-sandbox"]
    )

    def stop() -> None:
        browser.close()
        playwright.stop()

    with stopped_after_last_user("browser", stop):
        yield browser


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser tab at the screenshots' size, as a returning user's."""
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(DISMISS_COMMUNITY_DIALOG)
    context.set_default_timeout(LOAD_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def open_page(page: Page, platform: LivePlatform, path: str) -> None:
    page.goto(f"{platform.url}{path}")


def asset_path(pipeline: str, asset: str) -> str:
    return f"/assets/{pipeline}/{asset}"


def toast(page: Page, pattern: re.Pattern) -> str:
    """The first group of ``pattern`` in the toast the UI shows after a launch."""
    message = page.get_by_role("region", name=re.compile("^Notifications")).get_by_text(pattern)
    expect(message).to_be_visible()
    found = pattern.search(message.inner_text())
    assert found, message.inner_text()
    return found.group(1)


def _launch_from_materialize_dialog(page: Page, selection: str, button: str) -> None:
    """On an asset page: *Materialize…*, type the partition selection, press ``button``."""
    page.get_by_role("button", name="Materialize…").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Partition selection")).to_be_visible()
    partitions = dialog.get_by_placeholder(re.compile(r"^ex: "))
    partitions.fill(selection)
    partitions.press("Enter")
    launch = dialog.get_by_role("button", name=button)
    expect(launch).to_be_enabled()
    launch.click()
    expect(dialog).to_be_hidden()


# 1. the lineage graph


def lineage_shows_every_group(
    page: Page, platform: LivePlatform, screenshots: Screenshots
) -> list[str]:
    """*Lineage*: the global asset graph, one node per asset group. Returns the group names
    the graph shows once it shows as many as the code location defines (it draws them as its
    layout arrives: read at the first node, a loaded machine's graph lacked some)."""
    defined = platform.graphql("{ assetNodes { groupName } }")["assetNodes"]
    open_page(page, platform, "/asset-groups")
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    nodes = page.locator("svg foreignObject")
    expect(nodes).to_have_count(len({node["groupName"] for node in defined}), timeout=60_000)
    screenshots.save(page, "lineage")
    return sorted(text.strip() for text in nodes.all_text_contents())


# 2. one partition, from the asset's page


@dataclass(frozen=True)
class LaunchedRun:
    short_id: str
    """The run id as the UI shows it (its first 8 characters)."""
    partition: Locator
    """The partition's detail on the asset's page, once it names the run."""


def materialize_one_partition(
    page: Page,
    platform: LivePlatform,
    screenshots: Screenshots,
    pipeline: str,
    asset: str,
    partition: str,
) -> LaunchedRun:
    """The asset's *Partitions* tab → *Materialize…* → one partition → *Launch 1 run*; then
    the runs list shows the run succeed and the partition's page shows its materialization."""
    open_page(page, platform, f"{asset_path(pipeline, asset)}?view=partitions")
    _launch_from_materialize_dialog(page, partition, "Launch 1 run")
    short_id = toast(page, SHORT_RUN_ID)
    run_row(page, platform, short_id, "Success")
    detail = partition_detail(page, platform, pipeline, asset, partition)
    expect(detail.get_by_text(short_id, exact=True)).to_be_visible()
    screenshots.save(page, "materialize-partition")
    return LaunchedRun(short_id, detail)


def run_row(page: Page, platform: LivePlatform, short_id: str, status: str) -> Locator:
    """*Runs*: the row of the run ``short_id``, once it shows ``status`` (the list refreshes
    itself every 15 s)."""
    open_page(page, platform, "/runs")
    row = page.get_by_text(short_id, exact=True).locator(RUNS_FEED_ROW)
    expect(row.get_by_text(status, exact=True)).to_be_visible(timeout=RUN_TIMEOUT_MS)
    return row


def follow_a_run_on_its_page(
    page: Page, platform: LivePlatform, pipeline: str, asset: str, partition: str
) -> str:
    """*Launch 1 run* as above, then the toast's *View*: the run's page, opened while the run
    is queued, left open until the run has finished. Returns the run's short id."""
    open_page(page, platform, f"{asset_path(pipeline, asset)}?view=partitions")
    _launch_from_materialize_dialog(page, partition, "Launch 1 run")
    short_id = toast(page, SHORT_RUN_ID)
    page.get_by_role("region", name=re.compile("^Notifications")).get_by_role(
        "link", name="View"
    ).click()
    expect(page).to_have_url(re.compile(rf"/runs/{short_id}"))
    wait_for(
        lambda: any(
            run["runId"].startswith(short_id) and run["status"] in FINISHED
            for run in platform.runs()
        ),
        RUN_TIMEOUT_MS / 1000,
        f"run {short_id} to finish",
    )
    return short_id


# 3. a range, from the partitions view


@dataclass(frozen=True)
class LaunchedBackfill:
    backfill_id: str
    page: Page
    """The backfill's page, its *Runs* tab open."""
    runs: Locator
    """The rows of its runs."""


def backfill_a_range(
    page: Page,
    platform: LivePlatform,
    screenshots: Screenshots,
    pipeline: str,
    asset: str,
    first: str,
    last: str,
) -> LaunchedBackfill:
    """The asset's *Partitions* tab → *Materialize…* → the range ``[first...last]`` →
    *Launch backfill*; then the backfill's page shows it succeed with one run."""
    open_page(page, platform, f"{asset_path(pipeline, asset)}?view=partitions")
    _launch_from_materialize_dialog(page, f"[{first}...{last}]", "Launch backfill")
    backfill_id = toast(page, BACKFILL_ID)
    open_page(page, platform, f"/runs/b/{backfill_id}?tab=runs")
    expect(page.get_by_text("Succeeded", exact=True).first).to_be_visible(timeout=RUN_TIMEOUT_MS)
    runs = page.locator(RUNS_FEED_ROW_CSS)
    expect(runs.first).to_be_visible()
    screenshots.save(page, "backfill")
    return LaunchedBackfill(backfill_id, page, runs)


# 4. a failing blocking check


DAMAGE = "missing-column"
"""The fault the damaged day is landed with: every file lacks a declared column, which the
blocking ``landed_file_schema`` check of the raw layer fails on."""


def land_damaged_day(platform: LivePlatform, day: str, fault: str = DAMAGE) -> None:
    """What an upstream system does: export one day (flights and weather) with ``fault``."""
    from ml_assets.pipelines.flights.publish import publish

    publish(LandingZone(url=str(platform.home / "landing")), [day], fault=fault)


def next_day(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


@dataclass(frozen=True)
class FailedCheck:
    metadata: Locator
    """The *Metadata* dialog of the failed evaluation: one row per entry."""
    failing_rules: Locator
    """The ``failing_rules`` entry opened: its table of rules and failure counts."""


def open_failed_check(
    page: Page,
    platform: LivePlatform,
    screenshots: Screenshots,
    pipeline: str,
    asset: str,
    check: str,
    partition: str,
) -> FailedCheck:
    """The asset's *Checks* tab → the check → *Execution history* → the metadata of the
    partition's failed evaluation → its ``failing_rules``."""
    open_page(page, platform, f"{asset_path(pipeline, asset)}?view=checks&checkDetail={check}")
    page.get_by_role("tab", name="Execution history").click()
    row = page.get_by_role("row").filter(has=page.get_by_text(partition, exact=True))
    expect(row.get_by_text("Failed", exact=True)).to_be_visible()
    row.get_by_role("button").click()  # the metadata button (an icon, "View metadata")
    metadata = page.get_by_role("dialog").filter(has_text="failure_count")
    expect(metadata).to_be_visible()
    metadata.get_by_role("row").filter(has_text="failing_rules").get_by_text(
        "[Show Markdown]"
    ).click()
    failing_rules = page.get_by_role("dialog").filter(has_text=re.compile(r"^failing_rules"))
    expect(failing_rules.get_by_role("table")).to_be_visible()
    screenshots.save(page, "failed-check")
    return FailedCheck(metadata, failing_rules)


def partition_detail(
    page: Page, platform: LivePlatform, pipeline: str, asset: str, partition: str
) -> Locator:
    """The asset's *Partitions* tab with ``partition`` selected: its detail pane."""
    open_page(
        page, platform, f"{asset_path(pipeline, asset)}?view=partitions&partition={partition}"
    )
    detail = page.get_by_text("Latest materialization", exact=True).locator(
        f"xpath=ancestor::div[.//text()[normalize-space()='{partition}']][1]"
    )
    expect(detail).to_be_visible()
    return detail


# 5. the model evaluation


def model_evaluation_plots(
    page: Page, platform: LivePlatform, screenshots: Screenshots, pipeline: str
) -> dict[str, tuple[int, int]]:
    """``<pipeline>/model_evaluation``'s page: the metadata of its latest materialization, each
    ``plot/…`` entry opened in turn. Returns, per plot, the size of the image the page decoded
    (an image that does not decode fails the flow); the screenshot shows the first plot."""
    open_page(page, platform, asset_path(pipeline, "model_evaluation"))
    expect(page.get_by_text("Latest materialization", exact=True)).to_be_visible()
    rows = page.get_by_role("row").filter(has_text=re.compile(r"^\s*plot/"))
    expect(rows.first).to_be_visible()
    drawn: dict[str, tuple[int, int]] = {}
    for index in range(rows.count()):
        rows.nth(index).get_by_text("[Show Markdown]").click()
        dialog = page.get_by_role("dialog")
        image = dialog.locator("img")
        expect(image).to_be_visible()
        size = image.evaluate(
            "img => img.decode().then(() => [img.naturalWidth, img.naturalHeight])"
        )
        drawn[image.get_attribute("alt") or ""] = tuple(size)
        if index == 0:
            screenshots.save(page, f"model-evaluation-{pipeline}")
        dialog.get_by_role("button", name="Close").click()
        expect(dialog).to_be_hidden()
    return drawn


def automation_ticks_after(platform: LivePlatform, timestamp: float) -> int:
    """How many ticks of the ``automation`` sensor finished after ``timestamp``."""
    data = platform.graphql(
        """query {
          sensorOrError(sensorSelector: {repositoryLocationName: "ml_assets",
              repositoryName: "__repository__", sensorName: "automation"}) {
            ... on Sensor { sensorState { ticks(limit: 20) { timestamp status } } }
          }
        }"""
    )
    ticks = data["sensorOrError"]["sensorState"]["ticks"]
    return sum(t["timestamp"] > timestamp and t["status"] != "STARTED" for t in ticks)
