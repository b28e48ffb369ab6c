"""Group commit: one write and one ``fsync`` make everything queued in the journal durable.

The agent must not act on an instruction before its nonce is durable (replay protection across
a restart, even a power loss) and must not send a result before it is durable (no result lost
to a crash).  Callers append their records to the journal and ``await``
:meth:`GroupCommit.durable`.  A round takes every record queued so far, writes them and flushes
the file once in a worker thread (the loop's default executor, so the loop keeps running checks
and reading frames), then wakes every caller whose records it covered.  Records queued while a
round runs are served by the next round, so under load each round covers many checks and the
flush rate is bounded by the disk's latency, not by the check rate.  When the journal holds too
much dead data, a round also compacts it (:meth:`vantage.agent.journal.Journal.write`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from vantage.agent.journal import COMPACT_MIN_BYTES, NONCE_RECORD_BYTES, Journal, Snapshot
from vantage.agent.outbox import Outbox
from vantage.protocol.replay import ReplayCache

log = logging.getLogger(__name__)


@dataclass
class DurableState:
    """The replay cache and the outbox, both kept in one journal."""

    journal: Journal
    replay: ReplayCache
    outbox: Outbox


def open_state(
    state_dir: Path,
    *,
    max_results: int = 10_000,
    max_bytes: int = 50 * 1024**2,
    compact_min_bytes: int = COMPACT_MIN_BYTES,
) -> DurableState:
    """Recover what earlier runs left in ``state_dir`` and start the journal afresh (blocking).

    OSError when the journal cannot be read or written.
    """
    journal = Journal(state_dir, compact_min_bytes=compact_min_bytes)
    recovered = journal.recover()
    replay = ReplayCache(sink=journal.append_nonces)
    replay.load(recovered.nonces.items())
    outbox = Outbox(journal, max_results=max_results, max_bytes=max_bytes, recovered=recovered.results)
    journal.start(Snapshot(replay.entries(), outbox.snapshot()))
    return DurableState(journal, replay, outbox)


class GroupCommit:
    """Rounds of durability for ``journal``, one at a time."""

    def __init__(self, journal: Journal, outbox: Outbox, replay: ReplayCache) -> None:
        self.journal = journal
        self.outbox = outbox
        self.replay = replay
        #: (sequence number to wait for, future), in call order: the numbers never decrease
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # asked once: each ask is a getpid() on 3.11
        #: rounds completed, and compactions among them (for tests and logs)
        self.rounds = 0
        self.compactions = 0

    async def durable(self) -> None:
        """Return once every record appended before the call is durable; OSError if it cannot be."""
        target = self.journal.appended
        if self.journal.durable >= target:
            return
        waiter: asyncio.Future[None] = self._running_loop().create_future()
        self._waiters.append((target, waiter))
        self._start()
        await waiter

    def request(self) -> None:
        """Ask for a round without waiting (records nobody waits for, such as acks)."""
        if self.journal.pending:
            self._start()

    async def close(self) -> None:
        """Wait for the running round, then write what is left on the loop (the agent is stopping)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        records, target = self.journal.take()
        try:
            if records:
                self.journal.write(records)
                self.journal.durable = target
        except OSError as exc:
            log.warning("last commit round failed: %s", exc)
        self.journal.close()

    # ------------------------------------------------------------------ internals

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = self._running_loop().create_task(self._run(), name="group-commit")

    async def _run(self) -> None:
        while self.journal.pending:
            await asyncio.sleep(0)  # let the requests of this loop iteration join the round
            records, target = self.journal.take()
            snapshot = self._snapshot()
            try:
                await self._running_loop().run_in_executor(None, self.journal.write, records, snapshot)
            except OSError as exc:
                self.journal.requeue(records)
                log.error("journal write failed: %s", exc)
                self._wake(self.journal.appended, exc)  # every waiter: nobody waits for a retry
                return  # the next caller starts the next attempt
            except BaseException as exc:  # a bug or a cancellation: nobody may wait forever
                self.journal.requeue(records)
                self._wake(self.journal.appended, RuntimeError(f"commit round failed: {exc!r}"))
                raise
            self.journal.durable = target
            self.rounds += 1
            if snapshot is not None:
                self.compactions += 1
                log.info("journal compacted: %d bytes", self.journal.disk_bytes)
            self._wake(target, None)
            self.outbox.changed.set()

    def _snapshot(self) -> Snapshot | None:
        live = len(self.replay) * NONCE_RECORD_BYTES + self.outbox.size_bytes
        if not self.journal.wants_compaction(live):
            return None
        return Snapshot(self.replay.entries(), self.outbox.snapshot())

    def _wake(self, target: int, error: BaseException | None) -> None:
        """Settle the waiters whose records the round ending at ``target`` covered."""
        waiters = self._waiters
        while waiters and waiters[0][0] <= target:
            _, waiter = waiters.popleft()
            if waiter.done():  # its caller was cancelled
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)
