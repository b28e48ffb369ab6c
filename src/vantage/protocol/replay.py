"""A bounded cache of instruction nonces already accepted (replay protection).

The cache itself lives in memory.  Persistence is its owner's business: a ``sink`` given to
the constructor is called with every group of nonces about to be accepted, before they are
(the agent's sink appends them to its journal, which makes them durable with one flush per
batch: docs/agent.md), and :meth:`ReplayCache.load` seeds the cache from what the owner
persisted.  A nonce is acted upon only once its owner made it durable, so a restart never
reopens the replay window of an instruction that was acted upon.

Nonces are accepted singly (:meth:`ReplayCache.check_and_add`) or as one atomic group
(:meth:`ReplayCache.check_and_add_many`, for a signed batch of instructions): either every nonce
of the group is new and all are recorded, or none is.

Bound: at most ``max_entries`` unexpired nonces (default 100 000: over 300 instructions per
second for the whole 330-second window of the default lifetime cap and skew).  When the cache
is full new nonces are **refused** (``replay_cache_full``) instead of an unexpired nonce being
forgotten, which would reopen a replay window.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from vantage.protocol.errors import VerificationError

DEFAULT_MAX_ENTRIES = 100_000
MAX_NONCE_LENGTH = 128

#: Called with ``[(nonce, expires_at), ...]`` before the nonces are accepted; an ``OSError``
#: refuses them all (``replay_cache_error``).
NonceSink = Callable[[Sequence[tuple[str, float]]], None]


class ReplayCache:
    """Nonces seen, each kept until its ``expires_at`` has passed."""

    def __init__(self, *, max_entries: int = DEFAULT_MAX_ENTRIES, sink: NonceSink | None = None) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self.max_entries = max_entries
        self.sink = sink
        self._entries: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    # -- public ------------------------------------------------------------------------

    def check_and_add(self, nonce: str, expires_at: float, now: float | None = None) -> None:
        """Record ``nonce`` until ``expires_at``; raise ``VerificationError("replayed")`` if seen.

        Also ``replay_cache_full`` when ``max_entries`` unexpired nonces are held, and
        ``replay_cache_error`` when the sink cannot take the nonce; in every failure case the
        nonce must not be acted upon.
        """
        self.check_and_add_many([(nonce, expires_at)], now)

    def check_and_add_many(self, entries: Sequence[tuple[str, float]], now: float | None = None) -> None:
        """Record every ``(nonce, expires_at)`` of ``entries``, or none of them.

        Refused as a whole: ``replayed`` when a nonce was seen before or appears twice in
        ``entries`` (``VerificationError.nonce`` names it), ``replay_cache_full`` when they do
        not all fit, ``replay_cache_error`` when the sink fails.
        """
        for nonce, expires_at in entries:
            check_nonce(nonce)
            if not math.isfinite(expires_at):
                raise ValueError("expires_at must be a finite number")
        now = time.time() if now is None else now
        with self._lock:
            self._prune(now)
            seen: set[str] = set()
            for nonce, _ in entries:
                if nonce in seen:
                    raise VerificationError(
                        "replayed", f"nonce {nonce} appears twice in one batch", nonce=nonce
                    )
                seen.add(nonce)
                if nonce in self._entries:
                    raise VerificationError("replayed", f"nonce {nonce} was already used", nonce=nonce)
            if len(self._entries) + len(entries) > self.max_entries:
                raise VerificationError(
                    "replay_cache_full",
                    f"{len(self._entries)} unexpired nonces held; refusing new instructions",
                )
            if self.sink is not None:
                try:
                    self.sink(entries)
                except OSError as exc:
                    raise VerificationError("replay_cache_error", f"cannot persist nonces: {exc}") from None
            self._add(entries)

    def load(self, entries: Iterable[tuple[str, float]]) -> None:
        """Seed the cache with persisted nonces (the sink is not called; later expiry wins).

        Expired entries are pruned lazily, by the caller's clock (see :meth:`check_and_add`).
        """
        with self._lock:
            for nonce, expires_at in entries:
                if expires_at > self._entries.get(nonce, -math.inf):
                    self._entries[nonce] = expires_at
            self._heap = [(expires_at, nonce) for nonce, expires_at in self._entries.items()]
            heapq.heapify(self._heap)

    def entries(self, now: float | None = None) -> list[tuple[str, float]]:
        """The unexpired ``(nonce, expires_at)`` pairs (a copy: for a snapshot of the cache)."""
        with self._lock:
            self._prune(time.time() if now is None else now)
            return list(self._entries.items())

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

    # -- internals ---------------------------------------------------------------------

    def _add(self, entries: Sequence[tuple[str, float]]) -> None:
        for nonce, expires_at in entries:
            self._entries[nonce] = expires_at
            heapq.heappush(self._heap, (expires_at, nonce))

    def _prune(self, now: float) -> int:
        dropped = 0
        while self._heap and self._heap[0][0] < now:
            expires_at, nonce = heapq.heappop(self._heap)
            if self._entries.get(nonce) == expires_at:
                del self._entries[nonce]
                dropped += 1
        return dropped


def check_nonce(nonce: str) -> None:
    """A nonce is 1-128 printable ASCII characters without whitespace (it is stored in text records)."""
    if not isinstance(nonce, str) or not nonce or len(nonce) > MAX_NONCE_LENGTH or not nonce.isascii():
        raise ValueError("nonce must be a non-empty ASCII string of at most 128 characters")
    if any(c.isspace() for c in nonce) or not nonce.isprintable():
        raise ValueError("nonce must not contain whitespace or control characters")
