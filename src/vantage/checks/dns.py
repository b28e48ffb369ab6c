"""The ``dns`` check: resolve a name with the system resolvers or a given server.

dnspython (about 5 MB resident) is imported on the first ``dns`` check, not with
:mod:`vantage.checks`: an agent that never runs one does not pay for it.

Details: ``record_type``, ``resolver``, ``answers`` (IP addresses for A/AAAA/PTR, removed by
``strip_ips``), ``ttl``, ``canonical_name``. Phase: ``dns_ms``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vantage.checks.fields import CTL_RE, MAX_TARGET_LENGTH, format_host_port, idna, is_ip, parse_host_port
from vantage.checks.netpolicy import BlockedAddressError, CheckOptions, vet_addresses
from vantage.checks.result import CheckFailure, Probe
from vantage.checks.schema import CheckSpecError, CheckType, ListOf, Protect, Text

if TYPE_CHECKING:
    import dns.asyncresolver
    import dns.name
    import dns.rdata

RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "TXT", "NS", "SRV", "PTR")
IP_ANSWER_TYPES = frozenset({"A", "AAAA", "PTR"})  # answers that are (or name) IP addresses
MAX_EXPECTED = 100
_TARGET_TYPES = frozenset({"MX", "SRV"})  # answers ending in a host name


def _answer_text(rdata: dns.rdata.Rdata, record_type: str) -> str:
    if record_type == "TXT":
        return b"".join(getattr(rdata, "strings", ())).decode("utf-8", errors="replace")
    return str(rdata.to_text())


def _norm(value: str, record_type: str) -> str:
    if record_type == "TXT":
        return value
    return " ".join(part.rstrip(".").lower() for part in value.split())


def _matches(expected: str, answer: str, record_type: str) -> bool:
    want, have = _norm(expected, record_type), _norm(answer, record_type)
    if record_type in ("A", "AAAA"):
        try:
            return ipaddress.ip_address(want) == ipaddress.ip_address(have)
        except ValueError:
            return want == have
    if want == have:
        return True
    return record_type in _TARGET_TYPES and have.rsplit(" ", 1)[-1] == want


def _resolver_for(spec: Mapping[str, Any], options: CheckOptions) -> tuple[dns.asyncresolver.Resolver, str]:
    import dns.asyncresolver
    import dns.exception

    server: str | None = spec["resolver"]
    if server is None:
        try:
            return dns.asyncresolver.Resolver(), "system"
        except dns.exception.DNSException as exc:
            raise CheckFailure(f"no system DNS resolver configured: {exc}") from None
    try:
        host, port = str(ipaddress.ip_address(server)), 53
    except ValueError:
        host, port = parse_host_port(server, "resolver")
    try:
        vet_addresses([ipaddress.ip_address(host)], options)
    except BlockedAddressError as exc:
        raise CheckFailure(str(exc).replace("target address", "resolver address", 1)) from None
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = port
    return resolver, format_host_port(host, port)


async def run_dns(spec: Mapping[str, Any], options: CheckOptions, probe: Probe) -> None:
    """Run a validated ``dns`` spec.

    Fails on NXDOMAIN, an empty answer, a server failure or timeout, and when any ``expected``
    string is missing from the answers (names compare case-insensitively without the trailing
    dot; for MX/SRV the target host name alone also matches; TXT strings are joined and compared
    exactly).
    """
    import dns.exception
    import dns.resolver
    import dns.reversename

    record_type = str(spec["record_type"])
    target = str(spec["target"])
    timeout = float(spec["timeout_s"])
    resolver, label = _resolver_for(spec, options)
    resolver.lifetime = timeout
    resolver.timeout = timeout
    probe.details["record_type"] = record_type
    probe.details["resolver"] = label
    qname: dns.name.Name | str = target
    if record_type == "PTR":
        try:
            qname = dns.reversename.from_address(target)
        except (ValueError, dns.exception.SyntaxError):
            qname = target
    where = f" at {label}" if label != "system" else ""
    with probe.phase("dns query", "dns_ms"):
        try:
            answer = await resolver.resolve(qname, record_type, search=False)
        except dns.resolver.NXDOMAIN:
            raise CheckFailure(f"DNS name {target} does not exist (NXDOMAIN){where}") from None
        except dns.resolver.NoAnswer:
            raise CheckFailure(f"no {record_type} records for {target}{where}") from None
        except dns.resolver.NoNameservers:
            raise CheckFailure(f"no name server answered for {target}{where} (SERVFAIL or refused)") from None
        except dns.resolver.LifetimeTimeout:
            raise CheckFailure(f"timed out after {timeout} s during dns query{where}") from None
        except dns.exception.DNSException as exc:
            raise CheckFailure(f"DNS query for {target} failed{where}: {exc}") from None
    if label == "system":
        probe.details["resolver"] = format_host_port(str(answer.nameserver), int(answer.port or 53))
    answers = [_answer_text(r, record_type) for r in answer]
    probe.details["answers"] = answers
    probe.details["ttl"] = answer.rrset.ttl if answer.rrset is not None else None
    if answer.canonical_name != answer.qname:
        probe.details["canonical_name"] = answer.canonical_name.to_text()
    missing = [e for e in spec["expected"] or () if not any(_matches(e, a, record_type) for a in answers)]
    if missing:
        raise CheckFailure(
            f"expected {record_type} answer{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(m) for m in missing)} not found for {target}"
        )


def _name(value: str, field: str) -> str:
    """A DNS name in its ASCII form, or an IP address (a PTR query's subject)."""
    target = value.strip()
    if is_ip(target):
        return target
    target = idna(target, field)
    name = target.removesuffix(".")
    if not name or len(name) > 253 or not all(0 < len(x) <= 63 for x in name.split(".")):
        raise CheckSpecError(field, f"{target!r} is not a valid DNS name")
    if CTL_RE.search(name):
        raise CheckSpecError(field, "DNS name must not contain whitespace or control characters")
    return target


def _resolver(value: str, field: str) -> str:
    resolver = value.strip()
    if is_ip(resolver):
        return resolver
    host, port = parse_host_port(resolver, field)
    if not is_ip(host):
        raise CheckSpecError(field, "must be an IP address, optionally with :port")
    return format_host_port(host, port)


def _ip_answers(details: Mapping[str, Any]) -> frozenset[str]:
    return frozenset({"answers"}) if str(details.get("record_type", "")).upper() in IP_ANSWER_TYPES else frozenset()


CHECK = CheckType(
    name="dns",
    description="Resolve a name with the system resolvers or a given server; optionally expect answers.",
    target=Text(max_length=MAX_TARGET_LENGTH, required=True, normalize=_name, pattern=r"^\s*\S+\s*$",
                description="DNS name to query (an IP address for PTR)"),
    fields={
        "record_type": Text(choices=RECORD_TYPES, fold=str.upper, default="A", description="record type (any case)"),
        "resolver": Text(normalize=_resolver, pattern=r"^\s*\S+\s*$",
                         description="IP address (optionally [v6]:port or v4:port) of the server to ask "
                         "(default: the system resolvers)"),
        "expected": ListOf(Text(message="must be a non-empty string"), 1, MAX_EXPECTED,
                           message=f"must be a list of 1 to {MAX_EXPECTED} strings",
                           description="answers that must all be present (names compare case-insensitively "
                           "without the trailing dot; for MX/SRV the target host alone matches)"),
    },
    run=run_dns,
    example={"type": "dns", "target": "example.internal", "record_type": "MX", "resolver": "10.0.0.53",
             "expected": ["mail.example.internal"]},
    protect=Protect(ip_values=_ip_answers),
)
