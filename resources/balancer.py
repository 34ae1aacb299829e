"""The load balancer in front of a service's replicas, through haproxy's runtime API (its admin
socket): which server a replica is, its state, and draining it before it reloads."""

import contextlib
import csv
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

BALANCER_SOCKET_ENV_VAR = "ML_ASSETS_HAPROXY_SOCKET"


@dataclass(frozen=True)
class Balancer:
    """haproxy listening on the admin socket at ``socket_path`` (``stats socket … level
    admin``)."""

    socket_path: str
    timeout_s: float = 5.0

    def command(self, line: str) -> str:
        """One runtime API command's answer (the socket answers and closes)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(self.timeout_s)
            connection.connect(self.socket_path)
            connection.sendall(f"{line}\n".encode())
            chunks = []
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self) -> list[dict[str, str]]:
        """``show stat``: one row per server (backend ``pxname``, server ``svname``, ``addr``,
        ``status`` UP/DOWN/DRAIN/MAINT, ``scur`` sessions now)."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(line for line in text.splitlines() if line)
        return [r for r in rows if r["svname"] not in ("FRONTEND", "BACKEND")]

    def server_of(self, url: str) -> dict[str, str] | None:
        """The server whose address is ``url``'s host and port; None when haproxy has none."""
        parts = urlsplit(url)
        address = f"{parts.hostname}:{parts.port}"
        return next((s for s in self.servers() if s.get("addr") == address), None)

    def _set_state(self, server: dict[str, str], state: str) -> None:
        answer = self.command(f"set server {server['pxname']}/{server['svname']} state {state}")
        if answer.strip():
            raise RuntimeError(f"haproxy refused to set {server['svname']} {state}: {answer}")

    @contextlib.contextmanager
    def drained(self, url: str, wait_s: float = 10.0) -> Iterator[None]:
        """The block runs while the replica at ``url`` gets no new requests and (up to
        ``wait_s``) those it had are answered; then it is ready again. A replica haproxy does
        not know runs the block as it is."""
        server = self.server_of(url)
        if server is None:
            yield
            return
        self._set_state(server, "drain")
        try:
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                now = self.server_of(url)
                if now is None or int(now.get("scur") or 0) == 0:
                    break
                time.sleep(0.05)
            yield
        finally:
            self._set_state(server, "ready")
