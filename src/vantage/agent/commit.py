"""Group commit: one round of flushes in a worker thread makes many results and nonces durable.

The agent must not act on an instruction before its nonce is durable (replay protection across
a restart) and must not send a result before it is durable in the outbox (no result lost to a
crash).  Flushing each of them on the event loop costs one or two synchronous ``fsync`` calls
per check; instead, callers ask :class:`GroupCommit` and wait.  A round takes everything
recorded so far, flushes the replay cache and writes the outbox batch in a worker thread
(:func:`asyncio.to_thread`, so the loop keeps running checks and reading frames), then wakes
every caller that was waiting for it.  Requests made while a round runs are served by the next
round, so under load each round covers many checks and the flush rate stays bounded by the
disk's latency, not by the check rate.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from vantage.agent.outbox import Batch, Outbox, write_batch

if TYPE_CHECKING:
    from vantage.protocol import ReplayCache

log = logging.getLogger(__name__)

#: A round's outcome: the replay cache's error and the outbox's error (None: durable).
_Outcome = tuple[OSError | None, OSError | None]


class GroupCommit:
    """Batches the durability of ``outbox`` and ``replay``; one round at a time."""

    def __init__(self, outbox: Outbox, replay: ReplayCache | None) -> None:
        self.outbox = outbox
        self.replay = replay
        self._waiters: list[asyncio.Future[_Outcome]] = []
        self._task: asyncio.Task[None] | None = None
        self._requested = False  # work was added since the running round took its batch
        #: rounds completed (for tests and logs)
        self.rounds = 0

    async def nonces(self) -> None:
        """Return once every nonce recorded before the call is durable; OSError if it cannot be."""
        replay_error, _ = await self._wait()
        if replay_error is not None:
            raise replay_error

    async def results(self) -> None:
        """Return once every result added to the outbox before the call is durable; OSError if not."""
        _, outbox_error = await self._wait()
        if outbox_error is not None:
            raise outbox_error

    def request(self) -> None:
        """Ask for a round without waiting (e.g. to remove acknowledged files soon)."""
        self._requested = True
        self._start()

    async def close(self) -> None:
        """Wait for the running round, then do a last one on the loop (the agent is stopping)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            if self.replay is not None:
                self.replay.sync()
            self.outbox.flush()
        except OSError as exc:
            log.warning("last commit round failed: %s", exc)

    # ------------------------------------------------------------------ internals

    async def _wait(self) -> _Outcome:
        waiter: asyncio.Future[_Outcome] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._start()
        return await waiter

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="group-commit")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(0)  # let the requests of this loop iteration join the round
            waiters, self._waiters = self._waiters, []
            self._requested = False
            batch = self.outbox.begin_commit()
            try:
                replay_error, outbox_error = await asyncio.to_thread(self._flush, batch)
            except BaseException as exc:  # a bug or a cancellation: nobody may wait forever
                self.outbox.end_commit(batch, ok=False)
                for waiter in waiters + self._waiters:
                    if not waiter.done():
                        waiter.set_exception(RuntimeError(f"commit round failed: {exc!r}"))
                self._waiters = []
                raise
            self.outbox.end_commit(batch, ok=outbox_error is None)
            self.rounds += 1
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result((replay_error, outbox_error))
            if not self._waiters and not self._requested:
                return

    def _flush(self, batch: Batch) -> _Outcome:
        """The blocking part of a round (worker thread): both flushes, errors returned."""
        replay_error: OSError | None = None
        outbox_error: OSError | None = None
        if self.replay is not None:
            try:
                self.replay.sync()
            except OSError as exc:
                replay_error = exc
        try:
            write_batch(self.outbox.directory, batch)
        except OSError as exc:
            outbox_error = exc
        return replay_error, outbox_error
