"""The outcome of one check run, and the bookkeeping a check does while it runs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any


@dataclass
class CheckResult:
    """What a check run produced: the part of a protocol result the checks module owns.

    ``phases`` are in milliseconds (``dns_ms``, ``connect_ms``, ``tls_ms``, ``first_byte_ms``, as
    far as they apply); ``details`` are type-specific. Error strings never quote response content
    (bodies, banners, headers), so data protection does not need to parse them.
    """

    ok: bool
    error: str | None
    duration_ms: float
    started_at: float
    phases: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (``ok``, ``error``, ``duration_ms``, ``started_at``, ``phases``, ``details``)."""
        return {
            "ok": self.ok,
            "error": self.error,
            "duration_ms": self.duration_ms,
            "started_at": self.started_at,
            "phases": dict(self.phases),
            "details": dict(self.details),
        }


class CheckFailure(Exception):
    """A target-side failure with a readable message; the check result is ``ok=false``."""


class Probe:
    """Mutable state of a running check: current stage (for timeout messages), phases, details."""

    def __init__(self) -> None:
        self.stage = "start"
        self.phases: dict[str, float] = {}
        self.details: dict[str, Any] = {}
        self.warnings: list[str] = []

    def phase(self, stage: str, key: str | None = None) -> Phase:
        """Mark ``stage`` as current; when ``key`` is given, add the elapsed ms to that phase (``with``)."""
        self.stage = stage
        return Phase(self, key)

    def add_phase(self, key: str, ms: float) -> None:
        """Add ``ms`` to phase ``key`` (phases of several hops, e.g. redirects, are summed)."""
        self.phases[key] = round(self.phases.get(key, 0.0) + ms, 3)


class Phase:
    """The context of :meth:`Probe.phase`: times the block into its phase, if it has one.

    A class rather than a generator-based context manager: every check goes through several
    phases, and this costs a third of what ``contextlib.contextmanager`` does.
    """

    __slots__ = ("key", "probe", "start")

    def __init__(self, probe: Probe, key: str | None) -> None:
        self.probe = probe
        self.key = key
        self.start = 0.0

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.key is not None:
            self.probe.add_phase(self.key, (time.perf_counter() - self.start) * 1000.0)
