"""The pydantic models of a pipeline declaration (``ml_assets/pipelines/<name>/pipeline.yaml``).

A declaration says everything the generic platform needs to know about a pipeline: its key
prefix, partitions and sources with their cleaning rules, its model (task, target, features,
baseline, split, search space, budget, acceptance bars), what its prediction service accepts
and the limits of its deploys. The sections a person may override for one run from the
launchpad (``training``, ``tuning``, ``acceptance``, ``deploy``) become Dagster run config with
the declared values as defaults, and an override becomes the same model with other values, never
a hand-merged dict (``ml_assets.contract.dagster_terms``). No Dagster here: the prediction
services read declarations too.
"""

import re
from datetime import date, timedelta
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Discriminator,
    Field,
    JsonValue,
    Tag,
    field_validator,
    model_validator,
)

from ml_assets.contract.base import NAME, Strict, unique
from ml_assets.contract.features import Features
from ml_assets.contract.search_space import FamilySpace
from ml_assets.contract.tasks import (
    DEFAULT_OBJECTIVE,
    LIVE_METRICS,
    METRICS,
    OBJECTIVES,
    Task,
)


class Partitions(Strict):
    """Time partitions of the pipeline's data: one per day or month in [start, end)."""

    kind: Literal["daily", "monthly"]
    start: date
    end: date
    """Exclusive."""
    timezone: str = "UTC"
    """The local time zone of the data's dates and clock times; a partition is a local day or
    month."""

    @model_validator(mode="after")
    def _valid(self) -> "Partitions":
        if self.start >= self.end:
            raise ValueError(f"start {self.start} is not before end {self.end}")
        if self.kind == "monthly" and (self.start.day != 1 or self.end.day != 1):
            raise ValueError("monthly partitions start and end on the first of a month")
        try:
            ZoneInfo(self.timezone)
        except ZoneInfoNotFoundError as error:
            raise ValueError(f"unknown time zone {self.timezone!r}") from error
        return self

    def previous_keys(self, key: str, count: int) -> list[str]:
        """The keys of the ``count`` partitions before ``key`` that exist, oldest first."""
        first = date.fromisoformat(key)
        if self.kind == "daily":
            days = [first - timedelta(days=n) for n in range(count, 0, -1)]
        else:
            days = [_months_after(first, -n) for n in range(count, 0, -1)]
        return [day.isoformat() for day in days if day >= self.start]

    def key_of(self, day: date) -> str | None:
        """The key of the partition holding the local date ``day``; None outside [start, end)."""
        if not self.start <= day < self.end:
            return None
        return (day if self.kind == "daily" else day.replace(day=1)).isoformat()

    def window(self, key: str) -> tuple[date, date]:
        """The local dates ``[first, end)`` of the partition ``key``."""
        first = date.fromisoformat(key)
        if self.kind == "daily":
            return first, first + timedelta(days=1)
        return first, _months_after(first, 1)


def _months_after(first: date, months: int) -> date:
    """The first of the month ``months`` after (before, when negative) the month of ``first``."""
    index = first.year * 12 + first.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


class RangeRule(Strict):
    """A plausible range for a numeric column and what to do with a value outside it."""

    low: int | float
    high: int | float
    action: Literal["reject", "null"] = "reject"
    """``reject`` sends the row to the rejected rows; ``null`` blanks the value."""

    @model_validator(mode="after")
    def _bounds(self) -> "RangeRule":
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is greater than high ({self.high})")
        return self


CONVENTIONAL_NULLS = ("", "NA", "N/A", "null")
"""What exports write for a missing value; a source reads them as missing unless it says
otherwise."""


class CodeRule(Strict):
    """What a code column (an identifier drawn from a known set) may hold.

    A value of another form is rejected as ``malformed_code:<column>``; a well-formed value
    outside ``domain`` as ``unknown_code:<column>``. A well-formed code that the ``reference``
    table lacks is kept and counted (``flag``: the clean table's ``<column>_known`` is false) or
    rejected as ``unknown_code:<column>`` (``reject``).
    """

    pattern: str | None = None
    """A regular expression the whole value matches."""
    domain: list[str] | None = Field(default=None, min_length=1)
    """The only codes this pipeline accepts."""
    reference: str | None = Field(default=None, pattern=r"^[a-z0-9_]+\.[a-z0-9_]+$")
    """``table.column``: the reference table (an unpartitioned source) that lists the codes."""
    unreferenced: Literal["flag", "reject"] = "flag"

    @model_validator(mode="after")
    def _valid(self) -> "CodeRule":
        if self.pattern is None and self.domain is None and self.reference is None:
            raise ValueError("a code rule gives a pattern, a domain or a reference")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as error:
                raise ValueError(f"pattern {self.pattern!r}: {error}") from error
            misfits = [c for c in self.domain or [] if not re.fullmatch(self.pattern, c)]
            if misfits:
                raise ValueError(f"domain codes {misfits} do not match the pattern")
        return self

    @property
    def reference_table(self) -> str | None:
        return self.reference.split(".")[0] if self.reference else None


class WholeFile(Strict):
    """When one rule rejects (nearly) every row of a partition, the export changed (a column's
    type, format or units), not its rows: the partition fails its blocking ``export_schema``
    check, naming the rule, and nothing downstream of it is materialized."""

    share: float = Field(default=0.95, gt=0, le=1)
    """The share of a partition's raw rows one rule must reject."""
    min_rows: int = Field(default=20, ge=1)
    """Partitions with fewer raw rows are too small to tell (their rows are judged alone)."""


class ConsistentBy(Strict):
    """A column that a key determines (a product's price, a route's length): each row's value
    must agree, within ``tolerance``, with the value its key has in the accepted history (the
    median of the key's values over the declared ``history_partitions`` accepted clean
    partitions) or, for a key the history lacks, with the value most of the partition's rows of
    the key hold (their lower median). A row that disagrees is rejected or flagged as
    ``inconsistent:<column>``."""

    key: list[str] = Field(min_length=1)
    tolerance: float = Field(ge=0)
    relative: bool = True
    """``tolerance`` is a share of the reference value (0.01: 1%); false: in the column's
    units."""
    action: Literal["flag", "reject"] = "reject"
    """``flag`` keeps the row and sets the clean table's ``inconsistent_<column>``."""
    history_partitions: int = Field(default=0, ge=0)
    """Accepted partitions before a partition that it is judged against (0: itself only)."""


class GroupShift(Strict):
    """A group (a sensor site) whose median of a column moves away from where it stands,
    by more than ``max_robust_z`` robust z-scores, is rejected or flagged as a group
    (``group_shift:<column>``): one site reporting in another unit.

    Where it stands: its offset from the median of the partition's groups (it and its peers),
    compared with its offsets over the declared ``history_partitions`` accepted
    partitions; a group without peers is compared with its own history's medians, a group
    without history with its peers' medians (peers only). The z-score's scale is 1.4826 times
    the median absolute deviation, never below ``min_scale``."""

    by: str
    max_robust_z: float = Field(gt=0)
    min_scale: float = Field(gt=0)
    """The smallest spread (in the column's units) a z-score divides by: what a group may move
    by without notice, however steady its history (a median absolute deviation of 0 would make
    any move infinite)."""
    min_rows: int = Field(default=1, ge=1)
    """Groups with fewer rows with a value in the partition are not judged (too few to tell)."""
    action: Literal["flag", "reject"] = "reject"
    """``flag`` keeps the rows and sets the clean table's ``group_shift_<column>``."""
    history_partitions: int = Field(default=0, ge=0)
    """Accepted partitions before a partition that it is judged against (0: peers only)."""


class Source(Strict):
    """What every source declares, whatever its kind: its name and the rules for its rows."""

    name: str = Field(pattern=NAME)
    description: str
    partitioned: bool = True
    """Read per partition, or whole as a reference table."""
    columns: list[str] = Field(default_factory=list)
    """The columns an export has, in order (empty: not declared)."""
    key: list[str] = Field(default_factory=list)
    """Columns that identify a row; later copies of a key are rejected as duplicates. A key
    value is never trimmed: one with whitespace around it is rejected (``whitespace:<column>``)."""
    integer_ids: list[str] = Field(default_factory=list)
    """Identifier columns holding whole numbers, kept as text in their canonical form (``8``,
    whether the export wrote ``8``, ``08`` or ``8.0``); other forms are rejected as
    ``malformed_id:<column>``. A key column that is neither this nor parsed keeps its text
    exactly (leading zeros and all)."""
    required: list[str] = Field(default_factory=list)
    """Columns a row cannot do without."""
    ranges: dict[str, RangeRule] = Field(default_factory=dict)
    codes: dict[str, CodeRule] = Field(default_factory=dict)
    """Code columns and what they may hold."""
    clock_times: list[str] = Field(default_factory=list)
    """HHMM columns: hour 00-24 and minute 00-59 (2400 is the end of the day), else the row
    is rejected as ``invalid_clock:<column>``."""
    null_tokens: list[str] = Field(default_factory=lambda: list(CONVENTIONAL_NULLS))
    """Values read as missing in every column."""
    null_tokens_by_column: dict[str, list[str]] = Field(default_factory=dict)
    """Columns whose missing values are written otherwise (``[]``: every value is literal)."""
    max_rejected_share: float = Field(default=0.01, ge=0, le=1)
    """A partition that rejects a larger share of its raw rows gets a warning, before the
    model sees the data."""
    max_length: int = Field(default=10_000, ge=1)
    """The most characters a value may hold; a longer one is rejected (``too_long:<column>``)."""
    min_rows: int = Field(default=1, ge=0)
    """The fewest rows a partition's file may hold (a zero-byte file holds none, like a header
    without rows); fewer fail the blocking ``landed_file_schema`` check. 0: an empty partition
    is data."""
    whole_file: WholeFile = Field(default_factory=WholeFile)
    on_schema_drift: Literal["warn", "fail"] = "warn"
    """What a change of the source's schema does (a database table or an API read where its
    rows live): a column it adds beyond the declared ones, or a type it changes since the last
    load, is accepted with a warning (the difference in the check's metadata and the run's
    log) or fails the partition's blocking ``landed_file_schema`` check, the difference shown.
    A declared column the source drops always fails it."""
    consistent_by: dict[str, ConsistentBy] = Field(default_factory=dict)
    """Columns that a key determines, with their rule (a plausibility rule, see
    ``ConsistentBy``)."""
    group_shift: dict[str, GroupShift] = Field(default_factory=dict)
    """Columns whose median per group must stay where the group stands (a plausibility rule,
    see ``GroupShift``)."""

    @model_validator(mode="after")
    def _columns_declared(self) -> "Source":
        if self.columns:
            unique(self.columns, "columns")
            named = {
                "key": self.key,
                "integer_ids": self.integer_ids,
                "required": self.required,
                "ranges": list(self.ranges),
                "codes": list(self.codes),
                "clock_times": self.clock_times,
                "null_tokens_by_column": list(self.null_tokens_by_column),
                "consistent_by": list(self.consistent_by),
                "group_shift": list(self.group_shift),
                **{f"consistent_by {c} key": r.key for c, r in self.consistent_by.items()},
                **{f"group_shift {c} by": [r.by] for c, r in self.group_shift.items()},
            }
            for what, names in named.items():
                unknown = [n for n in names if n not in self.columns]
                if unknown:
                    raise ValueError(f"{what} names undeclared columns: {', '.join(unknown)}")
        for column, rule in self.consistent_by.items():
            if column in rule.key:
                raise ValueError(f"consistent_by {column}: the key holds the column itself")
        for column, shift in self.group_shift.items():
            if shift.by == column:
                raise ValueError(f"group_shift {column}: grouped by the column itself")
        return self

    @property
    def history_partitions(self) -> int:
        """The accepted partitions before a partition that its plausibility rules read."""
        rules = [*self.consistent_by.values(), *self.group_shift.values()]
        return max((rule.history_partitions for rule in rules), default=0)

    def nulls(self, column: str) -> list[str]:
        """The values read as missing in ``column``."""
        return self.null_tokens_by_column.get(column, self.null_tokens)


class FilesSource(Source):
    """A landing-zone folder an upstream system exports to: one file per partition (named by
    its key), or one file for a reference table. The default kind."""

    kind: Literal["files"] = "files"
    format: Literal["csv", "parquet"] = "csv"

    @property
    def extension(self) -> str:
        return f".{self.format}"


SECRET_KEYS = {
    "url", "base_url", "dsn", "credentials", "user", "username", "password", "host", "port",
    "token", "api_key", "apikey", "secret", "auth", "authorization", "headers",
}  # fmt: skip
"""Keys that would put where a source lives, or its secret, in the declaration."""


class ConnectedSource(Source):
    """A source reached through a named connection whose URL and secrets the platform's
    resources hold (``ML_ASSETS_<KIND>_<CONNECTION>_…`` variables or secret files), never the
    declaration: a URL, token or password written inline fails at load."""

    connection: str
    """The connection's name (lower case, ``_``): the same name in every source it serves."""

    SETTINGS_EXAMPLE: ClassVar[str]
    """Where a connection of the kind gets its settings, for the error of one written inline."""

    @classmethod
    def named_connection_only(cls) -> str:
        """Why a secret written inline fails, and what to write instead."""
        return (
            "a connection is named, never written inline (its URL and secret would be in the "
            f"declaration): {cls.SETTINGS_EXAMPLE}"
        )

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        inline = sorted(set(data) & SECRET_KEYS) if isinstance(data, dict) else []
        if inline:
            raise ValueError(f"{', '.join(inline)}: {cls.named_connection_only()}")
        return data

    @field_validator("connection")
    @classmethod
    def _named(cls, connection: str) -> str:
        if re.search(r"://|@|[:/;=]", connection):
            raise ValueError(f"connection: {cls.named_connection_only()}")
        if not re.fullmatch(NAME, connection):
            raise ValueError(f"connection {connection!r} is not a name ({NAME})")
        return connection


class SqlSource(ConnectedSource):
    """A table in a PostgreSQL or MySQL/MariaDB database, read with dlt's ``sql_database``.

    The database is reached through a named connection whose URL and credentials the
    platform's resources hold (``ML_ASSETS_SQL_<CONNECTION>_URL``, or ``..._URL_FILE`` naming
    a secret file), never the declaration. A partition reads the rows whose ``cursor_column``
    falls in its window (its start included, its end not, in the partitions' time zone).
    """

    kind: Literal["sql"]
    SETTINGS_EXAMPLE = (
        "name it, e.g. 'connection: warehouse', and give its URL as ML_ASSETS_SQL_WAREHOUSE_URL "
        "or in the secret file named by ML_ASSETS_SQL_WAREHOUSE_URL_FILE"
    )
    table: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
    """``table`` or ``schema.table``."""
    cursor_column: str | None = None
    """A timestamp or date column that places a row in its partition (partitioned sources)."""
    changed_column: str | None = None
    """A timestamp the database sets whenever a row is written or updated (not read into raw).
    When given, a sensor watches it and loads again the partitions whose rows changed."""
    changed_lag_seconds: float = Field(default=60, ge=0)
    """How late a write may commit after the time it was stamped with: each look reaches this
    far back (a change seen twice runs once)."""
    chunk_rows: int = Field(default=50_000, ge=1)
    """Rows fetched at a time: a run's range is read with one streamed query, this many rows in
    memory at once (with the partition being written)."""
    max_retries: int = Field(default=3, ge=0)
    """How many times a lost connection (a restarted or killed server) is reconnected, with a
    doubling pause from 0.5 s; the read resumes at the partition it was reading."""

    @model_validator(mode="after")
    def _window(self) -> "SqlSource":
        if not self.partitioned:
            if self.cursor_column is not None or self.changed_column is not None:
                raise ValueError(
                    "a reference table (partitioned: false) has no cursor_column or changed_column"
                )
            return self
        if self.cursor_column is None:
            raise ValueError("a partitioned sql source names its cursor_column")
        if not self.columns or not self.key:
            raise ValueError("a partitioned sql source declares its columns and its key")
        if self.changed_column is not None and self.changed_column == self.cursor_column:
            raise ValueError("changed_column is the cursor_column: name the column updates set")
        if self.cursor_column not in self.columns:
            raise ValueError(
                f"cursor_column {self.cursor_column!r} is not among the columns "
                f"({', '.join(self.columns)})"
            )
        return self


class PageNumberPaging(Strict):
    """Pages numbered in a query parameter (``?page=2``)."""

    type: Literal["page_number"]
    page_param: str = "page"
    base_page: int = Field(default=1, ge=0)
    """The number of the first page."""
    total_path: str | None = None
    """The JSON path of the number of pages in a response; none: the first empty page ends."""


class OffsetPaging(Strict):
    """Records skipped and taken in query parameters (``?offset=100&limit=50``)."""

    type: Literal["offset"]
    limit: int = Field(gt=0)
    """The records a page asks for."""
    offset_param: str = "offset"
    limit_param: str = "limit"
    total_path: str | None = None
    """The JSON path of the number of records in a response; none: the first empty page ends."""


class CursorPaging(Strict):
    """An opaque cursor from each response, sent back for the next page (``?cursor=…``)."""

    type: Literal["cursor"]
    cursor_path: str
    """The JSON path of the next page's cursor in a response (missing or null: the last page)."""
    cursor_param: str = "cursor"


class LinkHeaderPaging(Strict):
    """The next page's URL in the response's ``Link`` header (RFC 8288, as GitHub pages)."""

    type: Literal["link_header"]
    rel: str = "next"


Paging = Annotated[
    PageNumberPaging | OffsetPaging | CursorPaging | LinkHeaderPaging, Field(discriminator="type")
]


class WindowParams(Strict):
    """The query parameters a partition's window is passed in."""

    start: str
    """The parameter given the window's start (included)."""
    end: str | None = None
    """The parameter given the window's end (excluded); none: the API takes the start only."""
    format: Literal["datetime", "date"] = "datetime"
    """``datetime``: ISO 8601 with the partitions' UTC offset (``2013-01-01T00:00:00-05:00``);
    ``date``: the local date (``2013-01-01``)."""


class RestSource(ConnectedSource):
    """A paged JSON API, read with dlt's REST client.

    The API is reached through a named connection: its base URL
    (``ML_ASSETS_REST_<CONNECTION>_URL``) and bearer token (``..._TOKEN``, or ``..._TOKEN_FILE``
    naming a secret file) are the platform's resources', never the declaration's. A partition
    asks ``path`` for its window in the declared ``window_params`` and reads every page; the
    requests keep under ``rate_limit_per_second`` before the API has to say so, and throttled
    (429, honouring ``Retry-After``), failed (5xx) or timed-out requests are retried with
    exponential backoff up to ``max_retries`` times.
    """

    kind: Literal["rest"]
    SETTINGS_EXAMPLE = (
        "name it, e.g. 'connection: vendor_api', and give its base URL as "
        "ML_ASSETS_REST_VENDOR_API_URL and its token as ML_ASSETS_REST_VENDOR_API_TOKEN, or in "
        "the secret file named by ML_ASSETS_REST_VENDOR_API_TOKEN_FILE"
    )
    path: str
    """The endpoint's path below the connection's base URL (``/v2/readings``)."""
    records: str
    """The JSON path of the records in a response (``data``, ``results.items``; ``$``: the
    response is the list of records)."""
    paginator: Paging
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    """Query parameters every request sends (a page size); never a secret."""
    window_params: WindowParams | None = None
    """How a partition asks for its window (required when partitioned)."""
    rate_limit_per_second: float = Field(gt=0)
    """The most requests a second the API is sent, retries included."""
    max_retries: int = Field(default=5, ge=0, le=20)
    """Retries of one request (429, 5xx, a timeout or a dropped connection) before the run
    fails."""
    backoff_seconds: float = Field(default=1, gt=0)
    """The first wait before a retry, doubled at each retry of the same request."""
    max_backoff_seconds: float = Field(default=60, gt=0)
    """The longest wait before a retry (a ``Retry-After`` is honoured even when longer)."""
    timeout_seconds: float = Field(default=30, gt=0)
    """How long a request may take to answer before it is retried."""

    @field_validator("path")
    @classmethod
    def _relative(cls, path: str) -> str:
        if "://" in path or path.startswith("//"):
            raise ValueError(
                f"path {path!r} is a URL: give the path below the connection's base URL, which "
                "the environment gives (ML_ASSETS_REST_<CONNECTION>_URL)"
            )
        if not re.fullmatch(r"[A-Za-z0-9_\-./~]*", path):
            raise ValueError(f"path {path!r} is not a URL path (no query: give params)")
        return path

    @model_validator(mode="after")
    def _consistent(self) -> "RestSource":
        secret = sorted(set(self.params) & SECRET_KEYS)
        if secret:
            raise ValueError(f"params {', '.join(secret)}: {self.named_connection_only()}")
        if self.backoff_seconds > self.max_backoff_seconds:
            raise ValueError("backoff_seconds is longer than max_backoff_seconds")
        if not self.partitioned:
            if self.window_params is not None:
                raise ValueError("a reference table (partitioned: false) has no window_params")
            return self
        if self.window_params is None:
            raise ValueError("a partitioned rest source names its window_params")
        if not self.columns or not self.key:
            raise ValueError("a partitioned rest source declares its columns and its key")
        window = [self.window_params.start, self.window_params.end]
        taken = sorted(set(self.params) & set(window))
        if taken:
            raise ValueError(f"params {', '.join(taken)}: passed the window by window_params")
        return self


class StreamSource(ConnectedSource):
    """Events on a RabbitMQ stream queue (``x-queue-type: stream``), each a JSON object whose
    fields are the columns; ``event_time`` places an event in its partition.

    A run reads the stream's high watermark when it starts, consumes at most ``batch_size``
    events up to it (never more than ``prefetch`` unacknowledged), writes the raw partitions
    the events belong to (each the partition's earlier raw plus its new events, deduplicated by
    the key) and only then records its offsets, so a run that dies in between is replayed.
    """

    kind: Literal["stream"]
    SETTINGS_EXAMPLE = (
        "name it, e.g. 'connection: events', and give its URL as ML_ASSETS_STREAM_EVENTS_URL "
        "or in the secret file named by ML_ASSETS_STREAM_EVENTS_URL_FILE"
    )
    queue: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$")
    """The stream queue's name."""
    event_time: str
    """The field (among the columns) holding when the event happened: an ISO 8601 date-time
    (without an offset: in the partitions' time zone) or seconds since the epoch."""
    late_events: Literal["reopen", "reject"] = "reopen"
    """An event for a partition that was already closed (written after the stream had carried
    an event of a later partition): ``reopen`` adds it to the partition, which is written
    again; ``reject`` leaves the partition as it is and keeps the event's offset, key and
    reason in the metadata."""
    prefetch: int = Field(default=500, ge=1, le=10_000)
    """The most events the broker sends before the consumer acknowledges them."""
    batch_size: int = Field(default=100_000, ge=1, le=10_000_000)
    """The most events one run consumes; a longer backlog is consumed by the runs after it."""

    @model_validator(mode="after")
    def _events(self) -> "StreamSource":
        if not self.partitioned:
            raise ValueError("a stream source is partitioned (its events are placed by time)")
        if not self.columns or not self.key:
            raise ValueError("a stream source declares its columns and its key")
        if self.event_time not in self.columns:
            raise ValueError(
                f"event_time {self.event_time!r} is not among the columns "
                f"({', '.join(self.columns)})"
            )
        if self.prefetch > self.batch_size:
            raise ValueError(f"prefetch ({self.prefetch}) exceeds batch_size ({self.batch_size})")
        return self


def _kind(value: Any) -> str:
    """A source's kind; a source that names none is files (the landing zone)."""
    if isinstance(value, dict):
        return value.get("kind", "files")
    return getattr(value, "kind", "files")


SOURCE_KINDS = ("files", "sql", "rest", "stream")
SourceDeclaration = Annotated[
    Annotated[FilesSource, Tag("files")]
    | Annotated[SqlSource, Tag("sql")]
    | Annotated[RestSource, Tag("rest")]
    | Annotated[StreamSource, Tag("stream")],
    Discriminator(_kind),
]
"""A source of any kind, told apart by its ``kind``; a new kind adds its model here and its
ingest module in ``ml_assets/data/sources/``."""


class Training(Strict):
    """Which feature partitions to train on and how they are split (trailing partitions)."""

    window_start: str = Field(description="First feature partition key of the training window.")
    window_end: str = Field(description="Last feature partition key of the training window.")
    validation_partitions: int = Field(
        ge=1, description="Partitions after train: tuning, early stopping, thresholds."
    )
    test_partitions: int = Field(ge=1, description="The last partitions: evaluation only.")
    min_train_partitions: int = Field(
        default=7, ge=1, description="Fewest partitions before validation to train on."
    )
    gap_partitions: int = Field(
        default=0,
        ge=0,
        description="Partitions left out before validation and before test, so that features "
        "over earlier targets do not leak across a boundary.",
    )
    horizon_partitions: int | None = Field(
        default=None,
        ge=1,
        description="How far past the data before it a model forecasts, in partitions: "
        "validation and test partitions further past the end of the rows before them (train; "
        "train and validation) are left out. None: no limit (or horizon_days).",
    )
    horizon_days: int | None = Field(
        default=None,
        ge=1,
        description="The horizon in days instead: a partition is kept when its last day is "
        "at most this many days after the last day of the rows before it.",
    )

    @model_validator(mode="after")
    def _one_horizon(self) -> "Training":
        if self.horizon_partitions is not None and self.horizon_days is not None:
            raise ValueError("give horizon_partitions or horizon_days, not both")
        return self


class CrossValidation(Strict):
    """Rolling (time-series) cross-validation over the train and validation partitions:
    ``folds`` cutoffs, each ``horizon_partitions`` after the one before, the last one's window
    ending with the validation partitions. A fold trains on the partitions before its cutoff
    (all of them, ``expanding``, or the last ``train_partitions``, ``sliding``) and is scored on
    the ``horizon_partitions`` after a gap of ``gap_partitions``."""

    folds: int = Field(ge=2, le=50, description="Cutoffs, hence scored windows.")
    horizon_partitions: int = Field(ge=1, description="Partitions each fold is scored on.")
    gap_partitions: int = Field(
        default=0, ge=0, description="Partitions between a fold's train and its window."
    )
    window: Literal["expanding", "sliding"] = "expanding"
    train_partitions: int | None = Field(
        default=None,
        ge=1,
        description="A sliding window's length (default: training.min_train_partitions); "
        "an expanding window's train holds at least this many.",
    )


class Tuning(Strict):
    """The Optuna study's budget, parallelism and randomness."""

    n_trials: int = Field(ge=1)
    sample_rows: int = Field(
        ge=100, description="Trials fit on a sample of train this large; the refit uses all."
    )
    timeout_seconds: float = Field(gt=0)
    workers: int = Field(ge=1, le=64)
    seed: int = 0
    resume: bool = Field(default=True, description="Continue the study; false starts anew.")
    pruner_startup_trials: int = Field(default=4, ge=0)
    pruner_warmup_steps: int = Field(default=1, ge=0)
    cross_validation: CrossValidation | None = Field(
        default=None,
        description="Rolling folds; each trial's objective is the mean over them. None: "
        "one split (fit on train, scored on validation).",
    )


class Acceptance(Strict):
    """The bars a model must clear, on the acceptance metric, before it is registered."""

    min_improvement_over_baseline: float = Field(
        description="Relative improvement over the baseline, e.g. 0.02 for 2%."
    )
    max_regression_vs_champion: float = Field(
        default=0.0, description="Relative slack against the champion, e.g. 0.01 for 1%."
    )


class Deploy(Strict):
    """How the live endpoint is verified after it loads a new champion."""

    smoke_rows: int = Field(default=200, ge=1, description="Held-out rows compared with MLflow.")
    tolerance: float = Field(
        gt=0, description="Largest accepted difference from the registered model's prediction."
    )
    latency_requests: int = Field(default=50, ge=1)
    latency_budget_ms: float = Field(default=50.0, gt=0, description="p95 of single requests.")
    staged: bool = Field(
        default=True,
        description="Roll a new version out beside the champion (shadow, canary, full, as "
        "`rollout` declares); false: it replaces the champion once the smoke test passes.",
    )


class Rollout(Strict):
    """How a new version goes live beside the champion: in shadow (scored and logged, never
    returned), then as a canary (a share of the traffic, sticky per request key), then in full;
    rolled back when its live figures do not hold."""

    shadow_requests: int = Field(
        default=200, ge=0, description="Requests it scores in shadow before the canary (0: none)."
    )
    canary_share: float = Field(default=0.1, gt=0, lt=1, description="Share of request keys.")
    canary_requests: int = Field(
        default=200, ge=0, description="Requests it answers as a canary before it takes all."
    )
    max_error_rate: float = Field(default=0.01, ge=0, le=1, description="Failed scorings.")
    max_latency_p95_ms: float = Field(default=20.0, gt=0, description="Its own scoring time.")
    agreement_tolerance: float = Field(
        default=0.0,
        ge=0,
        description="A regression agrees with the champion within this difference; a "
        "classifier agrees when it decides the same.",
    )
    min_agreement: float = Field(
        default=0.8, ge=0, le=1, description="Share of requests where it agrees with the champion."
    )


DriftReference = Literal["training", "same_season", "none"]


class Monitoring(Strict):
    """How the live model is watched: served predictions, live performance, feature drift."""

    event_date_field: str | None = None
    """The request field (a ``date``) that dates an item: served predictions are partitioned by
    it, so they meet their outcomes in the partition where those land. None: by the time they
    were served, in the partitions' time zone."""
    metric: str | None = None
    """What live performance is judged on; default: the acceptance metric."""
    max_degradation: float = Field(default=0.25, gt=0)
    """The check fails when the champion's live metric over the window is worse than its own
    test figure by more than this share (0.25: 25%)."""
    window_partitions: int = Field(default=7, ge=1)
    """Partitions (ending at the checked one) whose outcomes the check pools."""
    min_outcomes: int = Field(default=200, ge=1)
    """Fewer predictions with an outcome in the window: the check passes as undecided."""
    degradation_check: Literal["warn", "blocking"] = "warn"
    max_psi: float = Field(default=0.25, gt=0)
    """A feature whose population stability index against the training set exceeds this
    drifted (0.1: a small shift, 0.25: a large one, by the usual reading)."""
    drift_bins: int = Field(default=10, ge=2, le=100)
    """Quantile bins of a numeric feature (categories are their own bins)."""
    drift_reference: dict[str, DriftReference] = Field(default_factory=dict)
    """Per model feature, what its distribution in a partition is compared with:
    ``training`` (the train split, the default), ``same_season`` (the train rows of the same
    calendar month as the partition: seasonal features) or ``none`` (not watched: calendar and
    trend features, which a later partition moves by design)."""
    comparison_partitions: int = Field(default=30, ge=1)
    """``rollout_comparison`` reads the served predictions of the last this many partitions."""
    log_flush_seconds: float = Field(default=1.0, gt=0)
    """The service appends its prediction log at least this often (a crash loses at most the
    predictions of the last interval)."""
    log_flush_records: int = Field(default=2000, ge=1)
    """... or as soon as this many predictions wait."""

    def drift_reference_of(self, feature: str) -> DriftReference:
        return self.drift_reference.get(feature, "training")


class Baseline(Strict):
    """The naive prediction a model must beat: a feature column, or the training prior (the
    mean target for regression, the positive rate for classification)."""

    kind: Literal["column", "prior"]
    column: str | None = None

    @model_validator(mode="after")
    def _column(self) -> "Baseline":
        if (self.kind == "column") != (self.column is not None):
            raise ValueError("a 'column' baseline names its column; a 'prior' one does not")
        return self


class Threshold(Strict):
    """How a classifier's decision threshold is chosen on the validation partitions."""

    rule: Literal["max_f1", "fixed"] = "max_f1"
    value: float = Field(default=0.5, gt=0, lt=1)
    """The threshold of the ``fixed`` rule."""


class ModelDeclaration(Strict):
    registered_model_name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    experiment_name: str | None = None
    """Default: the registered model's name."""
    task: Task
    features_asset: str = Field(pattern=NAME)
    target: str
    id_column: str
    """A feature column that identifies a row (in responses and batch predictions)."""
    time_column: str | None = None
    """A feature column holding each row's date: statistical forecasting families forecast the
    row's date from it; the other families do not read it. Required with such a family."""
    categorical: list[str] = Field(default_factory=list)
    numeric: list[str] = Field(default_factory=list)
    baseline: Baseline
    compare_with: dict[str, str] = Field(default_factory=dict)
    """More naive predictors the evaluation reports beside the baseline, each a feature column
    by name (a forecast's ``seasonal_naive``: the value a season earlier; ``last_value``)."""
    objective: str | None = None
    """What the study optimises; default: MAE (regression), log loss (classification)."""
    acceptance_metric: str | None = None
    """What the blocking checks compare; default: the objective."""
    threshold: Threshold = Field(default_factory=Threshold)
    error_by: str | None = None
    """A feature to break the test error down by in the evaluation plots."""
    training: Training
    tuning: Tuning
    acceptance: Acceptance
    search_space: list[FamilySpace] = Field(min_length=1)
    retrain_cron: str = "0 4 * * 1"

    @model_validator(mode="after")
    def _consistent(self) -> "ModelDeclaration":
        if not self.features:
            raise ValueError("declare at least one categorical or numeric feature")
        unique(self.features, "features")
        if self.target in self.features:
            raise ValueError(f"the target {self.target!r} is also a feature")
        if self.objective is not None and self.objective not in OBJECTIVES[self.task]:
            raise ValueError(
                f"objective {self.objective!r} is not one of {', '.join(OBJECTIVES[self.task])} "
                f"({self.task})"
            )
        if self.acceptance_metric is not None and self.acceptance_metric not in METRICS[self.task]:
            raise ValueError(
                f"acceptance_metric {self.acceptance_metric!r} is not one of "
                f"{', '.join(METRICS[self.task])} ({self.task})"
            )
        taken = sorted(set(self.compare_with) & {"model", "baseline", "champion"})
        if taken:
            raise ValueError(f"compare_with: {', '.join(taken)} names a predictor already")
        families = [space.family for space in self.search_space]
        unique(families, "search-space families")
        for space in self.search_space:
            if self.task not in space.tasks:
                raise ValueError(f"family {space.family!r} cannot learn {self.task}")
        if self.training.window_start > self.training.window_end:
            raise ValueError("training.window_start is after training.window_end")
        statistical = [space.family for space in self.search_space if space.statistical]
        if statistical and self.time_column is None:
            raise ValueError(f"family {statistical[0]!r} forecasts a date: declare time_column")
        unlimited = self.training.horizon_partitions is None and self.training.horizon_days is None
        if statistical and unlimited:
            raise ValueError(
                f"family {statistical[0]!r} forecasts at most a horizon ahead: declare "
                "training.horizon_days or training.horizon_partitions"
            )
        if self.time_column is not None and self.time_column in self.features:
            raise ValueError(f"time_column {self.time_column!r} is also a feature")
        return self

    @property
    def features(self) -> list[str]:
        return [*self.categorical, *self.numeric]

    @property
    def first_training_partitions(self) -> int:
        """Feature partitions of the training window the first model needs."""
        training = self.training
        return (
            training.min_train_partitions
            + training.validation_partitions
            + training.test_partitions
            + 2 * training.gap_partitions
        )

    @property
    def inputs(self) -> list[str]:
        """The columns a model reads: the features, and the time column when declared."""
        return [*self.features, *([self.time_column] if self.time_column else [])]

    @property
    def objective_metric(self) -> str:
        return self.objective or DEFAULT_OBJECTIVE[self.task]

    @property
    def gate_metric(self) -> str:
        return self.acceptance_metric or self.objective_metric

    @property
    def experiment(self) -> str:
        return self.experiment_name or self.registered_model_name

    def live_metric(self, monitoring: "Monitoring") -> str:
        """The metric live performance is judged on: the declared one, or the acceptance
        metric where live performance measures it, or else the objective."""
        if monitoring.metric is not None:
            return monitoring.metric
        live = LIVE_METRICS[self.task]
        return self.gate_metric if self.gate_metric in live else self.objective_metric


class RequestField(Strict):
    """One field of a prediction request and the rule a value must follow."""

    name: str = Field(pattern=NAME)
    type: Literal["int", "float", "str", "bool", "date", "hhmm"]
    """``hhmm``: a clock time as an integer, HHMM (hour 00-23, minute 00-59)."""
    description: str
    required: bool = True
    low: int | float | None = None
    high: int | float | None = None
    rule_of: str | None = Field(default=None, pattern=r"^[a-z0-9_]+\.[a-z0-9_]+$")
    """``source.column``: validate the field by that column's declared rules (its range; its
    code rule's pattern and domain), so the batch cleaner and the service cannot drift apart.
    A code's reference table is the cleaner's alone: the service scores an unlisted code as an
    unseen one."""
    pattern: str | None = None
    choices: list[str] | None = None

    @model_validator(mode="after")
    def _rules(self) -> "RequestField":
        numeric = self.type in ("int", "float", "hhmm")
        if (self.low is not None or self.high is not None) and not numeric:
            raise ValueError(f"a {self.type} field has no range")
        if (self.pattern or self.choices) and self.type != "str":
            raise ValueError("pattern and choices apply to str fields")
        own = [n for n in ("low", "high", "pattern", "choices") if getattr(self, n) is not None]
        if self.rule_of and own:
            raise ValueError(f"give rule_of or {'/'.join(own)}, not both")
        return self

    def rules(self, declaration: "PipelineDeclaration") -> dict[str, Any]:
        """The field's ``low``, ``high``, ``pattern`` and ``choices`` (None: no such rule),
        its own or those of the source column it names."""
        if self.rule_of is None:
            return {n: getattr(self, n) for n in ("low", "high", "pattern", "choices")}
        source, column = self.rule_of.split(".")
        declared = declaration.source(source)
        bounds, code = declared.ranges.get(column), declared.codes.get(column)
        return {
            "low": bounds.low if bounds else None,
            "high": bounds.high if bounds else None,
            "pattern": code.pattern if code else None,
            "choices": code.domain if code else None,
        }


class Serving(Strict):
    """What the pipeline's prediction service accepts and answers."""

    port: int = Field(ge=1024, le=65535)
    """The local service's default port (one service per pipeline)."""
    prediction: str = Field(pattern=NAME)
    """Name of the predicted quantity in responses and batch predictions."""
    request_fields: list[RequestField] = Field(min_length=1)
    requests_asset: str = Field(pattern=NAME)
    """Rows a caller would send requests for (the smoke test's requests are built from them)."""
    snapshot_asset: str | None = Field(default=None, pattern=NAME)
    """The online feature snapshot requests are looked up in, if the features need one."""
    snapshot_date_field: str | None = None
    """The request field (a ``date``) that the loaded snapshot must cover: the snapshot of a
    partition holds what is looked up for that partition's dates only, so lookups for another
    date would miss and silently give the defaults."""
    outside_snapshot: Literal["warn", "refuse"] = "warn"
    """An item dated outside the loaded snapshot: scored with the lookups' defaults and a
    ``date_outside_snapshot`` warning (``warn``), or refused with 422 (``refuse``)."""
    warm_up: list[dict[str, JsonValue]] = Field(min_length=1)
    """Requests scored before a model goes live; they must give finite predictions. Items as a
    caller sends them in JSON (a date is a quoted ``"YYYY-MM-DD"``)."""
    batch_columns: list[str] = Field(default_factory=list)
    """Feature columns copied into batch predictions beside the prediction."""
    max_batch: int = Field(default=1000, ge=1)

    @field_validator("request_fields")
    @classmethod
    def _distinct(cls, fields: list[RequestField]) -> list[RequestField]:
        unique([f.name for f in fields], "request fields")
        return fields

    @model_validator(mode="after")
    def _snapshot_dates(self) -> "Serving":
        name = self.snapshot_date_field
        if name is None:
            if "outside_snapshot" in self.model_fields_set:
                raise ValueError("outside_snapshot applies to a snapshot_date_field; none is given")
            return self
        if self.snapshot_asset is None:
            raise ValueError(f"snapshot_date_field {name!r} needs a snapshot_asset")
        types = {f.name: f.type for f in self.request_fields}
        if types.get(name) != "date":
            raise ValueError(f"snapshot_date_field {name!r} is not a date request field")
        return self


class PipelineDeclaration(Strict):
    """Everything the platform needs to know about one pipeline."""

    name: str = Field(pattern=NAME)
    description: str
    key_prefix: str | None = Field(default=None, pattern=NAME)
    """Default: the pipeline's name."""
    owners: list[str] = Field(default_factory=list)
    partitions: Partitions
    sources: list[SourceDeclaration] = Field(min_length=1)
    features: Features = Field(default_factory=Features)
    """The history the features asset reads and the time features the platform computes."""
    model: ModelDeclaration
    serving: Serving
    deploy: Deploy
    rollout: Rollout = Field(default_factory=Rollout)
    monitoring: Monitoring = Field(default_factory=Monitoring)

    @model_validator(mode="after")
    def _consistent(self) -> "PipelineDeclaration":
        unique([s.name for s in self.sources], "sources")
        tables = {s.name for s in self.sources if not s.partitioned}
        for source in self.sources:
            for column, rule in source.codes.items():
                if rule.reference_table is not None and rule.reference_table not in tables:
                    raise ValueError(
                        f"sources {source.name} codes {column}: reference {rule.reference!r} "
                        f"is not an unpartitioned source (those: {', '.join(sorted(tables))})"
                    )
        for field in self.serving.request_fields:
            if field.rule_of:
                self._check_rule_of(field)
        self._check_monitoring()
        self._check_horizon()
        try:
            self.features.check_history(self.partitions.kind)
        except ValueError as error:
            raise ValueError(f"features: {error}") from None
        return self

    def _check_monitoring(self) -> None:
        monitoring, task = self.monitoring, self.model.task
        dated = monitoring.event_date_field
        if dated is not None and dated not in {
            f.name for f in self.serving.request_fields if f.type == "date"
        }:
            raise ValueError(f"monitoring.event_date_field {dated!r} is not a date request field")
        unknown = sorted(set(monitoring.drift_reference) - set(self.model.features))
        if unknown:
            raise ValueError(
                f"monitoring.drift_reference: {', '.join(unknown)} not among the model's features"
            )
        if monitoring.metric is not None and monitoring.metric not in LIVE_METRICS[task]:
            raise ValueError(
                f"monitoring.metric {monitoring.metric!r} is not one of "
                f"{', '.join(LIVE_METRICS[task])} ({task})"
            )

    def _check_horizon(self) -> None:
        """Validation and test (after their gap) lie within the declared horizon, when it is
        in partitions or the partitions are days (months' lengths vary: the split checks)."""
        training = self.model.training
        horizon = training.horizon_partitions
        if horizon is None and self.partitions.kind == "daily":
            horizon = training.horizon_days
        for window in ("validation", "test"):
            reach = training.gap_partitions + getattr(training, f"{window}_partitions")
            if horizon is not None and reach > horizon:
                raise ValueError(
                    f"model.training: {window} reaches {reach} partitions past the data before "
                    f"it (with the gap), beyond the horizon of {horizon}"
                )

    def _check_rule_of(self, field: RequestField) -> None:
        where = f"serving.request_fields {field.name}: rule_of {field.rule_of!r}"
        source, column = field.rule_of.split(".")
        if source not in {s.name for s in self.sources}:
            raise ValueError(f"{where}: no source {source!r}")
        declared = self.source(source)
        numeric = field.type in ("int", "float", "hhmm")
        has_rule = column in (declared.ranges if numeric else declared.codes)
        if not has_rule:
            kind = "range" if numeric else "code rule"
            raise ValueError(f"{where}: source {source!r} declares no {kind} for {column!r}")

    @property
    def prefix(self) -> str:
        return self.key_prefix or self.name

    @property
    def horizon_days(self) -> int | None:
        """The declared forecast horizon in days (a month of partitions counted as 31 days);
        None when none is declared."""
        training = self.model.training
        if training.horizon_days is not None:
            return training.horizon_days
        if training.horizon_partitions is None:
            return None
        return training.horizon_partitions * (1 if self.partitions.kind == "daily" else 31)

    def asset_path(self, name: str) -> tuple[str, str]:
        """The key path of the pipeline's asset ``name``: ``(prefix, name)``."""
        return (self.prefix, name)

    def source(self, name: str) -> FilesSource | SqlSource | RestSource | StreamSource:
        for source in self.sources:
            if source.name == name:
                return source
        raise ValueError(f"no source named {name!r} (declared: {[s.name for s in self.sources]})")
