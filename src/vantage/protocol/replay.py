"""A persistent, bounded cache of instruction nonces already accepted (replay protection).

Storage: an append-only text file (mode 0600) in the agent's state directory::

    vantage-replay v1
    <nonce> <expires_at>
    ...

Every accepted nonce costs one small ``write`` (no rewrite of the file), so hundreds per
second are cheap. When the file holds more than twice as many lines as there are live
entries (and at least :data:`COMPACT_MIN_LINES`), it is compacted: the live entries are
written to a temporary file that atomically replaces it. The file therefore stays below about
``2 * max_entries`` lines.

Durability: the append (one ``write`` to the kernel) happens before
:meth:`ReplayCache.check_and_add` returns, so a process or container crash-restart never
forgets a nonce. A host power loss can still lose appends the kernel had not written back;
:meth:`ReplayCache.sync` makes every append so far durable (``fsync``) and may run in a worker
thread, so a caller can group-commit many nonces with one flush and act on an instruction only
once its nonce is durable (the agent does: docs/agent.md). ``fsync=True`` instead flushes every
append synchronously, at the cost of one disk flush per instruction.

Bound: at most ``max_entries`` unexpired nonces (default 100 000: over 300 instructions per
second for the whole 330-second window of the default lifetime cap and skew). When the cache
is full the new nonce is **refused** (``replay_cache_full``) instead of an unexpired nonce
being forgotten, which would reopen a replay window. A corrupt line (only possible through
outside tampering or a torn write) is skipped with a warning.

One :class:`ReplayCache` per file at a time: a second live instance on the same path (in this
or another process) would not see the first one's later appends.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import IO, Self

from vantage._fs import atomic_write
from vantage.protocol.errors import VerificationError

log = logging.getLogger(__name__)

HEADER = "vantage-replay v1"
DEFAULT_MAX_ENTRIES = 100_000
COMPACT_MIN_LINES = 4096
MAX_NONCE_LENGTH = 128
FILE_MODE = 0o600


class ReplayCache:
    """Nonces seen, each kept until its ``expires_at`` has passed.

    ``path=None`` keeps the cache in memory only (tests, or a verifier without state).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        fsync: bool = False,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self.path = None if path is None else Path(path)
        self.max_entries = max_entries
        self._fsync = fsync
        self._entries: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        self._lines = 0
        self._appended = 0  # appends so far, and how many of them are known to be durable
        self._synced = 0
        self._torn = False  # a failed append may have left half a line: start the next on a new one
        if self.path is not None:
            self._load(self.path)

    # -- public ------------------------------------------------------------------------

    def check_and_add(self, nonce: str, expires_at: float, now: float | None = None) -> None:
        """Record ``nonce`` until ``expires_at``; raise ``VerificationError("replayed")`` if seen.

        Also ``replay_cache_full`` when ``max_entries`` unexpired nonces are held, and
        ``replay_cache_error`` when the nonce cannot be persisted; in every failure case the
        nonce must not be acted upon.
        """
        _check_nonce(nonce)
        if not math.isfinite(expires_at):
            raise ValueError("expires_at must be a finite number")
        now = time.time() if now is None else now
        with self._lock:
            self._prune(now)
            if nonce in self._entries:
                raise VerificationError("replayed", f"nonce {nonce} was already used")
            if len(self._entries) >= self.max_entries:
                raise VerificationError(
                    "replay_cache_full",
                    f"{len(self._entries)} unexpired nonces held; refusing new instructions",
                )
            if self.path is not None:
                try:
                    self._append(f"{nonce} {_format_time(expires_at)}\n")
                except OSError as exc:
                    raise VerificationError("replay_cache_error", f"cannot persist nonce: {exc}") from None
            self._entries[nonce] = expires_at
            heapq.heappush(self._heap, (expires_at, nonce))
            self._maybe_compact()

    def __contains__(self, nonce: object) -> bool:
        with self._lock:
            return nonce in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def prune(self, now: float | None = None) -> int:
        """Forget nonces whose ``expires_at`` is before ``now``; return how many were dropped."""
        with self._lock:
            return self._prune(time.time() if now is None else now)

    def compact(self) -> None:
        """Rewrite the file with only the live entries (atomic replace)."""
        with self._lock:
            self._compact()

    def sync(self) -> None:
        """Make every nonce recorded so far durable (``fsync``); a no-op when nothing is new.

        Thread-safe and meant for a worker thread: the lock is held only to duplicate the file
        descriptor, so :meth:`check_and_add` is not blocked during the flush. A compaction in
        between is harmless: the compacted file was written and flushed whole.
        """
        with self._lock:
            target = self._appended
            if self.path is None or self._file is None or self._synced >= target:
                return
            fd = os.dup(self._file.fileno())
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        with self._lock:
            self._synced = max(self._synced, target)

    def close(self) -> None:
        """Close the state file; the cache must not be used afterwards."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        file = getattr(self, "_file", None)
        if file is not None:
            file.close()

    # -- internals ---------------------------------------------------------------------

    def _prune(self, now: float) -> int:
        dropped = 0
        while self._heap and self._heap[0][0] < now:
            expires_at, nonce = heapq.heappop(self._heap)
            if self._entries.get(nonce) == expires_at:
                del self._entries[nonce]
                dropped += 1
        return dropped

    def _load(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            text = ""
        lines = text.splitlines()
        if lines and lines[0] != HEADER:
            raise ValueError(f"{path}: not a Vantage replay cache (first line {lines[0][:40]!r})")
        skipped = 0
        for line in lines[1:]:
            parts = line.split(" ")
            try:
                nonce, expires_at = parts[0], float(parts[1])
                if len(parts) != 2 or not math.isfinite(expires_at):
                    raise ValueError(line)
                _check_nonce(nonce)
            except (ValueError, IndexError):
                skipped += 1
                continue
            # Expired entries are pruned lazily, by the caller's clock (see check_and_add).
            if expires_at > self._entries.get(nonce, -math.inf):
                self._entries[nonce] = expires_at
        if skipped:
            log.warning("%s: skipped %d corrupt replay-cache line(s)", path, skipped)
        self._heap = [(expires_at, nonce) for nonce, expires_at in self._entries.items()]
        heapq.heapify(self._heap)
        # Start from a clean file: drops expired and corrupt lines, and a torn last line.
        self._compact()

    def _open(self) -> IO[bytes]:
        assert self.path is not None
        if self._file is None:
            self._file = open(  # noqa: SIM115 - kept open for appends, closed by close()
                self.path, "ab", buffering=0, opener=lambda p, flags: os.open(p, flags, FILE_MODE)
            )
        return self._file

    def _append(self, line: str) -> None:
        file = self._open()
        if self._torn:
            line = "\n" + line
        self._torn = True
        data = memoryview(line.encode("ascii"))
        while data:
            written = file.write(data)
            data = data[written or 0 :]
        self._torn = False
        self._appended += 1
        if self._fsync:
            os.fsync(file.fileno())
            self._synced = self._appended
        self._lines += 1

    def _maybe_compact(self) -> None:
        if self.path is not None and self._lines > max(COMPACT_MIN_LINES, 2 * len(self._entries)):
            try:
                self._compact()
            except OSError as exc:  # the append-only file is still valid; try again later
                log.warning("%s: replay-cache compaction failed: %s", self.path, exc)

    def _compact(self) -> None:
        if self.path is None:
            return
        body = "".join(
            f"{n} {_format_time(t)}\n" for n, t in sorted(self._entries.items(), key=lambda e: e[1])
        )
        if self._file is not None:
            self._file.close()
            self._file = None
        atomic_write(self.path, f"{HEADER}\n{body}".encode("ascii"), mode=FILE_MODE, overwrite=True)
        self._lines = len(self._entries)
        self._synced = self._appended  # the new file was flushed whole
        self._torn = False


def _check_nonce(nonce: str) -> None:
    if not isinstance(nonce, str) or not nonce or len(nonce) > MAX_NONCE_LENGTH or not nonce.isascii():
        raise ValueError("nonce must be a non-empty ASCII string of at most 128 characters")
    if any(c.isspace() for c in nonce) or not nonce.isprintable():
        raise ValueError("nonce must not contain whitespace or control characters")


def _format_time(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
