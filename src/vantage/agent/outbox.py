"""The persistent, bounded outbox of results waiting for the control plane's acknowledgement.

Each result is one small JSON file in ``<state dir>/outbox/`` (``<sequence>-<id>.json``, holding
``{"id", "result"}``), made durable before the agent sends it and removed only after the control
plane acknowledges its ``id``.  A dropped connection, a control-plane restart or an agent
crash-restart therefore loses nothing: unacknowledged results are sent again on the next session
(the control plane deduplicates by ``id``).

Writes are **group-committed**: :meth:`Outbox.add` only records a result in memory; a commit
round (:meth:`Outbox.begin_commit` on the event loop, :func:`write_batch` in a worker thread,
:meth:`Outbox.end_commit` back on the loop) writes every result added since the previous round
(temporary file, ``fsync``, rename), then ``fsync``s the directory once. Only results marked
durable by a finished round are offered for sending (:meth:`Outbox.ready`).  Files of
acknowledged or dropped results are unlinked by the next round, without a flush: an unlink lost
in a crash only means a result the control plane has already stored is sent again, and it is
deduplicated.  :meth:`Outbox.flush` runs a whole round synchronously (start-up, tests).

The outbox is bounded by a number of results and a number of bytes; when full, the oldest
results are dropped and the drop is logged with a count.  Only an index (id, file name, size)
is kept in memory once a result is durable; result bodies are read back from disk when sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vantage._fs import fsync_directory, is_temporary

log = logging.getLogger(__name__)
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(eq=False)
class _Entry:
    filename: str
    size: int
    #: the serialised record while it is not yet on disk; None once durable
    data: bytes | None = None


@dataclass
class Batch:
    """One commit round's work: records to write and files to remove."""

    writes: list[tuple[str, _Entry, bytes]] = field(default_factory=list)
    unlinks: list[str] = field(default_factory=list)


def write_batch(directory: Path, batch: Batch) -> None:
    """Do a round's file work (blocking: run it in a worker thread); OSError if it failed.

    Every record goes to a temporary file that is flushed and then renamed into place; one
    directory flush makes the renames durable.  Unlinks come last and are not flushed.
    """
    renames: list[tuple[Path, Path]] = []
    try:
        for _, entry, data in batch.writes:
            tmp = directory / f".{entry.filename}.{secrets.token_hex(4)}.tmp"
            renames.append((tmp, directory / entry.filename))
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        for tmp, final in renames:
            os.replace(tmp, final)
    except BaseException:
        for tmp, _ in renames:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    if batch.writes:
        fsync_directory(directory)
    for filename in batch.unlinks:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(directory / filename)


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
        self._unlinks: list[str] = []
        #: Set when results become durable or are acknowledged; the session's sender waits on it.
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
            entry = _Entry(path.name, path.stat().st_size)  # durable: data None
            self._entries[result_id] = entry
            self._bytes += entry.size
            self._last_seq = max(self._last_seq, _seq_of(path.name))
        if self._entries:
            log.info("outbox: %d undelivered result(s) from a previous run", len(self._entries))
        self._enforce_bounds()
        self.flush()  # files of duplicate ids and of results dropped by the bounds

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
        """Record ``result`` (it must carry a string ``id``); drop the oldest if full.

        The result becomes durable, and is offered for sending, with the next commit round.
        """
        result_id = result.get("id")
        if not isinstance(result_id, str) or not result_id:
            raise ValueError("a result needs a string id")
        data = json.dumps({"id": result_id, "result": result}, separators=(",", ":")).encode()
        self._forget(result_id)
        self._entries[result_id] = _Entry(self._filename(result_id), len(data), data)
        self._bytes += len(data)
        self._enforce_bounds()

    def ack(self, result_id: str) -> bool:
        """Remove an acknowledged result; False when it was not (or no longer) here.

        Its file is unlinked by the next commit round.
        """
        if result_id not in self._entries:
            return False
        self._forget(result_id)
        self.changed.set()
        return True

    def ids(self) -> list[str]:
        """The ids of stored results (durable or not yet), oldest first."""
        return list(self._entries)

    def ready(self) -> Iterator[str]:
        """The ids of durable results, oldest first: those that may be sent.

        A generator over the live index: consume it without awaiting in between.
        """
        return (result_id for result_id, entry in self._entries.items() if entry.data is None)

    def get(self, result_id: str) -> dict[str, Any] | None:
        """Read one stored result back; None if it is gone (acknowledged or dropped)."""
        entry = self._entries.get(result_id)
        if entry is None:
            return None
        try:
            data = entry.data if entry.data is not None else (self.directory / entry.filename).read_bytes()
            record = json.loads(data)
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

    # ------------------------------------------------------------------ commit rounds

    def begin_commit(self) -> Batch:
        """Take the work of one commit round: results not yet durable, files to remove."""
        batch = Batch(
            writes=[(rid, e, e.data) for rid, e in self._entries.items() if e.data is not None],
            unlinks=self._unlinks,
        )
        self._unlinks = []
        return batch

    def end_commit(self, batch: Batch, *, ok: bool) -> None:
        """Record the outcome of :func:`write_batch` for ``batch``.

        On success its results become durable (and :attr:`changed` wakes the sender); a result
        acknowledged or dropped meanwhile has its fresh file removed by the next round.  On
        failure the results stay pending for the next round, and the unlinks are retried.
        """
        if not ok:
            self._unlinks.extend(batch.unlinks)
            return
        for result_id, entry, _ in batch.writes:
            if self._entries.get(result_id) is entry:
                entry.data = None
            else:
                self._unlinks.append(entry.filename)
        if batch.writes:
            self.changed.set()

    def flush(self) -> None:
        """One whole commit round, synchronously (blocks: start-up, shutdown, tests)."""
        batch = self.begin_commit()
        try:
            write_batch(self.directory, batch)
        except OSError:
            self.end_commit(batch, ok=False)
            raise
        self.end_commit(batch, ok=True)

    # ------------------------------------------------------------------ internals

    def _forget(self, result_id: str) -> None:
        entry = self._entries.pop(result_id, None)
        if entry is None:
            return
        self._bytes -= entry.size
        if entry.data is None:  # on disk (or being written: end_commit sees that it is gone)
            self._unlinks.append(entry.filename)

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
