"""Reconnect delays: exponential back-off with full jitter.

The n-th consecutive failure waits a uniformly random time in ``[0, min(cap, base * 2**n)]``
("full jitter"), so a fleet of agents that lost the control plane at the same moment does not
reconnect in lock-step.  A session that stayed up long enough resets the sequence.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Jittered exponential back-off (default 0.5 s doubling up to 30 s)."""

    def __init__(
        self,
        base: float = 0.5,
        cap: float = 30.0,
        rand: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError("need 0 < base <= cap")
        self.base = base
        self.cap = cap
        self._rand = rand
        self.failures = 0

    def ceiling(self) -> float:
        """The upper bound of the next delay."""
        # Bound the exponent so the float never overflows however long the outage lasts.
        exponent: int = min(self.failures, 64)
        return min(self.cap, self.base * float(2**exponent))

    def next_delay(self) -> float:
        """The delay before the next attempt; counts one more failure."""
        delay = float(self._rand(0.0, self.ceiling()))
        self.failures += 1
        return delay

    def reset(self) -> None:
        """Start again from ``base`` (after a healthy session)."""
        self.failures = 0
