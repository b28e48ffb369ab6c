"""The one way to the database: every transaction runs in a worker thread, never on the event loop.

``await store.run(fn, *args)`` calls ``fn(session, *args)`` inside one transaction (committed
when ``fn`` returns, rolled back when it raises) on a worker of a small thread pool, and returns
what ``fn`` returned. The functions passed in are plain synchronous SQLAlchemy code; they live
next to the logic they serve (scheduler, sessions, REST handlers) but reach the database only
through here.

- SQLite: one worker. Writes are serialised anyway, and one thread means no "database is
  locked" between threads; the loop stays free while a transaction runs.
- PostgreSQL: :data:`~.db.DB_WORKERS` workers, as many pooled connections. A transaction that
  PostgreSQL aborts as a deadlock or a serialisation failure (two replicas touching the same
  rows in another order) is run again, up to :data:`RETRIES` times.

Rows returned to the loop are detached (``expire_on_commit=False``): plain values to read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from vantage.control_plane.db import DB_WORKERS, Database

log = logging.getLogger("vantage.control_plane.store")

P = ParamSpec("P")
T = TypeVar("T")
#: PostgreSQL error codes worth a retry: serialization_failure, deadlock_detected
RETRYABLE = frozenset({"40001", "40P01"})
RETRIES = 3
#: ``(transaction name, seconds waiting for a worker, seconds running)``
Observer = Callable[[str, float, float], None]


def _retryable(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code in RETRYABLE


class Store:
    """The database, reached through a worker pool."""

    def __init__(self, url: str, observe: Observer | None = None) -> None:
        self.db = Database(url)
        workers = 1 if self.db.is_sqlite else DB_WORKERS
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vantage-db")
        #: told (on the worker) how long each transaction waited for a worker and how long it ran
        self._observe = observe

    @property
    def is_sqlite(self) -> bool:
        return self.db.is_sqlite

    async def run(self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(session, *args, **kwargs)`` in one transaction on a worker thread."""
        loop = asyncio.get_running_loop()
        submitted = time.monotonic()

        def job() -> T:
            if self._observe is None:
                return self.call(fn, *args, **kwargs)
            started = time.monotonic()
            try:
                return self.call(fn, *args, **kwargs)
            finally:
                self._observe(_name(fn), started - submitted, time.monotonic() - started)

        return await loop.run_in_executor(self._pool, job)

    def call(self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """The same, on the calling thread (start-up and shutdown, before and after the loop runs)."""
        for attempt in range(1, RETRIES + 1):
            try:
                with self.db.session() as session:
                    return fn(session, *args, **kwargs)
            except DBAPIError as exc:
                if attempt == RETRIES or not _retryable(exc):
                    raise
                log.info("transaction %s aborted by the database (%s); retrying", _name(fn), exc.orig)
                time.sleep(0.01 * attempt)
        raise AssertionError("unreachable")

    async def create_schema(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self.db.create_schema)

    def close(self) -> None:
        """Wait for running transactions, then close every connection."""
        self._pool.shutdown(wait=True)
        self.db.dispose()


def _name(fn: Any) -> str:
    return str(getattr(fn, "__qualname__", type(fn).__name__))


def rowcount(result: Any) -> int:
    """The number of rows an UPDATE or DELETE matched."""
    return int(result.rowcount)
