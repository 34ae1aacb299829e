"""The ``rest`` kind: a paged JSON API, read with dlt's REST client.

A partition's load asks the declared path for the partition's window (its start and end in the
declared ``window_params``) and follows the declared paginator to the last page: stateless, so
any partition can be loaded again or backfilled in any order, and it replaces what was there
whole, so a re-run never duplicates a row. A reference table (``partitioned: false``) is the
path's every page, typed as the JSON gives it.

Requests keep under the declared ``rate_limit_per_second`` before the API has to complain:
every attempt, retries included, waits for its turn (one every ``1 / rate`` seconds, over the
whole run), and a 429's ``Retry-After`` holds every request until it has passed. dlt's requests
client retries 429, 5xx, timeouts and dropped connections with exponential backoff
(``backoff_seconds``, doubled at each retry, at most ``max_backoff_seconds``) up to
``max_retries`` times. A page that still fails, or that is not JSON, fails the run naming the
page; the partition it belongs to is not written (the IO manager writes a partition whole or
not at all) and the next run loads it again, whole.

A fresh client is built for every partition of every run (dlt is imported then, not when the
definitions load). Records are stored as text, as a file's would be (a nested value as its
JSON), so the same cleaning rules and checks apply whatever the kind.
"""

import json
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from ml_assets.contract.declaration import (
    CursorPaging,
    LinkHeaderPaging,
    OffsetPaging,
    PageNumberPaging,
    PipelineDeclaration,
    RestSource,
)
from ml_assets.data.data_layers import partitioned
from ml_assets.data.sources.ingest import (
    connected_args,
    connected_reference,
    raw_text,
    read_partitions,
    rows_check,
)
from resources.rest_connection import RestConnection, resource_key

KINDS = {"rest", "dlt"}
"""What the kind's assets read with (their Dagster kinds)."""


def asset(
    declaration: PipelineDeclaration, source: RestSource, schema: pa.DataFrameSchema
) -> dg.AssetsDefinition:
    """``raw_<source>`` (the records of each partition's window) or the reference table
    ``<source>`` (every record the path gives)."""
    return (_raw_asset if source.partitioned else _reference_asset)(declaration, source, schema)


MARGIN = 0.02
"""How far below the declared rate requests are spaced, so that the jitter of their arrival
never shows the API more than the declared rate in any second."""


class Throttle:
    """Request starts at least ``1 / per_second`` seconds apart (and ``MARGIN`` more), none
    before a ``Retry-After`` has passed."""

    def __init__(self, per_second: float) -> None:
        self.interval = (1 + MARGIN) / per_second
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Wait for the next request's turn."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        time.sleep(start - now)

    def hold(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (the API said ``Retry-After``)."""
        with self._lock:
            self._next = max(self._next, time.monotonic() + seconds)


def retry_after_seconds(value: str | None) -> float:
    """A ``Retry-After`` header's wait: seconds, or until an HTTP date (0: none given)."""
    if not value:
        return 0.0
    try:
        seconds = float(value)
        return seconds if math.isfinite(seconds) and seconds > 0 else 0.0
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return 0.0


@dataclass
class Attempts:
    """The requests one load sent, retries included, and how they ended."""

    sent: int = 0
    throttled: int = 0
    """Answered 429."""
    server_errors: int = 0
    """Answered 5xx."""
    timeouts: int = 0
    """Timed out or lost their connection."""
    last_url: str = ""


class _ThrottledTransport:
    """The transport under dlt's retrying session: each attempt waits for its turn, is counted,
    and a 429's ``Retry-After`` holds the throttle."""

    def __init__(self, throttle: Throttle, attempts: Attempts) -> None:
        from requests.adapters import HTTPAdapter

        self._adapter = HTTPAdapter()
        self.throttle, self.attempts = throttle, attempts

    def send(self, request: Any, **kwargs: Any) -> Any:
        import requests

        self.throttle.wait()
        self.attempts.sent += 1
        self.attempts.last_url = request.url
        try:
            response = self._adapter.send(request, **kwargs)
        except (requests.Timeout, requests.ConnectionError):
            self.attempts.timeouts += 1
            raise
        if response.status_code == 429:
            self.attempts.throttled += 1
            self.throttle.hold(retry_after_seconds(response.headers.get("Retry-After")))
        elif response.status_code >= 500:
            self.attempts.server_errors += 1
        return response

    def close(self) -> None:
        self._adapter.close()


def _paginator(paging: Any) -> Any:
    """dlt's paginator for the declared one."""
    from dlt.sources.helpers.rest_client import paginators

    match paging:
        case PageNumberPaging():
            return paginators.PageNumberPaginator(
                base_page=paging.base_page,
                page_param=paging.page_param,
                total_path=paging.total_path,
            )
        case OffsetPaging():
            return paginators.OffsetPaginator(
                limit=paging.limit,
                offset_param=paging.offset_param,
                limit_param=paging.limit_param,
                total_path=paging.total_path,
            )
        case CursorPaging():
            return paginators.JSONResponseCursorPaginator(
                cursor_path=paging.cursor_path, cursor_param=paging.cursor_param
            )
        case LinkHeaderPaging():
            return paginators.HeaderLinkPaginator(links_next_key=paging.rel)
    raise TypeError(f"no paginator for {paging!r}")


def _window_params(source: RestSource, window: dg.TimeWindow) -> dict[str, str]:
    declared = source.window_params
    if declared is None:
        return {}

    def shown(bound: datetime) -> str:
        return bound.date().isoformat() if declared.format == "date" else bound.isoformat()

    params = {declared.start: shown(window.start)}
    if declared.end is not None:
        params[declared.end] = shown(window.end)
    return params


@dataclass
class Pages:
    """What one load read: its records and how many pages and requests it took."""

    records: list[dict[str, Any]]
    pages: int
    attempts: Attempts

    def figures(self) -> dict[str, Any]:
        """The load's ``source/…`` metadata (retries: the requests sent again)."""
        attempts = self.attempts
        return {
            "source/pages": self.pages,
            "source/requests": attempts.sent,
            "source/retries": attempts.sent - self.pages,
            "source/throttled": attempts.throttled,
            "source/server_errors": attempts.server_errors,
            "source/timeouts": attempts.timeouts,
            "source/rows_read": len(self.records),
        }


def read_pages(
    connection: RestConnection,
    source: RestSource,
    throttle: Throttle,
    window: dg.TimeWindow | None = None,
) -> Pages:
    """Every record of ``source``'s path (for ``window``: those of the window), page after
    page, with a fresh dlt client whose requests ``throttle`` spaces; a page that cannot be read
    after the declared retries, or is not JSON, fails naming it."""
    import requests
    from dlt.sources.helpers.requests import Client
    from dlt.sources.helpers.rest_client import RESTClient
    from dlt.sources.helpers.rest_client.auth import BearerTokenAuth

    attempts = Attempts()
    session = Client(
        request_timeout=source.timeout_seconds,
        raise_for_status=False,
        request_max_attempts=source.max_retries + 1,
        request_backoff_factor=source.backoff_seconds,
        request_max_retry_delay=source.max_backoff_seconds,
    ).session
    transport = _ThrottledTransport(throttle, attempts)
    for scheme in ("http://", "https://"):
        session.mount(scheme, transport)
    token = connection.secret_token()
    client = RESTClient(
        base_url=connection.base_url(),
        auth=BearerTokenAuth(token) if token else None,
        paginator=_paginator(source.paginator),
        data_selector=source.records,
        session=session,
    )
    records: list[dict[str, Any]] = []
    pages = 0
    params = {**source.params, **(_window_params(source, window) if window else {})}
    try:
        for page in client.paginate(source.path, params=params):
            pages += 1
            records.extend(page)
    except requests.RequestException as error:
        url = urlsplit(attempts.last_url)
        raise dg.Failure(
            f"{source.name}: page {pages + 1} of {url.path}?{url.query} could not be read after "
            f"{attempts.sent} requests ({_reason(error)}); nothing of "
            f"{'this window' if window else 'the table'} was written: run it again",
            metadata={"page": pages + 1, "requests": attempts.sent},
        ) from error
    finally:
        session.close()
    return Pages(records, pages, attempts)


def _reason(error: Exception) -> str:
    import requests

    if isinstance(error, requests.JSONDecodeError):
        return f"the answer is not JSON: {error}"
    return f"{type(error).__name__}: {error}"


JSON_TYPES = {bool: "bool", int: "bigint", float: "double", str: "text", dict: "json", list: "json"}


def as_frame(records: list[dict[str, Any]]) -> tuple[pd.DataFrame | None, dict[str, str]]:
    """Records as a frame of Python values (a nested value as its JSON text; None: no
    records), and each field's type as the JSON gave it (``bigint|text`` where it varied)."""
    seen: dict[str, set[str]] = {}
    flat = []
    for record in records:
        for name, value in record.items():
            if value is not None:
                seen.setdefault(name, set()).add(JSON_TYPES.get(type(value), "text"))
            else:
                seen.setdefault(name, set())
        flat.append(
            {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in record.items()}
        )
    types = {
        name: "double" if kinds == {"bigint", "double"} else "|".join(sorted(kinds)) or "null"
        for name, kinds in seen.items()
    }
    return (pd.DataFrame(flat, dtype=object) if flat else None), types


def _source_metadata(source: RestSource, connection: RestConnection) -> dict[str, Any]:
    return {
        "source/kind": "rest",
        "source/connection": connection.name,
        "source/path": source.path,
        "source/paginator": source.paginator.type,
        "source/rate_limit_per_second": source.rate_limit_per_second,
    }


def _raw_asset(
    declaration: PipelineDeclaration, source: RestSource, schema: pa.DataFrameSchema
) -> dg.AssetsDefinition:
    connection_key = resource_key(source.connection)

    @dg.asset(
        **connected_args(declaration, f"raw_{source.name}", source, schema, KINDS, connection_key),
        check_specs=[rows_check(declaration, source)],
        **partitioned(declaration),
    )
    def raw(context: dg.AssetExecutionContext) -> Iterator:
        connection: RestConnection = getattr(context.resources, connection_key)
        throttle = Throttle(source.rate_limit_per_second)  # one pace over the run's partitions

        def read(partition_key: str, window: dg.TimeWindow) -> tuple[pd.DataFrame, dict]:
            loaded = read_pages(connection, source, throttle, window)
            rows, types = as_frame(loaded.records)
            frame = raw_text(rows, [c for c in source.columns if rows is None or c in rows])
            return frame, {**loaded.figures(), "source/schema": dg.MetadataValue.json(types)}

        shown = _source_metadata(source, connection)
        yield from read_partitions(context, declaration, source, schema, shown, read)

    return raw


def _reference_asset(
    declaration: PipelineDeclaration, source: RestSource, schema: pa.DataFrameSchema
) -> dg.AssetsDefinition:
    def read(connection: RestConnection) -> tuple[pd.DataFrame, dict[str, Any]]:
        loaded = read_pages(connection, source, Throttle(source.rate_limit_per_second))
        rows, types = as_frame(loaded.records)
        frame = pd.DataFrame(columns=source.columns) if rows is None else rows.infer_objects()
        return frame, {
            **_source_metadata(source, connection),
            **loaded.figures(),
            "source/schema": dg.MetadataValue.json(types),
        }

    connection_key = resource_key(source.connection)
    return connected_reference(declaration, source, schema, KINDS, connection_key, read)
