"""``run_check``: validate a spec, run it under its overall timeout, never raise for the target."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from vantage.checks.netpolicy import CheckOptions
from vantage.checks.result import CheckFailure, CheckResult, Probe
from vantage.checks.schema import CheckSpecError
from vantage.checks.spec import check_type, validate_spec


async def run_check(spec: Mapping[str, Any], options: CheckOptions) -> CheckResult:
    """Validate ``spec`` and run it, bounded by its ``timeout_s``.

    Every target-side failure — invalid spec, refused address, DNS failure, connection error,
    TLS failure, timeout, unmet expectation — comes back as ``ok=False`` with a readable
    ``error``; only cancellation of the calling task propagates.
    """
    started_at = time.time()
    start = time.perf_counter()
    probe = Probe()
    error: str | None = None
    try:
        norm = validate_spec(spec)
    except CheckSpecError as exc:
        return CheckResult(
            ok=False,
            error=f"invalid check spec: {exc}",
            duration_ms=round((time.perf_counter() - start) * 1000.0, 3),
            started_at=started_at,
        )
    timeout = float(norm["timeout_s"])
    timer = asyncio.timeout(timeout)
    try:
        async with timer:
            await check_type(norm["type"]).run(norm, options, probe)
    except TimeoutError:
        if timer.expired():
            error = f"timed out after {timeout} s during {probe.stage}"
        else:
            error = f"timed out during {probe.stage}"
    except CheckFailure as exc:
        error = str(exc)
    except OSError as exc:
        error = f"network error during {probe.stage}: {exc.strerror or exc}"
    except Exception as exc:  # noqa: BLE001 - a bug or an unforeseen library error must not kill the agent
        error = f"internal error during {probe.stage}: {type(exc).__name__}: {exc}"
    details = probe.details
    details["warnings"] = probe.warnings
    # No secret leaves a check, even when a server or library quoted one in a message.
    secrets = options.credentials
    return CheckResult(
        ok=error is None,
        error=None if error is None else secrets.redact(error),
        duration_ms=round((time.perf_counter() - start) * 1000.0, 3),
        started_at=started_at,
        phases=probe.phases,
        details=secrets.redact_value(details),
    )
