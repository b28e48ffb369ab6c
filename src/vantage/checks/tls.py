"""The ``tls`` check: handshake with a vetted address and report the certificate.

Details: ``cert`` (subject, issuer, validity, SANs, serial, SHA-256), ``server_name``, ``protocol``,
``cipher``. Phases: ``dns_ms``, ``connect_ms``, ``tls_ms``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vantage.checks.fields import (
    CERT_EXPIRY_WARNING_DAYS,
    HOST_PORT_TARGET,
    SERVER_NAME,
    VERIFY_TLS,
    parse_host_port,
)
from vantage.checks.net import open_vetted, secure, tls_context
from vantage.checks.netpolicy import CheckOptions
from vantage.checks.result import CheckFailure, Probe
from vantage.checks.schema import CheckType


async def run_tls(spec: Mapping[str, Any], options: CheckOptions, probe: Probe) -> None:
    """Run a validated ``tls`` spec.

    SNI and the host-name check use ``server_name`` when given, else the target's host. The
    check fails when the handshake or (with ``verify``) the chain or host name fails, and also
    when the leaf certificate has expired even with ``verify: false`` — checking the certificate
    is this check's whole purpose. Expiry within ``cert_expiry_warning_days`` is a warning.
    """
    host, port = parse_host_port(str(spec["target"]))
    server_name = str(spec["server_name"] or host)
    conn = await open_vetted(host, port, options, probe)
    try:
        context = tls_context(bool(spec["verify"]), options.ca_bundle)
        cert, session = await secure(conn, context, server_name, probe, int(spec["cert_expiry_warning_days"]))
    finally:
        conn.abort()
    probe.details["cert"] = cert
    probe.details["server_name"] = server_name
    probe.details.update(session)
    if cert.get("days_left", 0) < 0:
        raise CheckFailure(f"certificate expired on {cert['not_after']}")


CHECK = CheckType(
    name="tls",
    description="A TLS handshake with a vetted address: certificate chain, name and expiry.",
    target=HOST_PORT_TARGET,
    fields={"server_name": SERVER_NAME, "verify": VERIFY_TLS, "cert_expiry_warning_days": CERT_EXPIRY_WARNING_DAYS},
    run=run_tls,
    example={"type": "tls", "target": "ldap.example.internal:636", "cert_expiry_warning_days": 30},
)
