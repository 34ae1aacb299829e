"""Named stream connections: a RabbitMQ broker whose stream queues sources read, one resource
per connection a source names (``ML_ASSETS_STREAM_<NAME>_URL``, an ``amqp://`` URL, or the
secret file named by ``ML_ASSETS_STREAM_<NAME>_URL_FILE``: ``resources.named_connection``).

Streams are read over AMQP 0-9-1 (port 5672, the ``amqp`` client Celery uses), which needs no
broker plugin: a consumer starts at an ``x-stream-offset``, acknowledges what it read and keeps
at most ``prefetch`` messages unacknowledged (the broker's backpressure). AMQP has no call for
a stream's last offset (``queue.declare-ok`` counts 0 messages for a stream), so the high
watermark is read by a consumer at ``x-stream-offset: last``, which gets the stream's last
chunk at once: the highest offset delivered before it goes quiet. Every connection is named
(``ml-assets stream <name> <purpose>``), so an operator sees and can close it.
"""

import contextlib
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import dagster as dg

from resources.named_connection import NamedConnection, from_environment

PREFIX = "stream_"
OFFSET = "x-stream-offset"
EMPTY_WAIT_S = 1.0
"""How long the watermark's consumer waits for the last chunk of a stream that may be empty."""
QUIET_S = 0.2
"""How long it waits for more of the last chunk once a message came."""
READ_TIMEOUT_S = 30.0
"""A read that expects more and gets nothing for this long reconnects."""
LOCK_WAIT_S = 600.0
CONFIRM_WINDOW = 1000
"""Messages a publisher sends ahead of the broker's confirmations."""


def resource_key(connection: str) -> str:
    """The resource key of the connection named ``connection`` in a declaration."""
    return f"{PREFIX}{connection}"


def _errors() -> tuple[type[BaseException], ...]:
    """What a lost or refused connection raises (a broker restarted, a connection closed by an
    operator, a network cut): the read resumes on a new connection."""
    import amqp

    return (OSError, amqp.exceptions.ConnectionError)


class StreamRead:
    """Events ``(offset, body)`` of ``queue`` from ``first`` to ``last`` (both included), in
    order, each once: a lost connection is opened again (up to ``retries`` times in a row, with
    backoff) and the read resumes after the last offset it yielded."""

    def __init__(
        self,
        connection: "StreamConnection",
        queue: str,
        first: int,
        last: int,
        prefetch: int,
        retries: int = 5,
    ) -> None:
        self.connection, self.queue = connection, queue
        self.first, self.last, self.prefetch, self.max_retries = first, last, prefetch, retries
        self.retries = 0
        """Connections lost and opened again during the read."""

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        position, in_a_row = self.first, 0
        while position <= self.last:
            try:
                for offset, body in self._consume(position):
                    position, in_a_row = offset + 1, 0
                    yield offset, body
            except _errors() as error:
                in_a_row += 1
                self.retries += 1
                if in_a_row > self.max_retries:
                    raise dg.Failure(
                        f"stream {self.queue!r} on {self.connection.name!r}: lost the connection "
                        f"{in_a_row} times in a row at offset {position} ({error!r}); nothing "
                        "was recorded, the next run resumes there"
                    ) from error
                time.sleep(min(0.2 * 2**in_a_row, 5.0))

    def _consume(self, position: int) -> Iterator[tuple[int, bytes]]:
        with self.connection.open("consumer") as (connection, channel):
            channel.basic_qos(0, self.prefetch, False)
            buffer: deque = deque()
            channel.basic_consume(self.queue, callback=buffer.append, arguments={OFFSET: position})
            unacknowledged, tag = 0, None
            while position <= self.last:
                if not buffer:
                    connection.drain_events(timeout=READ_TIMEOUT_S)
                while buffer and position <= self.last:
                    message = buffer.popleft()
                    tag, offset = message.delivery_tag, message.headers[OFFSET]
                    unacknowledged += 1
                    if offset >= position:  # a read starts at its offset's chunk
                        position = offset + 1
                        if offset <= self.last:
                            yield offset, _as_bytes(message.body)
                # acknowledged in bulk, by half a prefetch: the broker sends the next ones
                if tag is not None and unacknowledged * 2 >= self.prefetch:
                    channel.basic_ack(tag, multiple=True)
                    unacknowledged = 0


def _as_bytes(body: Any) -> bytes:
    return body.encode() if isinstance(body, str) else bytes(body)


class StreamConnection(NamedConnection):
    """One RabbitMQ broker (``amqp://user:password@host:port/vhost``)."""

    URL_VARIABLE = "ML_ASSETS_STREAM_<NAME>_URL"
    URL_FILE_VARIABLE = "ML_ASSETS_STREAM_<NAME>_URL_FILE"

    @contextlib.contextmanager
    def open(self, purpose: str) -> Iterator[tuple[Any, Any]]:
        """A named connection to the broker and a channel on it, closed afterwards."""
        import amqp

        url = urlsplit(self.secret_url())
        vhost = unquote(url.path[1:]) if len(url.path) > 1 else "/"
        connection = amqp.Connection(
            f"{url.hostname or '127.0.0.1'}:{url.port or 5672}",
            userid=unquote(url.username or "guest"),
            password=unquote(url.password or "guest"),
            virtual_host=vhost,
            client_properties={"connection_name": f"ml-assets stream {self.name} {purpose}"},
            connect_timeout=10,
        )
        try:
            connection.connect()
            yield connection, connection.channel()
        finally:
            try:
                connection.close()
            except _errors():
                connection.collect()

    def declare(self, queue: str) -> None:
        """Create the stream queue ``queue`` unless it exists."""
        with self.open("declare") as (_, channel):
            _declare(channel, queue)

    def publish(self, queue: str, bodies: Iterable[bytes]) -> int:
        """Append ``bodies`` to the stream ``queue`` (created if missing), in order, each
        confirmed by the broker before this returns (at most ``CONFIRM_WINDOW`` awaiting their
        confirmation at a time); how many."""
        import amqp

        with self.open("publisher") as (connection, channel):
            _declare(channel, queue)
            channel.confirm_select()
            confirms = _Confirms()
            channel.events["basic_ack"].add(confirms.ack)
            channel.events["basic_nack"].add(confirms.nack)
            published = 0
            for body in bodies:
                channel.basic_publish(
                    amqp.Message(body, delivery_mode=2), exchange="", routing_key=queue
                )
                published += 1
                while published - confirms.upto >= CONFIRM_WINDOW:
                    connection.drain_events(timeout=READ_TIMEOUT_S)
            while confirms.upto < published:
                connection.drain_events(timeout=READ_TIMEOUT_S)
            return published

    def watermark(self, queue: str) -> int:
        """The highest offset of the stream ``queue`` (-1: empty); fails when it is missing."""
        import amqp

        last = -1
        with self.open("watermark") as (connection, channel):
            try:
                channel.queue_declare(queue, passive=True)
            except amqp.exceptions.NotFound as error:
                raise dg.Failure(f"no stream queue {queue!r} on {self.name!r}") from error
            channel.basic_qos(0, 1000, False)

            def seen(message: Any) -> None:
                nonlocal last
                last = max(last, message.headers[OFFSET])
                channel.basic_ack(message.delivery_tag)

            channel.basic_consume(queue, callback=seen, arguments={OFFSET: "last"})
            started, wait = time.monotonic(), EMPTY_WAIT_S
            while time.monotonic() - started < 5 * EMPTY_WAIT_S:
                try:
                    connection.drain_events(timeout=wait)
                except TimeoutError:
                    break
                wait = QUIET_S
        return last

    def read(self, queue: str, first: int, last: int, prefetch: int) -> StreamRead:
        return StreamRead(self, queue, first, last, prefetch)

    @contextlib.contextmanager
    def consumer_lock(self, queue: str) -> Iterator[Any]:
        """Hold the broker's exclusive queue ``<queue>.consumer-lock`` (one consumer of a
        stream at a time: their read-merge-write of a partition must not interleave), waiting
        for a consumer that holds it; the broker drops it with the connection holding it, a
        killed process's included. Yields a check that raises when the lock was lost."""
        import amqp

        with self.open("lock") as (connection, _):
            started = time.monotonic()
            while True:
                channel = connection.channel()
                try:
                    channel.queue_declare(f"{queue}.consumer-lock", exclusive=True)
                    break
                except amqp.exceptions.ResourceLocked:
                    if time.monotonic() - started > LOCK_WAIT_S:
                        raise dg.Failure(
                            f"another consumer of {queue!r} held its lock for {LOCK_WAIT_S} s"
                        ) from None
                    time.sleep(0.5)

            def still_held() -> None:
                try:
                    channel.queue_declare(f"{queue}.consumer-lock", passive=True)
                except (*_errors(), amqp.exceptions.ChannelError) as error:
                    raise dg.Failure(
                        f"lost the lock of {queue!r} ({error!r}: the broker restarted or the "
                        "connection was cut): nothing was written, the next run replays"
                    ) from error

            yield still_held


class _Confirms:
    """The broker's confirmations of a channel's publishes: ``upto``, the delivery tag up to
    which every message is confirmed."""

    def __init__(self) -> None:
        self.upto = 0
        self._single: set[int] = set()

    def ack(self, tag: int, multiple: bool) -> None:
        if multiple:
            self.upto = max(self.upto, tag)
        else:
            self._single.add(tag)
        while self.upto + 1 in self._single:
            self.upto += 1
            self._single.discard(self.upto)

    def nack(self, tag: int, multiple: bool) -> None:
        raise dg.Failure(f"the broker refused the message {tag} (nack): publish it again")


def _declare(channel: Any, queue: str) -> None:
    channel.queue_declare(
        queue, durable=True, auto_delete=False, arguments={"x-queue-type": "stream"}
    )


def stream_connection(name: str) -> StreamConnection:
    """The broker ``name`` as the environment configures it."""
    return from_environment(StreamConnection, name)
