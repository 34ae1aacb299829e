"""``ml-assets new-pipeline NAME [--source KIND]``: a runnable skeleton of a new pipeline.

The skeleton is a working pipeline on a small sample it writes (a daily regression on
synthetic events), with every file a real pipeline has: the declaration, a publisher, cleaning
rules, schemas, features, the serving hooks, the definitions and a test that materializes it
end to end. Its source is of the kind asked for (``SOURCE_KINDS``): the kind's keys in the
declaration, what puts the sample where the source reads it (files in the landing zone, rows
in a database table, pages of an API) and how the test does so. A user replaces the sample and
the rules with their own; nothing is forked.
"""

import re
import string
from dataclasses import dataclass
from pathlib import Path

from ml_assets.home import PROJECT_ROOT

TEMPLATES = Path(__file__).with_name("templates")
SAMPLE_DAYS, ROWS_PER_DAY = 42, 60
FIRST_DAY = "2024-01-01"


@dataclass(frozen=True)
class SourceKind:
    """What a skeleton whose source is of one kind adds to the common templates: more
    templates (in ``templates/<kind>/``) and the values of the common ones' placeholders."""

    rows_from: str
    """How the source's rows reach the platform, in the source's description."""
    source_keys: str = ""
    """The kind's keys of the ``events`` source in the declaration (YAML lines)."""
    wiring_imports: str = ""
    wiring: str = ""
    """``Pipeline`` arguments (and their imports) for what the kind adds."""
    test_std_imports: str = ""
    test_imports: str = "from resources.landing_zone import default_landing_zone\n"
    test_helpers: str = ""
    test_fixtures: str = ""
    test_publish: str = "    pipeline.publish(default_landing_zone(), keys)\n"
    """How the generated test puts the sample where the source reads it (its imports, code
    before the test, the test's fixtures and its lines)."""


REST_TEST_API = '''TOKEN = "test-token"


@pytest.fixture
def events_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The upstream API serving every day of the sample at a free port, where the source's
    connection points (its URL and token in the environment)."""
    pipeline = pipelines.load(NAME)
    keys = partitions_definition(pipeline.declaration.partitions).get_partition_keys()
    with pipeline.publish_to_api(lambda _: ("http://127.0.0.1:0", TOKEN), keys) as api:
        monkeypatch.setenv(url_variable(CONNECTION), api.url)
        monkeypatch.setenv(token_variable(CONNECTION), TOKEN)
        yield
'''
"""The rest skeleton's test serves the sample through its API while it runs."""

STREAM_TEST_BROKER = '''BROKER = "amqp://guest:guest@127.0.0.1:5672/%2F"
"""The machine's RabbitMQ (guest)."""


@pytest.fixture
def events_stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh stream queue of the source's name on the broker its connection points at."""
    monkeypatch.setenv(StreamConnection.url_variable(CONNECTION), BROKER)
    broker = StreamConnection(name=CONNECTION, url=BROKER)

    def delete() -> None:
        with broker.open("test") as (_, channel):
            channel.queue_delete(QUEUE)

    delete()  # a stream an earlier run left
    yield
    delete()
'''
"""The stream skeleton's test publishes the sample to a fresh stream queue."""

SOURCE_KINDS = {
    "files": SourceKind(rows_from="export landed them"),
    "sql": SourceKind(
        rows_from="database holds them",
        source_keys=(
            "    kind: sql\n"
            "    connection: ${name}_db        # its URL: ML_ASSETS_SQL_${NAME}_DB_URL\n"
            "    table: events\n"
            "    cursor_column: day             # places a row in its partition\n"
            "    changed_column: updated_at     # set on every write: new rows are noticed\n"
        ),
        wiring_imports="from ml_assets.pipelines.$name.database import publish_to_databases\n",
        wiring="    publish_to_databases=publish_to_databases,\n",
        test_fixtures=", postgres_url: str",
        test_imports="from ml_assets.pipelines.$name.database import CONNECTION\n"
        "from resources.sql_connection import SqlConnection\n",
        test_publish=(
            "    monkeypatch.setenv(SqlConnection.url_variable(CONNECTION), postgres_url)\n"
            "    pipeline.publish_to_databases(lambda _: postgres_url, keys)\n"
        ),
    ),
    "rest": SourceKind(
        rows_from="API serves them",
        source_keys=(
            "    kind: rest\n"
            "    connection: ${name}_api       # ML_ASSETS_REST_${NAME}_API_URL and _TOKEN\n"
            "    path: /v1/events\n"
            "    records: data                  # where an answer's records are\n"
            "    paginator: {type: page_number, total_path: meta.total_pages}\n"
            "    params: {per_page: 50}         # sent with every request: a day is 2 pages\n"
            "    window_params: {start: start, end: end}   # a day's events: [start, end)\n"
            "    rate_limit_per_second: 20      # the API allows 25\n"
        ),
        wiring_imports="from ml_assets.pipelines.$name.events_api import publish_to_api\n",
        wiring="    publish_to_api=publish_to_api,\n",
        test_std_imports="from collections.abc import Iterator\n",
        test_imports="from ml_assets.pipelines.$name.events_api import CONNECTION\n"
        "from resources.rest_connection import token_variable, url_variable\n",
        test_helpers=REST_TEST_API,
        test_fixtures=", events_api: None",
        test_publish="",
    ),
    "stream": SourceKind(
        rows_from="system sends them, as events",
        source_keys=(
            "    kind: stream\n"
            "    connection: ${name}_broker    # its URL: ML_ASSETS_STREAM_${NAME}_BROKER_URL\n"
            "    queue: ${name}-events\n"
            "    event_time: day                # places an event in its partition\n"
        ),
        wiring_imports="from ml_assets.pipelines.$name.events_stream import publish_to_stream\n",
        wiring="    publish_to_stream=publish_to_stream,\n",
        test_std_imports="from collections.abc import Iterator\n",
        test_imports="from ml_assets.pipelines.$name.events_stream import CONNECTION, QUEUE\n"
        "from resources.stream_connection import StreamConnection\n",
        test_helpers=STREAM_TEST_BROKER,
        test_fixtures=", events_stream: None",
        test_publish="    pipeline.publish_to_stream(lambda _: BROKER, keys)\n",
    ),
}
"""The kinds ``--source`` offers; a new kind adds its entry (and its templates)."""
KIND_FIELDS = ("source_keys", "wiring_imports", "wiring", "test_std_imports", "test_imports",
               "test_helpers", "test_fixtures", "test_publish")  # fmt: skip


def _files(name: str, source: str) -> dict[Path, Path]:
    """Template → where it goes: the common templates, then the kind's."""
    from ml_assets.pipelines import PIPELINES_DIR

    package = PIPELINES_DIR / name
    placed = {
        template: package / template.name.removesuffix(".tmpl")
        for folder in (TEMPLATES, TEMPLATES / source)
        for template in sorted(folder.glob("*.tmpl"))
    }
    placed[TEMPLATES / "test_pipeline.py.tmpl"] = (
        PROJECT_ROOT / "tests" / f"test_{name}_pipeline.py"
    )
    return placed


def sample_csv(seed: int = 0) -> str:
    """A small, deterministic sample export: events whose ``value`` depends on their segment,
    size and hour, plus noise, one block of rows per day."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    days = pd.date_range(FIRST_DAY, periods=SAMPLE_DAYS, freq="D").strftime("%Y-%m-%d")
    rows = SAMPLE_DAYS * ROWS_PER_DAY
    frame = pd.DataFrame(
        {
            "event_id": [f"e{i:06d}" for i in range(rows)],
            "day": np.repeat(days, ROWS_PER_DAY),
            "segment": rng.choice(["retail", "wholesale", "online"], rows),
            "size": rng.gamma(2.0, 5.0, rows).round(2),
            "hour": rng.integers(0, 24, rows),
        }
    )
    effect = frame["segment"].map({"retail": 0.0, "wholesale": 25.0, "online": -10.0})
    frame["value"] = (
        3.0 * frame["size"] + effect + 8.0 * np.sin(frame["hour"] / 24 * 2 * np.pi)
        + rng.normal(0, 4, rows)
    ).round(2)  # fmt: skip
    return frame.to_csv(index=False, lineterminator="\n")


def write_pipeline(name: str, force: bool = False, source: str = "files") -> list[Path]:
    """Write the skeleton of pipeline ``name`` reading a source of kind ``source``; returns the
    files written."""
    from ml_assets.pipelines import PIPELINES_DIR, names

    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"{name!r}: a pipeline name is lower case letters, digits and _")
    if source not in SOURCE_KINDS:
        raise ValueError(f"{source!r}: a source kind is one of {', '.join(SOURCE_KINDS)}")
    if name in names() and not force:
        raise FileExistsError(f"pipeline {name!r} exists; pass --force to overwrite it")
    names_of = {"name": name, "NAME": name.upper(), "Name": name.title().replace("_", "")}
    kind = SOURCE_KINDS[source]
    values = {
        **names_of,
        "first_day": FIRST_DAY,
        **{
            field: string.Template(getattr(kind, field)).substitute(names_of)
            for field in KIND_FIELDS
        },
        "rows_from": kind.rows_from,
    }
    written = []
    for template, target in _files(name, source).items():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(string.Template(template.read_text()).substitute(values))
        written.append(target)
    sample = PIPELINES_DIR / name / "sample.csv"
    sample.write_text(sample_csv())
    return [*written, sample]
