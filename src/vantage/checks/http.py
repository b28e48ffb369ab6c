"""The ``http`` check: one request (and its redirects) through :mod:`vantage.checks.httpclient`.

Details: ``status_code``, ``reason``, ``http_version``, ``headers``, ``redirects``, ``final_url``,
``body_excerpt`` (the first 1024 characters), ``body_bytes``, ``body_truncated`` and, over https,
``tls`` (certificate, protocol, cipher). Phases: ``dns_ms``, ``connect_ms``, ``tls_ms``,
``first_byte_ms``, summed over redirects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vantage.checks.fields import URL_TARGET
from vantage.checks.httpclient import (
    NO_KEYWORD_WITH_HEAD,
    REQUEST_FIELDS,
    RESPONSE_FIELDS,
    Request,
    check_response,
    fetch,
)
from vantage.checks.netpolicy import CheckOptions
from vantage.checks.result import Probe
from vantage.checks.schema import CheckType, Conflicts, Protect

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


CHECK = CheckType(
    name="http",
    description="One HTTP request: status, keywords, redirects, TLS and certificate expiry, timing phases.",
    target=URL_TARGET,
    fields={**REQUEST_FIELDS, **RESPONSE_FIELDS},
    rules=NO_KEYWORD_WITH_HEAD + tuple(
        Conflicts(keyword, "max_body_bytes", 0, f"must be greater than 0 when {keyword} is set",
                  error_field="max_body_bytes")
        for keyword in ("keyword", "keyword_absent")
    ),
    run=run_http,
    example={"type": "http", "target": "https://intranet.example.internal/health", "keyword": "ok"},
    protect=Protect(content=frozenset({"body_excerpt"}), headers=frozenset({"headers", "redirects", "final_url"})),
)
