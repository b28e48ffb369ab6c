"""The bounded outbox of results waiting for the control plane's acknowledgement.

A result is kept in memory as the JSON text the agent sends (serialised once, by the runner)
and recorded in the journal (:mod:`vantage.agent.journal`).  It is offered for sending
(:meth:`Outbox.ready`) only once a commit round made its record durable, and it leaves the
outbox only on the control plane's ``ack`` (an ``A`` record, written with the next round).  A
dropped connection, a control-plane restart or an agent crash-restart therefore loses nothing:
unacknowledged results are sent again on the next session (the control plane deduplicates by
``id``).

The outbox is bounded by a number of results and a number of bytes (which also bounds its
memory); when full, the oldest results are dropped, the drop is recorded in the journal and
logged with a count.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from vantage.agent.journal import Journal, ack_record, result_record

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class _Entry:
    data: bytes
    #: the journal sequence number of its record: durable once ``journal.durable >= seq``
    seq: int


class Outbox:
    """Results not yet acknowledged, oldest first."""

    def __init__(
        self,
        journal: Journal,
        *,
        max_results: int = 10_000,
        max_bytes: int = 50 * 1024**2,
        recovered: dict[str, bytes] | None = None,
    ) -> None:
        self.journal = journal
        self.max_results = max_results
        self.max_bytes = max_bytes
        self.dropped_total = 0
        self._entries: dict[str, _Entry] = {}
        self._bytes = 0
        #: Set when results become durable or are acknowledged; the session's sender waits on it.
        self.changed = asyncio.Event()
        for result_id, data in (recovered or {}).items():
            self._entries[result_id] = _Entry(data, 0)  # durable: it was read from the journal
            self._bytes += len(data)
        if self._entries:
            log.info("outbox: %d undelivered result(s) from a previous run", len(self._entries))
        self._enforce_bounds()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, result_id: object) -> bool:
        return result_id in self._entries

    @property
    def size_bytes(self) -> int:
        """Bytes the stored results occupy."""
        return self._bytes

    def add(self, result_id: str, data: bytes) -> None:
        """Store the result ``data`` (its JSON) under ``result_id``; drop the oldest if full.

        The result becomes durable, and is offered for sending, with the next commit round.
        The same id again replaces the stored result.
        """
        if not isinstance(result_id, str) or not result_id:
            raise ValueError("a result needs a string id")
        if b"\n" in data:
            raise ValueError("a result must be one line of JSON (it is one journal record)")
        self._remove(result_id)
        self._entries[result_id] = _Entry(data, self.journal.append(result_record(data)))
        self._bytes += len(data)
        self._enforce_bounds()

    def ack(self, result_id: str) -> bool:
        """Remove an acknowledged result; False when it was not (or no longer) here."""
        if not self._remove(result_id):
            return False
        self.journal.append(ack_record(result_id))
        self.changed.set()
        return True

    def ids(self) -> list[str]:
        """The ids of stored results (durable or not yet), oldest first."""
        return list(self._entries)

    def ready(self) -> Iterator[str]:
        """The ids of durable results, oldest first: those that may be sent.

        A generator over the live index: consume it without awaiting in between.
        """
        durable = self.journal.durable
        for result_id, entry in self._entries.items():
            if entry.seq > durable:  # later entries were added later still
                return
            yield result_id

    def get(self, result_id: str) -> bytes | None:
        """A stored result's JSON; None if it is gone (acknowledged or dropped)."""
        entry = self._entries.get(result_id)
        return None if entry is None else entry.data

    def snapshot(self) -> list[bytes]:
        """Every stored result's JSON, oldest first (for a journal compaction)."""
        return [entry.data for entry in self._entries.values()]

    # ------------------------------------------------------------------ internals

    def _remove(self, result_id: str) -> bool:
        entry = self._entries.pop(result_id, None)
        if entry is None:
            return False
        self._bytes -= len(entry.data)
        return True

    def _enforce_bounds(self) -> None:
        # The newest result is last and is never dropped, even if it alone exceeds the bound.
        dropped = 0
        while len(self._entries) > 1 and (
            len(self._entries) > self.max_results or self._bytes > self.max_bytes
        ):
            oldest = next(iter(self._entries))
            self._remove(oldest)
            self.journal.append(ack_record(oldest))
            dropped += 1
        if dropped:
            self.dropped_total += dropped
            log.warning(
                "outbox full (%d results / %d bytes max): dropped %d oldest undelivered "
                "result(s), %d since start",
                self.max_results,
                self.max_bytes,
                dropped,
                self.dropped_total,
            )
