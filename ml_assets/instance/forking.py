"""Pooled database connections across ``os.fork``: a child never uses its parent's.

Right after a fork, before anything in the child can use (or pre-ping) an inherited
connection, every registered engine gets a fresh pool, so the child opens its own connections.
The inherited pools stay referenced: closing their connections in the child would release the
parent's SQLite locks or send PostgreSQL a goodbye on the parent's sockets.
"""

import os
import weakref

from sqlalchemy.engine import Engine

_ENGINES: "weakref.WeakSet[Engine]" = weakref.WeakSet()
_INHERITED: list[object] = []


def fork_safe(engine: Engine) -> Engine:
    """``engine``, registered for a fresh pool in every forked child."""
    _ENGINES.add(engine)
    return engine


def _fresh_pools_in_child() -> None:
    for engine in list(_ENGINES):
        _INHERITED.append(engine.pool)
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_fresh_pools_in_child)
