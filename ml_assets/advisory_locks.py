"""PostgreSQL session advisory locks, held by a connection of their own.

A lock is released when its connection closes, including when the process holding it dies:
the server ends a session whose client is gone once its TCP keepalive gives up (set here to
about a minute instead of the system's two hours, so a machine that vanished without closing
its sockets does not hold a lock that long).
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

KEEPALIVE = "-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3"


def session_lock(url: str, name: str, wait: bool = True) -> "Connection | None":
    """A connection holding the advisory lock ``name`` on the PostgreSQL at ``url`` (waiting
    for it while another session holds it); without ``wait``, None when another holds it.
    Close the connection to release the lock."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    # NullPool: closing the connection ends the session, which releases the lock
    engine = sqlalchemy.create_engine(
        url,
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args={"options": KEEPALIVE},
    )
    connection = engine.connect()
    try:
        function = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
        held = connection.execute(
            sqlalchemy.text(f"SELECT {function}(hashtextextended(:name, 0))"), {"name": name}
        ).scalar()
    except BaseException:
        connection.close()
        raise
    if wait or held:
        return connection
    connection.close()
    return None
