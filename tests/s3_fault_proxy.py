"""An HTTP proxy in front of an S3 server that fails requests as an overloaded or broken S3
does: ``503 SlowDown`` (throttling) or ``500 InternalError``, for a share of the requests or
all of them for a while, optionally after the server applied the request (its answer is lost).
Fault tests point ``AWS_ENDPOINT_URL`` at it.
"""

import http.client
import http.server
import threading
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

ERROR_CODES = {500: "InternalError", 503: "SlowDown"}


@dataclass
class Faults:
    """Which requests fail, and how."""

    share: float = 0.0
    """Fraction of the matching requests that fail, spread evenly (0.3: the 4th, 7th, 10th…;
    1.0: all of them, an outage), so a client that retries is never failed many times in a
    row by chance."""
    status: int = 503
    """The answer of a failed request: 503 SlowDown or 500 InternalError."""
    methods: frozenset[str] = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE"})
    after_forwarding: bool = False
    """Forward the request first, then answer with the error: a PUT is applied but its
    client sees a failure (and retries it)."""


@dataclass(frozen=True)
class Request:
    """One request the proxy saw: method, path and query, and the status it answered."""

    method: str
    path: str
    status: int
    injected: bool


class FaultProxy:
    """A threaded proxy on 127.0.0.1 to ``upstream`` (``http://host:port``)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream).netloc
        self.faults = Faults()
        self.requests: list[Request] = []
        self._matching = 0
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def injected(self) -> Counter[str]:
        """Failed answers the proxy made up, by method."""
        with self._lock:
            return Counter(r.method for r in self.requests if r.injected)

    def seen(self, method: str, path_contains: str = "") -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.method == method and path_contains in r.path]

    def _fails(self, method: str) -> bool:
        faults = self.faults
        if method not in faults.methods:
            return False
        with self._lock:
            self._matching += 1
            return int(self._matching * faults.share) > int((self._matching - 1) * faults.share)

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the requests are recorded instead."""

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"
                }
                headers["Content-Length"] = str(len(body))
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    return answer.status, answer.getheaders(), answer.read()
                finally:
                    upstream.close()

            def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                head = self.command == "HEAD"  # its Content-Length is the object's, as upstream's
                for name, value in headers:
                    if name.lower() not in ("transfer-encoding", "connection") and (
                        head or name.lower() != "content-length"
                    ):
                        self.send_header(name, value)
                if not head:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _error(self) -> None:
                status = proxy.faults.status
                code = ERROR_CODES[status]
                body = (
                    '<?xml version="1.0" encoding="UTF-8"?><Error><Code>'
                    f"{code}</Code><Message>injected by the fault proxy</Message>"
                    "<RequestId>fault-proxy</RequestId></Error>"
                ).encode()
                headers = [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))]
                self._answer(status, headers, body)

            def _handle(self) -> None:
                body = self._body()
                path = self.path
                if proxy._fails(self.command):
                    if proxy.faults.after_forwarding:
                        self._forward(body)
                    proxy._record(Request(self.command, path, proxy.faults.status, True))
                    self._error()
                    return
                status, headers, answer = self._forward(body)
                proxy._record(Request(self.command, path, status, False))
                self._answer(status, headers, answer)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle

        return Handler
