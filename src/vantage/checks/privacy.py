"""Data protection: strip response content, headers and IP addresses from results before they leave.

The agent applies :meth:`DataProtection.apply` to every result before it is stored in the outbox
or sent. It works on the protocol's result dict (``details`` nested) by key, at any depth:

* ``strip_content`` drops :data:`CONTENT_KEYS` and the content keys every check type declares
  (bodies, banners, listings, query results, server versions, mail servers' reply texts);
* ``strip_headers`` drops :data:`HEADER_KEYS` and the header keys check types declare (headers,
  and what comes from them, such as the redirect chain and final URL from ``Location``);
* ``strip_ips`` drops :data:`IP_KEYS` and the IP keys check types declare, drops values that
  check types declare to be IP addresses given their neighbours (DNS ``answers`` of A/AAAA/PTR
  queries), and replaces every IPv4/IPv6 literal in every remaining string (error, warnings,
  URLs, certificate names, even dict keys) with ``<redacted>``.

A check type declares its keys next to the code that produces them
(:class:`~vantage.checks.schema.Protect`). A result whose check type is known (the agent's own:
``apply(result, check_type=...)``) is stripped of the generic keys and that type's, since only its
check wrote its details; one of unknown origin (the control plane re-applying protection to what
an agent sent) of every type's. Error strings produced by :mod:`vantage.checks` never quote
response content or headers, so they only need the IP scrub.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from vantage.checks.fields import is_ip

REDACTED = "<redacted>"

#: Keys removed whatever the check type: the ones the shared code produces, and common names a
#: future check might use.
CONTENT_KEYS = frozenset({"body", "excerpt", "content", "received", "response_body"})
HEADER_KEYS = frozenset({"response_headers", "request_headers", "location", "set_cookie"})
IP_KEYS = frozenset(
    {"resolved_ips", "peer_ip", "peer_ips", "peer", "local_ip", "sockname", "peername", "addresses", "ip"}
)


@dataclass(frozen=True)
class _Keys:
    content: frozenset[str]
    headers: frozenset[str]
    ips: frozenset[str]
    ip_values: tuple[Callable[[Mapping[str, Any]], frozenset[str]], ...]


@functools.cache
def _keys(check_type: str | None) -> _Keys:
    """The generic keys plus the declarations of ``check_type`` (``None``: of every type), read once."""
    from vantage.checks.spec import all_types
    from vantage.checks.spec import check_type as get_type

    protects = [check.protect for check in all_types().values()] if check_type is None else [
        get_type(check_type).protect]
    return _Keys(
        content=CONTENT_KEYS.union(*(p.content for p in protects)),
        headers=HEADER_KEYS.union(*(p.headers for p in protects)),
        ips=IP_KEYS.union(*(p.ips for p in protects)),
        ip_values=tuple(p.ip_values for p in protects if p.ip_values is not None),
    )


_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
ENV_VARS = {
    "strip_content": "VANTAGE_DP_STRIP_CONTENT",
    "strip_headers": "VANTAGE_DP_STRIP_HEADERS",
    "strip_ips": "VANTAGE_DP_STRIP_IPS",
}

# Candidates only; each match is confirmed with the ipaddress module before it is replaced.
_IPV6_CANDIDATE = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?(?:%[\w.-]+)?(?![\w:])"
)
_IPV4_CANDIDATE = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d]|\.\d)")


def scrub_ips(text: str) -> str:
    """Replace every IPv4 and IPv6 literal in ``text`` with ``<redacted>``."""

    def v6(match: re.Match[str]) -> str:
        value = match.group(0)
        candidate = value.split("%", 1)[0]
        if candidate.endswith(":") and not candidate.endswith("::"):
            candidate = candidate[:-1]  # "::1:" in "[::1]:443"-like text without brackets
            return REDACTED + ":" if is_ip(candidate) else value
        return REDACTED if is_ip(candidate) else value

    def v4(match: re.Match[str]) -> str:
        value = match.group(0)
        return REDACTED if is_ip(value) else value

    return _IPV4_CANDIDATE.sub(v4, _IPV6_CANDIDATE.sub(v6, text))


def _parse_bool(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{name} must be one of true/false/1/0/yes/no, got {value!r}")


@dataclass(frozen=True)
class DataProtection:
    """The operator's data-protection switches (reported in heartbeats via :meth:`as_dict`)."""

    strip_content: bool = False
    strip_headers: bool = False
    strip_ips: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DataProtection:
        """Read ``VANTAGE_DP_STRIP_CONTENT`` / ``_HEADERS`` / ``_IPS``; unset means false.

        Accepts true/false/1/0/yes/no (any case); anything else raises ``ValueError`` naming the
        variable — a typo must not silently leave data unprotected.
        """
        values = {field: _parse_bool(var, env[var]) for field, var in ENV_VARS.items() if var in env}
        return cls(**values)

    def as_dict(self) -> dict[str, bool]:
        """``{"strip_content", "strip_headers", "strip_ips"}`` as the heartbeat reports them."""
        return asdict(self)

    @property
    def active(self) -> bool:
        """True when any switch is on."""
        return self.strip_content or self.strip_headers or self.strip_ips

    def _denied(self, keys: _Keys) -> frozenset[str]:
        denied: frozenset[str] = frozenset()
        if self.strip_content:
            denied |= keys.content
        if self.strip_headers:
            denied |= keys.headers
        if self.strip_ips:
            denied |= keys.ips
        return denied

    def apply(self, result: Mapping[str, Any], check_type: str | None = None) -> dict[str, Any]:
        """A deep copy of ``result`` with everything the switches forbid removed.

        ``check_type``: the (registered) type of the check that produced ``result``, whose
        declarations are then the only ones that apply; ``None`` applies every type's.
        """
        keys = _keys(check_type)
        return {str(k): v for k, v in self._clean(result, self._denied(keys), keys).items()}

    def _clean(self, value: Any, denied: frozenset[str], keys: _Keys) -> Any:
        if isinstance(value, Mapping):
            out: dict[Any, Any] = {}
            here = denied  # plus, at this level only, keys whose values are IPs given their neighbours
            if self.strip_ips:
                here = denied.union(*(ip_values(value) for ip_values in keys.ip_values))
            for key, item in value.items():
                name = str(key)
                if name in here:
                    continue
                if self.strip_ips and isinstance(key, str):
                    key = scrub_ips(key)
                out[key] = self._clean(item, denied, keys)
            return out
        if isinstance(value, (list, tuple)):
            return [self._clean(item, denied, keys) for item in value]
        if isinstance(value, str):
            return scrub_ips(value) if self.strip_ips else value
        if isinstance(value, (bytes, bytearray)):
            return (
                None if self.strip_content else self._clean(bytes(value).decode("utf-8", "replace"), denied, keys)
            )
        return value
