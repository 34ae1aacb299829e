"""A paged JSON API, as an upstream's stand-in: the rows of a frame whose time column falls in a
window, behind a bearer token and a rate limit (what ``Pipeline.publish_to_api`` returns).

``GET <path>?start=…&end=…`` answers the records whose time column falls in ``[start, end)``
(ISO 8601 instants; a date is its midnight UTC), a page at a time, paged by any of ``page`` and
``per_page``, ``offset`` and ``limit``, or the ``cursor`` of the previous answer::

    {"data": [{…}, …],
     "meta": {"page": 1, "per_page": 24, "total": 72, "total_pages": 3, "next_cursor": "…"}}

with the next page's URL in a ``Link: <…>; rel="next"`` header. Values are typed as JSON
(numbers, text, ``null`` for a missing one, ``NA`` in the frame). Without ``Authorization:
Bearer <token>`` it answers 401; past its rate limit (a bucket of ``rate_limit`` requests
refilled at ``rate_limit`` a second) 429 with ``Retry-After``. ``faults`` switches on what real
APIs do (a burst of 429s, intermittent 500s, a page that stalls, an answer of broken JSON), and
``log`` keeps every request as it arrived, for tests to count.
"""

import base64
import json
import math
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pandas as pd

MAX_PAGE_SIZE = 1000


@dataclass
class Faults:
    """What the API does wrong, switched on by a test (all off by default)."""

    throttle_next: int = 0
    """The next requests answered 429 whatever the rate, each with ``Retry-After``."""
    retry_after: int = 1
    """The seconds a 429 asks to wait."""
    fail_every: int = 0
    """Every n-th request answered 500 (0: none)."""
    stall_pages: dict[int, int] = field(default_factory=dict)
    """Page number → how many more times it stalls ``stall_seconds`` before answering."""
    stall_seconds: float = 2.0
    malformed_requests: set[int] = field(default_factory=set)
    """Requests (the n-th since the last reset, from 1) answered with JSON cut short."""
    rate_limit: float | None = None
    """A lower rate limit than the API's own (a busy day at the provider)."""


@dataclass(frozen=True)
class Served:
    """One request as the API saw it."""

    at: float
    """When it arrived (``time.monotonic()``)."""
    page: int
    status: int
    """0: stalled, no answer."""
    params: dict[str, str]


class PagedApi:
    """The API serving ``rows`` (a table as shipped: every value as text) by ``time_column`` at
    ``path`` below ``url`` (``http://host:port``; port 0: a free one) with ``token``, allowing
    ``rate_limit`` requests a second, in a thread while it is entered."""

    def __init__(
        self,
        rows: pd.DataFrame,
        time_column: str,
        path: str,
        url: str,
        token: str,
        rate_limit: float,
    ) -> None:
        self.records = [_typed(record) for record in rows.to_dict("records")]
        self.instants = pd.to_datetime(rows[time_column], utc=True).astype("int64").to_numpy()
        """Each record's time in nanoseconds since the epoch."""
        self.path, self.token, self.rate_limit = path, token, rate_limit
        self.faults = Faults()
        self.log: list[Served] = []
        self._lock = threading.Lock()
        self._tokens, self._filled_at = rate_limit, time.monotonic()
        address = urlsplit(url)
        host, port = address.hostname or "127.0.0.1", address.port or 0
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._server.api = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "PagedApi":
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        """Faults off, log empty, the rate limit's bucket full."""
        with self._lock:
            self.faults = Faults()
            self.log.clear()
            self._tokens, self._filled_at = self.rate_limit, time.monotonic()

    def answer(self, url: str, authorization: str | None) -> tuple[int, dict[str, str], bytes]:
        """The status, headers and body of a GET of ``url``; logged."""
        parts = urlsplit(url)
        params = dict(parse_qsl(parts.query))
        with self._lock:
            arrived = time.monotonic()
            status, headers, body, page = self._answer(parts.path, params, authorization, arrived)
            self.log.append(Served(arrived, page, status, params))
        return status, headers, body

    def _answer(
        self, path: str, params: dict[str, str], authorization: str | None, now: float
    ) -> tuple[int, dict[str, str], bytes, int]:
        if path != self.path:
            return 404, {}, _json({"error": f"no such path {path}"}), 0
        if authorization != f"Bearer {self.token}":
            return 401, {}, _json({"error": "a bearer token is required"}), 0
        try:
            start, end = (pd.Timestamp(params[b]) for b in ("start", "end"))
            size = min(int(params.get("per_page") or params.get("limit") or 100), MAX_PAGE_SIZE)
            offset = _offset(params, size)
        except (KeyError, ValueError) as error:
            return 400, {}, _json({"error": f"bad parameters: {error}"}), 0
        page = offset // size + 1
        faults = self.faults
        within = self._take_token(now)
        if faults.throttle_next > 0 or not within:
            wait = faults.retry_after if faults.throttle_next > 0 else self._wait()
            faults.throttle_next = max(0, faults.throttle_next - 1)
            return 429, {"Retry-After": str(wait)}, _json({"error": "rate limited"}), page
        if faults.fail_every and (len(self.log) + 1) % faults.fail_every == 0:
            return 500, {}, _json({"error": "internal error"}), page
        if faults.stall_pages.get(page, 0) > 0:
            faults.stall_pages[page] -= 1
            return 0, {}, b"", page  # the handler stalls, then answers nothing
        selected = [
            self.records[i]
            for i in ((self.instants >= start.value) & (self.instants < end.value)).nonzero()[0]
        ]
        chunk = selected[offset : offset + size]
        more = offset + size < len(selected)
        meta = {
            "page": page,
            "per_page": size,
            "total": len(selected),
            "total_pages": math.ceil(len(selected) / size),
            "next_cursor": _cursor(offset + size) if more else None,
        }
        headers = {}
        if more:
            following = {k: v for k, v in params.items() if k not in ("offset", "cursor")}
            following.update(page=str(page + 1), per_page=str(size))
            headers["Link"] = f'<{self.path}?{urlencode(following)}>; rel="next"'
        body = _json({"data": chunk, "meta": meta})
        if len(self.log) + 1 in faults.malformed_requests:
            return 200, {}, body[: len(body) // 2], page  # cut short
        return 200, headers, body, page

    @property
    def _limit(self) -> float:
        return self.faults.rate_limit or self.rate_limit

    def _take_token(self, now: float) -> bool:
        self._tokens = min(self._limit, self._tokens + (now - self._filled_at) * self._limit)
        self._filled_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def _wait(self) -> int:
        """Whole seconds until the bucket holds a request again."""
        return max(1, math.ceil((1 - self._tokens) / self._limit))


def _offset(params: dict[str, str], size: int) -> int:
    if "cursor" in params:
        return int(json.loads(base64.urlsafe_b64decode(params["cursor"]))["offset"])
    if "offset" in params:
        return int(params["offset"])
    return (int(params.get("page", 1)) - 1) * size


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _json(document: Any) -> bytes:
    return json.dumps(document).encode()


def _typed(record: dict[str, str]) -> dict[str, Any]:
    """A shipped row as the API gives it: numbers as numbers, ``NA`` as null."""

    def value(text: str) -> Any:
        if text == "NA":
            return None
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text

    return {name: value(text) for name, text in record.items()}


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def do_GET(self) -> None:
        api: PagedApi = self.server.api  # type: ignore[attr-defined]
        status, headers, body = api.answer(self.path, self.headers.get("Authorization"))
        if status == 0:  # a stalled page: the client gives up first
            time.sleep(api.faults.stall_seconds)
            return
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client went away
            pass

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: ``PagedApi.log`` keeps the requests."""
