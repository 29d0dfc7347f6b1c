"""Advisory locks for work that spans several transactions, safe behind a transaction pooler.

A session advisory lock (`pg_advisory_lock`) belongs to a server connection: behind a
transaction pooler (PgBouncer `pool_mode = transaction`) the next statement may run on another
one, and the lock stays with a server connection that other clients then use. So the lock here is
transaction-scoped (`pg_try_advisory_xact_lock`) and held by a transaction of its own, open on a
pooled connection of its own for as long as the work runs (on other connections, in as many
transactions as it needs, or none: DETACH PARTITION ... CONCURRENTLY). A pooler keeps a client's
server connection for the length of its transaction, so the lock holds through one.

It goes when the block ends, and when its process or connection dies (the server ends the
transaction), as a session lock would. The holding transaction takes no snapshot and writes
nothing: it holds back neither vacuum nor DDL, only the lock's other takers. The keys are the
same two ints as the session locks taken elsewhere (a session lock and a transaction lock on the
same key exclude each other).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from db import pool

# -- try_xact_lock -- the lock (key, hashtext(name)) until the holding transaction ends; the
# holding transaction may sit idle as long as the work runs, whatever the server's
# idle_in_transaction_session_timeout (which would end it, and the lock with it).
TRY_XACT_LOCK = """
SELECT pg_try_advisory_xact_lock(%s, hashtext(%s)),
       set_config('idle_in_transaction_session_timeout', '0', true)
"""


@contextmanager
def try_lock(key: int, name: str) -> Iterator[bool]:
    """Yields True when this process got the lock (key, hashtext(name)), held until the block
    ends; False when another holds it (nothing to release then). The holder is a connection of
    its own, outside the pool: the work's connections come from the pool, and several
    maintenance jobs at once must not starve the worker threads of it."""
    with pool.connect(autocommit=True) as holder, holder.transaction():
        yield holder.execute(TRY_XACT_LOCK, (key, name)).fetchone()[0]
