"""The ``http`` check: one request (and its redirects) through :mod:`vantage.checks.httpclient`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vantage.checks.httpclient import Request, check_response, fetch
from vantage.checks.netpolicy import CheckOptions
from vantage.checks.result import Probe

EXCERPT_CHARS = 1024


async def run_http(spec: Mapping[str, Any], options: CheckOptions, probe: Probe) -> None:
    """Run a validated ``http`` spec; raises :class:`CheckFailure` on any failed expectation."""
    redirects: list[str] = []
    probe.details["redirects"] = redirects
    request = Request(str(spec["target"]), str(spec["method"]), dict(spec["headers"]), spec["body"])
    resp, request = await fetch(request, spec, options, probe, redirects=redirects)
    details = probe.details
    details["final_url"] = request.url
    details["status_code"] = resp.status
    details["reason"] = resp.reason
    details["http_version"] = resp.version
    details["headers"] = resp.headers
    text = resp.text()
    details["body_excerpt"] = text[:EXCERPT_CHARS]
    details["body_bytes"] = len(resp.body)
    details["body_truncated"] = resp.truncated
    check_response(spec, resp, text, int(spec["max_body_bytes"]))
