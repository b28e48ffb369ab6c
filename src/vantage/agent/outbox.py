"""The persistent, bounded outbox of results waiting for the control plane's acknowledgement.

Each result is one small JSON file in ``<state dir>/outbox/``, written atomically before the
agent tries to send it and removed only when the control plane acknowledges its ``id``.  A
dropped connection, a control-plane restart or an agent restart therefore loses nothing: unacked
results are sent again on the next session (the control plane deduplicates by ``id``).

The outbox is bounded by a number of results and a number of bytes; when full, the oldest
results are dropped and the drop is logged with a count.  Only an index (id, file name, size)
is kept in memory; result bodies are read back from disk when they are sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vantage.agent.files import is_temporary, sync_directory, write_atomic

log = logging.getLogger(__name__)
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class _Entry:
    filename: str
    size: int


class Outbox:
    """Results not yet acknowledged, oldest first, persisted one file per result."""

    def __init__(self, directory: Path, *, max_results: int = 10_000, max_bytes: int = 50 * 1024**2):
        self.directory = directory
        self.max_results = max_results
        self.max_bytes = max_bytes
        self.dropped_total = 0
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._last_seq = 0
        #: Set whenever a result is added or acknowledged; the session's sender waits on it.
        self.changed = asyncio.Event()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._load()

    # ------------------------------------------------------------------ state on disk

    def _load(self) -> None:
        """Index the results a previous run left behind; discard debris."""
        for path in sorted(self.directory.iterdir()):
            if is_temporary(path):
                path.unlink(missing_ok=True)
                continue
            if path.suffix != ".json":
                continue
            try:
                record = json.loads(path.read_bytes())
                result_id = record["id"]
                if not isinstance(result_id, str) or not isinstance(record.get("result"), dict):
                    raise TypeError("bad record")
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("outbox: discarding unreadable file %s", path.name)
                path.unlink(missing_ok=True)
                continue
            self._forget(result_id)
            entry = _Entry(path.name, path.stat().st_size)
            self._entries[result_id] = entry
            self._bytes += entry.size
            self._last_seq = max(self._last_seq, _seq_of(path.name))
        if self._entries:
            log.info("outbox: %d undelivered result(s) from a previous run", len(self._entries))
        self._enforce_bounds()

    def _filename(self, result_id: str) -> str:
        # Names sort in insertion order across restarts: a strictly increasing nanosecond stamp.
        self._last_seq = max(self._last_seq + 1, time.time_ns())
        tag = result_id if _SAFE_ID.match(result_id) else hashlib.sha256(result_id.encode()).hexdigest()[:32]
        return f"{self._last_seq:020d}-{tag}.json"

    # ------------------------------------------------------------------ API

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, result_id: object) -> bool:
        return result_id in self._entries

    @property
    def size_bytes(self) -> int:
        """Bytes the stored results occupy."""
        return self._bytes

    def add(self, result: dict[str, Any]) -> None:
        """Store ``result`` (it must carry a string ``id``) durably; drop the oldest if full."""
        result_id = result.get("id")
        if not isinstance(result_id, str) or not result_id:
            raise ValueError("a result needs a string id")
        data = json.dumps({"id": result_id, "result": result}, separators=(",", ":")).encode()
        filename = self._filename(result_id)
        write_atomic(self.directory / filename, data)
        self._forget(result_id)
        self._entries[result_id] = _Entry(filename, len(data))
        self._bytes += len(data)
        self._enforce_bounds()
        self.changed.set()

    def ack(self, result_id: str) -> bool:
        """Remove an acknowledged result; False when it was not (or no longer) here."""
        if result_id not in self._entries:
            return False
        self._forget(result_id)
        self.changed.set()
        return True

    def ids(self) -> list[str]:
        """The ids of stored results, oldest first."""
        return list(self._entries)

    def get(self, result_id: str) -> dict[str, Any] | None:
        """Read one stored result back; None if it is gone (acknowledged or dropped)."""
        entry = self._entries.get(result_id)
        if entry is None:
            return None
        try:
            record = json.loads((self.directory / entry.filename).read_bytes())
        except (OSError, ValueError):
            log.warning("outbox: result %s became unreadable; dropping it", result_id)
            self._forget(result_id)
            return None
        result: dict[str, Any] = record["result"]
        return result

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(id, result)`` for every stored result, oldest first."""
        for result_id in self.ids():
            result = self.get(result_id)
            if result is not None:
                yield result_id, result

    # ------------------------------------------------------------------ internals

    def _forget(self, result_id: str) -> None:
        entry = self._entries.pop(result_id, None)
        if entry is None:
            return
        self._bytes -= entry.size
        try:
            os.unlink(self.directory / entry.filename)
        except FileNotFoundError:
            pass

    def _enforce_bounds(self) -> None:
        # The newest result is last and is never dropped, even if it alone exceeds the bound.
        dropped = 0
        while len(self._entries) > 1 and (
            len(self._entries) > self.max_results or self._bytes > self.max_bytes
        ):
            self._forget(next(iter(self._entries)))
            dropped += 1
        if dropped:
            self.dropped_total += dropped
            sync_directory(self.directory)
            log.warning(
                "outbox full (%d results / %d bytes max): dropped %d oldest undelivered "
                "result(s), %d since start",
                self.max_results,
                self.max_bytes,
                dropped,
                self.dropped_total,
            )


def _seq_of(filename: str) -> int:
    head = filename.split("-", 1)[0]
    return int(head) if head.isdigit() else 0
