"""The agent's journal: one append-only log for the replay cache and the outbox.

Every state change the agent must not forget is a *record* appended to the journal: nonces
accepted together (``N``: one instruction's, or all of a batch's, which are then recovered all or
none, like the batch), a result stored (``R``), a result acknowledged or dropped (``A``).  Appending
only queues the record in memory; a **commit round** (:mod:`vantage.agent.commit`) writes every
queued record with one ``write`` and makes them durable with **one** ``fsync``, however many
there are, in a worker thread.  The agent acts on an instruction only once its nonce is durable
and sends a result only once it is durable (docs/agent.md, "Durability").  Results are read back
from memory (:class:`vantage.agent.outbox.Outbox`), never from the journal, which is read only
at start.

Files: ``<state dir>/journal/<generation>.log`` (20 decimal digits, mode 0600).  Each starts
with the line ``vantage-journal v1``; then one record per line::

    <crc32 of the rest, 8 hex digits> N <nonce> <expires_at> [<nonce> <expires_at> ...]
    <crc32> R <the result, one line of JSON with a string "id">
    <crc32> A <the result id, a JSON string>

One process at a time writes a state directory: :class:`Journal` holds an exclusive lock on
``journal/lock`` (``flock``) for its lifetime, so that a second agent started on the same
directory by mistake fails at start instead of reopening the replay window of the first (the
kernel releases the lock when the process dies, however it dies).  :func:`read_journal` reads
the files without writing anything, for inspection.

Recovery (:meth:`Journal.recover`) reads the files in generation order and replays the records:
the latest ``R`` of an id wins, an ``A`` removes it, a nonce is kept until its latest
``expires_at``.  A last line without its newline (a write torn by a crash or a power loss) and a
line whose checksum does not match are skipped with a warning; they never stop the agent.

Bound: when the files hold more than :data:`COMPACT_FACTOR` times the live data (and at least
``compact_min_bytes``), a round **compacts**: it starts a new generation with a snapshot of the
live records (unexpired nonces, unacknowledged results) followed by the round's own records,
flushes it, then removes the older generations.  Every start compacts too, which also drops a
torn tail and imports the per-file outbox and the replay-cache file of earlier versions.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vantage._fs import fsync_directory
from vantage.protocol.replay import check_nonce

log = logging.getLogger(__name__)

HEADER = b"vantage-journal v1\n"
DIRECTORY = "journal"
SUFFIX = ".log"
LOCK_FILE = "lock"
FILE_MODE = 0o600
#: compaction starts when the files hold this many times the live data...
COMPACT_FACTOR = 4
#: ...and at least this many bytes
COMPACT_MIN_BYTES = 16 * 1024 * 1024
#: the bytes a nonce takes in a record, for the live-data estimate
NONCE_RECORD_BYTES = 45
#: nonces per record in a compaction's snapshot (one checksum and one format per record)
SNAPSHOT_NONCES_PER_RECORD = 4096
#: earlier versions: one JSON file per result in ``outbox/``, nonces in ``replay_cache``
LEGACY_OUTBOX = "outbox"
LEGACY_REPLAY = "replay_cache"
_LEGACY_REPLAY_HEADER = "vantage-replay v1"
_WRITE_CHUNK = 1024 * 1024


def _record(body: bytes) -> bytes:
    return b"%08x %b\n" % (zlib.crc32(body), body)


def nonce_record(entries: Iterable[tuple[str, float]]) -> bytes:
    """The record of nonces accepted together, ``[(nonce, expires_at), ...]`` (at least one)."""
    body = " ".join(f"{nonce} {expires_at}" for nonce, expires_at in entries)
    if not body:
        raise ValueError("a nonce record needs at least one nonce")
    return _record(b"N " + body.encode("ascii"))


def result_record(data: bytes) -> bytes:
    """The record of a stored result (``data``: its JSON, one line)."""
    return _record(b"R " + data)


def ack_record(result_id: str) -> bytes:
    """The record of a result acknowledged by the control plane, or dropped."""
    return _record(b"A " + json.dumps(result_id).encode("utf-8"))


@dataclass
class Recovered:
    """What :meth:`Journal.recover` found: the state to start from."""

    #: nonce -> expires_at (expired ones included: the caller prunes by its clock)
    nonces: dict[str, float] = field(default_factory=dict)
    #: result id -> result JSON, oldest first
    results: dict[str, bytes] = field(default_factory=dict)
    #: lines skipped: torn tails and checksum or format errors
    skipped: int = 0


@dataclass
class Snapshot:
    """The live state a compaction writes first (copies taken on the event loop)."""

    nonces: list[tuple[str, float]]
    results: list[bytes]

    def records(self) -> Iterator[bytes]:
        for start in range(0, len(self.nonces), SNAPSHOT_NONCES_PER_RECORD):
            yield nonce_record(self.nonces[start : start + SNAPSHOT_NONCES_PER_RECORD])
        for data in self.results:
            yield result_record(data)


class JournalBusy(OSError):
    """Another process holds the journal of this state directory."""


def read_journal(state_dir: Path) -> Recovered:
    """The state the journal of ``state_dir`` holds (this version's files, then older formats).

    Reads only; a running agent may hold the journal meanwhile (a record it is writing then
    counts as torn).
    """
    state = Recovered()
    _read_legacy(state_dir, state)
    for path in _segment_paths(state_dir / DIRECTORY):
        _read_segment(path, state)
    return state


class Journal:
    """The journal files of one state directory, held by this process until :meth:`close`.

    Records are appended on the event loop (:meth:`append`); :meth:`take` hands a round its
    records and :meth:`write` (blocking: a worker thread) makes them durable.  Rounds never
    overlap (:class:`vantage.agent.commit.GroupCommit` sees to it).
    """

    def __init__(self, state_dir: Path, *, compact_min_bytes: int = COMPACT_MIN_BYTES) -> None:
        self.state_dir = state_dir
        self.directory = state_dir / DIRECTORY
        self.compact_min_bytes = compact_min_bytes
        #: records appended so far, and how many of them are durable (sequence numbers)
        self.appended = 0
        self.durable = 0
        #: bytes in the journal files
        self.disk_bytes = 0
        self._pending: list[bytes] = []
        self._segments: list[Path] = []
        self._generation = 0
        self._fd: int | None = None
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise JournalBusy(
                f"{self.directory} is in use by another agent process (one agent per state directory)"
            ) from None
        self._generation = max((_generation_of(p) for p in _segment_paths(self.directory)), default=0)

    # ------------------------------------------------------------------ start

    def recover(self) -> Recovered:
        """Read the state left by earlier runs (this version's files, then older formats)."""
        state = read_journal(self.state_dir)
        if state.skipped:
            log.warning("journal: skipped %d torn or corrupt record(s)", state.skipped)
        return state

    def start(self, snapshot: Snapshot) -> None:
        """Write ``snapshot`` as a new generation, durable, then remove every older file.

        Blocking; called once at start, before anything else is appended.
        """
        self._segments = _segment_paths(self.directory)
        self.write([], snapshot)
        legacy_outbox = self.state_dir / LEGACY_OUTBOX
        legacy = [self.state_dir / LEGACY_REPLAY, *sorted(legacy_outbox.glob("*"))]
        for path in legacy:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        with contextlib.suppress(FileNotFoundError, OSError):
            legacy_outbox.rmdir()
        fsync_directory(self.state_dir)

    # ------------------------------------------------------------------ event-loop side

    def append(self, record: bytes) -> int:
        """Queue ``record`` for the next round; return its sequence number."""
        self._pending.append(record)
        self.appended += 1
        return self.appended

    def append_nonces(self, entries: Sequence[tuple[str, float]]) -> None:
        """Queue the record of nonces accepted together (the replay cache's sink)."""
        self.append(nonce_record(entries))

    @property
    def pending(self) -> int:
        """Records queued and not yet handed to a round."""
        return len(self._pending)

    def take(self) -> tuple[list[bytes], int]:
        """The queued records and the sequence number they end at (the round's target)."""
        records, self._pending = self._pending, []
        return records, self.appended

    def requeue(self, records: list[bytes]) -> None:
        """Put back the records of a failed round, ahead of newer ones."""
        self._pending[:0] = records

    def wants_compaction(self, live_bytes: int) -> bool:
        """Whether the files hold so much dead data that the next round should compact."""
        return self.disk_bytes > max(self.compact_min_bytes, COMPACT_FACTOR * live_bytes)

    # ------------------------------------------------------------------ worker-thread side

    def write(self, records: Sequence[bytes], snapshot: Snapshot | None = None) -> None:
        """Append ``records`` and ``fsync`` once; OSError if they may not be durable.

        With a ``snapshot`` (or after a failed round) the records go to a new generation
        instead, created, written and flushed whole (with its directory) before older
        generations are removed (only after a snapshot).
        """
        if snapshot is None and self._fd is not None:
            try:
                self.disk_bytes += _write_all(self._fd, records)
                os.fsync(self._fd)
            except OSError:
                # The file may end in a torn record: later records go to a new generation.
                self._close()
                raise
            return
        self._new_generation(records, snapshot)

    def close(self) -> None:
        """Close the current file and let go of the directory (the journal is done with)."""
        self._close()
        if self._lock >= 0:
            os.close(self._lock)  # releases the flock
            self._lock = -1

    # ------------------------------------------------------------------ internals

    def _new_generation(self, records: Sequence[bytes], snapshot: Snapshot | None) -> None:
        self._generation += 1
        path = self.directory / f"{self._generation:020d}{SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
        try:
            size = _write_all(fd, [HEADER])
            if snapshot is not None:
                size += _write_all(fd, snapshot.records())
            size += _write_all(fd, records)
            os.fsync(fd)
            fsync_directory(self.directory)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        self._close()
        self._fd = fd
        if snapshot is None:
            self._segments.append(path)
            self.disk_bytes += size
            return
        old, self._segments = self._segments, [path]
        self.disk_bytes = size
        for stale in old:
            # Not flushed: an old generation that reappears after a power loss only repeats
            # records the new one supersedes (ids deduplicated, nonces kept to their expiry).
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _segment_paths(directory: Path) -> list[Path]:
    paths = [p for p in directory.glob(f"*{SUFFIX}") if p.stem.isdigit()]
    return sorted(paths, key=_generation_of)


def _read_segment(path: Path, state: Recovered) -> None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        log.warning("journal: cannot read %s: %s", path.name, exc)
        return
    if not data.startswith(HEADER):
        log.warning("journal: %s is not a journal file; ignored", path.name)
        return
    lines = data[len(HEADER) :].split(b"\n")
    if lines[-1]:
        state.skipped += 1  # a torn last record
    for line in lines[:-1]:
        if not _apply(line, state):
            state.skipped += 1


def _read_legacy(state_dir: Path, state: Recovered) -> None:
    """Nonces and results stored by earlier versions (imported, then removed by :meth:`Journal.start`)."""
    with contextlib.suppress(FileNotFoundError):
        text = (state_dir / LEGACY_REPLAY).read_text(encoding="utf-8", errors="replace")
        lines = text.splitlines()
        if lines and lines[0] == _LEGACY_REPLAY_HEADER:
            for line in lines[1:]:
                _apply_nonce(line.encode("utf-8", "replace").split(b" "), state)
    for path in sorted((state_dir / LEGACY_OUTBOX).glob("*.json")):
        try:
            record = json.loads(path.read_bytes())
            result = record["result"]
            if not isinstance(result, dict) or not isinstance(result.get("id"), str):
                raise TypeError("bad record")
        except (OSError, ValueError, KeyError, TypeError):
            state.skipped += 1
            continue
        state.results.pop(result["id"], None)
        state.results[result["id"]] = json.dumps(result, separators=(",", ":")).encode("utf-8")


def _apply(line: bytes, state: Recovered) -> bool:
    """Replay one record line into ``state``; False when it is corrupt."""
    if len(line) < 11 or line[8:9] != b" ":
        return False
    try:
        if int(line[:8], 16) != zlib.crc32(line[9:]):
            return False
    except ValueError:
        return False
    kind, body = line[9:10], line[11:]
    if kind == b"N":
        return _apply_nonce(body.split(b" "), state)
    try:
        if kind == b"R":
            result = json.loads(body)
            if not isinstance(result, dict) or not isinstance(result.get("id"), str):
                return False
            if state.results.get(result["id"]) != body:  # a repeat (a compaction's copy) keeps its place
                state.results.pop(result["id"], None)
                state.results[result["id"]] = body
            return True
        if kind == b"A":
            result_id = json.loads(body)
            if not isinstance(result_id, str):
                return False
            state.results.pop(result_id, None)
            return True
    except ValueError:
        return False
    return False


def _apply_nonce(parts: list[bytes], state: Recovered) -> bool:
    """``[nonce, expires_at, nonce, expires_at, ...]``: all of them, or none if one is bad."""
    if not parts or len(parts) % 2:
        return False
    entries = []
    try:
        for index in range(0, len(parts), 2):
            nonce, expires_at = parts[index].decode("ascii"), float(parts[index + 1])
            if not math.isfinite(expires_at):
                return False
            check_nonce(nonce)
            entries.append((nonce, expires_at))
    except ValueError:
        return False
    for nonce, expires_at in entries:
        if expires_at > state.nonces.get(nonce, -math.inf):
            state.nonces[nonce] = expires_at
    return True


def _write_all(fd: int, chunks: Iterable[bytes]) -> int:
    """Write every chunk (joined into writes of about 1 MiB); return the bytes written."""
    total = 0
    buffer: list[bytes] = []
    size = 0
    for chunk in chunks:
        buffer.append(chunk)
        size += len(chunk)
        if size >= _WRITE_CHUNK:
            total += _write(fd, b"".join(buffer))
            buffer, size = [], 0
    if buffer:
        total += _write(fd, b"".join(buffer))
    return total


def _write(fd: int, data: bytes) -> int:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    return len(data)


def _generation_of(path: Path) -> int:
    return int(path.stem)
