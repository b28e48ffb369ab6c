"""TLS and proxy settings of the agent's connection to the control plane."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from vantage._tls import trust_system_cas


def tls_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """The system trust store (:func:`vantage._tls.trust_system_cas`) plus ``ca_bundle`` (a private CA).

    Certificate and hostname checks are on.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    trust_system_cas(context)
    if ca_bundle is not None:
        context.load_verify_locations(cafile=str(ca_bundle))
    return context


def proxy_for(url: str, env: Mapping[str, str] | None = None) -> str | None:
    """The proxy to reach ``url`` through, from ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``.

    The control plane is an HTTPS service, so the agent applies the HTTPS proxy variables to its
    ``wss://`` websocket (tunnelled with ``CONNECT`` like ``https://``), not ``WSS_PROXY``,
    which nobody sets.
    """
    env = os.environ if env is None else env
    # The rules of urllib's getproxies_environment: lower case wins, *_proxy variables by scheme.
    proxies: dict[str, str] = {}
    for name, value in env.items():
        lowered = name.lower()
        if value and lowered.endswith("_proxy"):
            proxies.setdefault(lowered[: -len("_proxy")], value)
    for name, value in env.items():
        if value and name.endswith("_proxy") and name.islower():
            proxies[name[: -len("_proxy")]] = value
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host and _bypassed(host, parts.port, proxies.get("no", "")):
        return None
    scheme = {"wss": "https", "ws": "http"}.get(parts.scheme, parts.scheme)
    return proxies.get(scheme) or proxies.get("all") or None


def _bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    """``NO_PROXY`` matching: ``*``, exact hosts, domain suffixes, ``host:port``."""
    host = host.lower()
    for entry in (item.strip().lower() for item in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, entry_port = entry.partition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and port is not None and entry_port != str(port):
            continue
        name = name.lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False
