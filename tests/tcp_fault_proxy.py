"""A TCP proxy in front of a real server (PostgreSQL, MariaDB, RabbitMQ) that cuts its
connections the way a restarted or killed server does: both sides closed at once, in the middle
of a reply. Fault tests point a connection's URL at it; the machine's server itself is never
restarted (other tests use it at the same time)."""

import contextlib
import socket
import threading


class TcpFaultProxy:
    """A threaded proxy on 127.0.0.1 to ``host:port``. ``cut_after(n)`` arms it: the next
    connection to have relayed ``n`` bytes from the server is cut there, once."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.upstream = (host, port)
        self.connections = 0
        """Connections accepted."""
        self.cuts = 0
        """Connections cut."""
        self.server_bytes: list[int] = []
        """Bytes relayed from the server, per connection in the order they were accepted."""
        self._cut_at: int | None = None
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    def cut_after(self, server_bytes: int) -> None:
        with self._lock:
            self._cut_at = server_bytes

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self._lock:
                index = self.connections
                self.connections += 1
                self.server_bytes.append(0)
            threading.Thread(target=self._pump, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, index), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, index: int | None) -> None:
        """Relay ``source`` to ``sink``; ``index``: the server side of connection ``index``."""
        with contextlib.suppress(OSError):
            while data := source.recv(16384):
                if index is not None and self._cut(index, len(data)):
                    break
                sink.sendall(data)
        for side in (source, sink):
            with contextlib.suppress(OSError):
                side.shutdown(socket.SHUT_RDWR)
            side.close()

    def _cut(self, index: int, received: int) -> bool:
        with self._lock:
            self.server_bytes[index] += received
            if self._cut_at is None or self.server_bytes[index] < self._cut_at:
                return False
            self._cut_at = None
            self.cuts += 1
            return True
