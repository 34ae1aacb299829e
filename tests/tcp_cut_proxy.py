"""A TCP proxy in front of a real server that cuts connections as a restarting server or a
broken network does: the connection that has received a given number of bytes from the server
(one consumer cut mid-read), or every connection at that moment (the server restarted), once.
New connections are accepted throughout, as a restarted server accepts them again."""

import contextlib
import socket
import threading


class CutProxy:
    """A threaded proxy on 127.0.0.1 to ``(host, port)``."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.cuts = 0
        """Connections cut so far."""
        self.server_bytes: list[int] = []
        """Bytes received from the server, per connection in the order they were accepted."""
        self._after: int | None = None
        self._every = False
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    def cut_after(self, received: int, every: bool = False) -> None:
        """Cut the first connection to have received ``received`` bytes from the server (and,
        with ``every``, every other open connection with it), once."""
        with self._lock:
            self._after, self._every = received, every

    def __enter__(self) -> "CutProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()
        with self._lock:
            for pair in self._pairs:
                _close(*pair)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self._lock:
                self._pairs.append((client, server))
                self.server_bytes.append(0)
                index = len(self.server_bytes) - 1
            threading.Thread(target=self._pump, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, index), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, server: int | None) -> None:
        """Relay ``source`` to ``target``; ``server``: the index of the connection whose server
        side ``source`` is."""
        received = 0
        try:
            while data := source.recv(65536):
                target.sendall(data)
                received += len(data)
                if server is not None:
                    self.server_bytes[server] = received
                if server is not None and self._due(received):
                    self._cut(source, target)
                    return
        except OSError:
            pass
        _close(source, target)

    def _due(self, received: int) -> bool:
        with self._lock:
            if self._after is None or received < self._after:
                return False
            self._after = None
            return True

    def _cut(self, server: socket.socket, client: socket.socket) -> None:
        with self._lock:
            pairs = list(self._pairs) if self._every else [(client, server)]
            self.cuts += len(pairs)
        for pair in pairs:
            _close(*pair)


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
