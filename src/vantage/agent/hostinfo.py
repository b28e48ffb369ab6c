"""Facts about the host (as the agent's container sees it) reported in heartbeats.

A container's own host name is its id (``d65d7d3cc889``), which names nothing an operator
knows: the deployment tells the agent the name of the host it runs on (``VANTAGE_HOST_NAME``;
``checkpoint_container`` sets it to the Docker engine's ``docker info`` name), and that is the
``hostname`` reported. Without it the container's own host name is reported.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

_ZONEINFO_MARKER = "zoneinfo/"


def dns_servers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The ``nameserver`` entries of resolv.conf, in order."""
    servers = []
    try:
        lines = resolv_conf.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            servers.append(fields[1])
    return servers


def memory_total_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Total memory from /proc/meminfo (None where there is no such file)."""
    try:
        for line in meminfo.read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("MemTotal:"):
                value, unit = line.split()[1:3]
                return int(value) * (1024 if unit.lower() == "kb" else 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def timezone_name(env: dict[str, str] | None = None, etc: Path = Path("/etc")) -> str:
    """The IANA time zone if it can be found (TZ, /etc/timezone, /etc/localtime), else the abbreviation."""
    env = dict(os.environ) if env is None else env
    tz = env.get("TZ", "").lstrip(":")
    if tz:
        return tz
    try:
        name = (etc / "timezone").read_text(encoding="utf-8").strip()
        if name:
            return name
    except OSError:
        pass
    try:
        target = os.readlink(etc / "localtime")
        if _ZONEINFO_MARKER in target:
            return target.split(_ZONEINFO_MARKER, 1)[1]
    except OSError:
        pass
    return time.tzname[0]


def os_description(os_release: Path = Path("/etc/os-release")) -> str:
    """E.g. ``Debian GNU/Linux 12 (bookworm); Linux 6.1.0-18-amd64``."""
    uname = os.uname()  # what platform.system() and .release() return, without importing platform
    kernel = f"{uname.sysname} {uname.release}".strip()
    try:
        for line in os_release.read_text(encoding="utf-8").splitlines():
            if line.startswith("PRETTY_NAME="):
                pretty = line.split("=", 1)[1].strip().strip('"')
                return f"{pretty}; {kernel}"
    except OSError:
        pass
    return kernel


def cpu_count() -> int | None:
    """CPUs this process may run on (the container's share where affinity limits it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def host_facts(host_name: str | None = None) -> dict[str, Any]:
    """The ``host`` object of the heartbeat health (see docs/protocol.md); ``hostname`` is
    ``host_name`` when the deployment gave one (``VANTAGE_HOST_NAME``)."""
    return {
        "hostname": host_name or socket.gethostname(),
        "os": os_description(),
        "cpu_count": cpu_count(),
        "memory_total_bytes": memory_total_bytes(),
        "dns_servers": dns_servers(),
        "timezone": timezone_name(),
    }
