"""Run verified ``run_check`` instructions under bounded concurrency and shape their results.

The runner never sees an unverified instruction: the session hands it the body of an
instruction that passed :class:`vantage.protocol.InstructionVerifier`.  The check spec is
validated once, by :func:`vantage.checks.run_check` (the control plane validated it already when
the monitor was created).  Data protection is applied here, to the finished result, which is
then serialised **once**: the JSON text that goes to the journal is the text that is sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vantage.checks import CheckOptions, DataProtection

log = logging.getLogger(__name__)

#: Extra seconds a check may take beyond its own ``timeout_s`` before the runner gives up on it.
TIMEOUT_MARGIN_S = 10.0
DEFAULT_TIMEOUT_S = 30.0
#: the longest ``timeout_s`` the runner's own bound takes into account (the spec's limit is lower)
MAX_TIMEOUT_S = 3600.0


#: A result larger than this (serialised) keeps its verdict but loses its ``details``: one huge
#: result must never exceed the control plane's message limit and wedge the session on resend.
MAX_RESULT_BYTES = 256 * 1024


class BadInstructionBody(ValueError):
    """A ``run_check`` body without the fields needed to even report a result."""


def _error_result(error: str, started_at: float, duration_ms: float = 0.0) -> dict[str, Any]:
    return {
        "ok": False,
        "error": error,
        "duration_ms": round(duration_ms, 3),
        "started_at": started_at,
        "phases": {},
        "details": {},
    }


def _plain(value: Any) -> Any:
    """What JSON cannot hold, as text (bytes decoded the way data protection decodes them)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def serialise(result: dict[str, Any]) -> bytes:
    """The result as one line of JSON (anything exotic as text), cut down if too large."""
    data = json.dumps(result, default=_plain, separators=(",", ":")).encode("ascii")
    if len(data) > MAX_RESULT_BYTES:
        log.warning(
            "result %s is %d bytes (limit %d); its details are dropped",
            result.get("id"),
            len(data),
            MAX_RESULT_BYTES,
        )
        result = {**result, "details": {"truncated": True, "original_bytes": len(data)}}
        if isinstance(result.get("error"), str):
            result["error"] = result["error"][:4096]
        data = json.dumps(result, default=_plain, separators=(",", ":")).encode("ascii")
    return data


def parse_body(body: Mapping[str, Any]) -> tuple[str, str, int, dict[str, Any]]:
    """``(check_id, monitor_id, attempt, check spec)`` from a ``run_check`` body."""
    check_id = body.get("check_id")
    monitor_id = body.get("monitor_id")
    attempt = body.get("attempt", 1)
    spec = body.get("check")
    if not isinstance(check_id, str) or not check_id or len(check_id) > 128:
        raise BadInstructionBody("check_id must be a non-empty string")
    if not isinstance(monitor_id, str | int) or isinstance(monitor_id, bool):
        raise BadInstructionBody("monitor_id must be a string")
    if not isinstance(attempt, int) or isinstance(attempt, bool) or not 1 <= attempt <= 10:
        raise BadInstructionBody("attempt must be a small positive integer")
    if not isinstance(spec, dict):
        raise BadInstructionBody("check must be an object")
    return check_id, str(monitor_id), attempt, spec


def _limit(spec: Mapping[str, Any]) -> float:
    """The runner's own bound for a check: its ``timeout_s`` (as far as it is a sane number) plus a margin."""
    timeout = spec.get("timeout_s", DEFAULT_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout):
        timeout = DEFAULT_TIMEOUT_S
    return min(max(float(timeout), 0.0), MAX_TIMEOUT_S) + TIMEOUT_MARGIN_S


class CheckRunner:
    """Runs checks, at most ``max_concurrency`` at a time."""

    def __init__(self, options: CheckOptions, protection: DataProtection, max_concurrency: int = 32) -> None:
        self.options = options
        self.protection = protection
        self.max_concurrency = max_concurrency
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self.running = 0
        self.waiting = 0

    async def run(self, body: Mapping[str, Any]) -> tuple[dict[str, Any], bytes]:
        """Run the check of a verified ``run_check`` body: the protected result and its JSON.

        Never raises for a bad spec or a failing check: those become ``ok: false`` results, so
        the control plane always learns the outcome of what it asked for.  A body without a
        usable ``check_id`` raises :class:`BadInstructionBody`.
        """
        import vantage.checks

        check_id, monitor_id, attempt, spec = parse_body(body)
        limit = _limit(spec)
        self.waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        started_at = time.time()
        begin = time.monotonic()
        try:
            async with asyncio.timeout(limit):  # no extra task per check, unlike wait_for
                outcome = await vantage.checks.run_check(spec, self.options)
            result = outcome.to_dict()
        except TimeoutError:
            elapsed_ms = (time.monotonic() - begin) * 1000
            result = _error_result(f"timeout: check did not finish within {limit:.0f}s", started_at, elapsed_ms)
        except Exception as exc:  # a bug in a check must not take the agent down
            log.exception("check %s (monitor %s) crashed", check_id, monitor_id)
            elapsed_ms = (time.monotonic() - begin) * 1000
            result = _error_result(f"agent_error: {type(exc).__name__}", started_at, elapsed_ms)
        finally:
            self.running -= 1
            self._semaphore.release()
        result.update(id=check_id, check_id=check_id, monitor_id=monitor_id, attempt=attempt)
        if self.protection.active:  # with every switch off, apply() would only copy the result
            # Only the check's own type wrote its details: its declarations are the ones that apply.
            kind = spec.get("type")
            result = self.protection.apply(result, kind if kind in vantage.checks.CHECK_TYPES else None)
        return result, serialise(result)

    @property
    def saturated(self) -> bool:
        """Checks are queueing for a free slot."""
        return self.waiting > 0
