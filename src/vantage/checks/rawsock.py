"""A vetted, connected plain socket for checks whose protocol library wants a socket of its own.

:func:`vantage.checks.net.open_vetted` hands out asyncio streams; ``asyncssh`` (``sock=``) and
PyMySQL (``connect(sock=...)``) take an already-connected socket instead. Both paths resolve once,
vet every address against the network policy and connect to the vetted address itself, so a
library never resolves the name again (no DNS rebinding) and ``connect_ms`` is a real TCP time.
"""

from __future__ import annotations

import asyncio
import socket

from vantage.checks.net import _connect_error, resolve
from vantage.checks.netpolicy import BlockedAddressError, CheckOptions, vet_addresses
from vantage.checks.result import CheckFailure, Probe
from vantage.checks.spec import format_host_port


async def connect_vetted_socket(
    host: str, port: int, options: CheckOptions, probe: Probe
) -> tuple[socket.socket, str]:
    """Resolve ``host``, vet every address, connect to the first that answers.

    Returns the connected non-blocking socket and the peer address (also recorded as
    ``details.peer_ip``). Raises :class:`CheckFailure` for DNS failures, blocked addresses and
    connection errors; the caller owns (and must close) the socket.
    """
    addresses = await resolve(host, port, probe)
    try:
        vet_addresses(addresses, options)
    except BlockedAddressError as exc:
        raise CheckFailure(str(exc)) from None
    loop = asyncio.get_running_loop()
    errors: list[str] = []
    for address in addresses:
        where = format_host_port(str(address), port)
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        with probe.phase("connect", "connect_ms"):
            try:
                await loop.sock_connect(sock, (str(address), port))
            except OSError as exc:
                sock.close()
                errors.append(_connect_error(exc, where))
                continue
            except BaseException:
                sock.close()
                raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        probe.details["peer_ip"] = str(address)
        return sock, str(address)
    raise CheckFailure("; ".join(errors))
