"""What a forked process inherits: database connections, and the forkserver's heap.

Pooled database connections across ``os.fork``: a child never uses its parent's. Right after
a fork, before anything in the child can use (or pre-ping) an inherited connection, every
registered engine gets a fresh pool, so the child opens its own connections. The inherited
pools stay referenced: closing their connections in the child would release the parent's
SQLite locks or send PostgreSQL a goodbye on the parent's sockets.

The forkserver's heap (the code location it preloaded, ~150 MB): a step process forked from it
shares those pages until it writes to them, and Python's cyclic garbage collector writes to
every object it tracks, so without ``gc.freeze`` each step process soon holds its own copy.
"""

import gc
import os
import sys
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


def _is_forkserver() -> bool:
    """Whether this process is a ``multiprocessing`` forkserver (started as
    ``python -c 'from multiprocessing.forkserver import main; main(...)'``)."""
    return any("multiprocessing.forkserver import main" in arg for arg in sys.orig_argv)


def freeze_heap_before_forks() -> None:
    """In a forkserver, move every object to the garbage collector's permanent generation
    right before each fork, so forked children never touch (and copy) the pages of what the
    server imported. Elsewhere nothing: a long-lived process must keep collecting its garbage.
    """
    if _is_forkserver():
        os.register_at_fork(before=gc.freeze)
