"""Run verified ``run_check`` instructions under bounded concurrency and shape their results.

The runner never sees an unverified instruction: the session hands it the body of an
instruction that passed :class:`vantage.protocol.InstructionVerifier`.  Data protection is
applied here, to the finished result, before the result reaches the outbox or the socket.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vantage.checks import CheckOptions, DataProtection

log = logging.getLogger(__name__)

#: Extra seconds a check may take beyond its own ``timeout_s`` before the runner gives up on it.
TIMEOUT_MARGIN_S = 10.0
DEFAULT_TIMEOUT_S = 30.0


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


def _bounded(result: dict[str, Any]) -> dict[str, Any]:
    """The result as plain JSON data (anything exotic stringified), cut down if too large."""
    data = json.dumps(result, default=str)
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
        data = json.dumps(result, default=str)
    bounded: dict[str, Any] = json.loads(data)
    return bounded


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


class CheckRunner:
    """Runs checks, at most ``max_concurrency`` at a time."""

    def __init__(self, options: CheckOptions, protection: DataProtection, max_concurrency: int = 32) -> None:
        self.options = options
        self.protection = protection
        self.max_concurrency = max_concurrency
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self.running = 0
        self.waiting = 0

    async def run(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Run the check of a verified ``run_check`` body; return the protected result dict.

        Never raises for a bad spec or a failing check: those become ``ok: false`` results, so
        the control plane always learns the outcome of what it asked for.  A body without a
        usable ``check_id`` raises :class:`BadInstructionBody`.
        """
        from vantage.checks import CheckSpecError, run_check, validate_spec

        check_id, monitor_id, attempt, spec = parse_body(body)
        started_at = time.time()
        try:
            normalized = validate_spec(spec)
        except CheckSpecError as exc:
            result = _error_result(f"invalid check spec: {exc.field}: {exc.message}", started_at)
        else:
            limit = float(normalized.get("timeout_s", DEFAULT_TIMEOUT_S)) + TIMEOUT_MARGIN_S
            self.waiting += 1
            try:
                await self._semaphore.acquire()
            finally:
                self.waiting -= 1
            self.running += 1
            started_at = time.time()
            begin = time.monotonic()
            try:
                outcome = await asyncio.wait_for(run_check(normalized, self.options), limit)
                result = outcome.to_dict()
            except TimeoutError:
                elapsed_ms = (time.monotonic() - begin) * 1000
                result = _error_result(
                    f"timeout: check did not finish within {limit:.0f}s", started_at, elapsed_ms
                )
            except Exception as exc:  # a bug in a check must not take the agent down
                log.exception("check %s (monitor %s) crashed", check_id, monitor_id)
                elapsed_ms = (time.monotonic() - begin) * 1000
                result = _error_result(f"agent_error: {type(exc).__name__}", started_at, elapsed_ms)
            finally:
                self.running -= 1
                self._semaphore.release()
        result = dict(result)
        result.update(id=check_id, check_id=check_id, monitor_id=monitor_id, attempt=attempt)
        return _bounded(self.protection.apply(result))

    @property
    def saturated(self) -> bool:
        """Checks are queueing for a free slot."""
        return self.waiting > 0
