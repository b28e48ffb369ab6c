"""The ``mysql`` check (MySQL and MariaDB): greeting and TLS probe, optional login and read-only query.

See :mod:`vantage.checks.database` for the two steps. The probe reads the server greeting
(version, capability flags) and sends the ``SSLRequest`` packet before the handshake. The login
runs PyMySQL (imported on the first run) in a worker thread, over a socket connected to the
address the probe vetted and reached.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import time
from collections.abc import Mapping, Sequence
from typing import Any

from vantage.checks.credentials import Credential
from vantage.checks.database import (
    APPLICATION_NAME,
    Database,
    assert_row,
    check_type,
    first_line,
)
from vantage.checks.net import Connection, connect_vetted_socket, tls_context
from vantage.checks.netpolicy import CheckOptions
from vantage.checks.result import CheckFailure, Probe

CLIENT_LONG_PASSWORD = 0x1
CLIENT_PROTOCOL_41 = 0x200
CLIENT_SSL = 0x800
CLIENT_SECURE_CONNECTION = 0x8000
MAX_PACKET = 16 * 1024 * 1024
CHARSET_UTF8MB4 = 45


def parse_greeting(payload: bytes) -> tuple[str, int]:
    """Server version and capability flags from a MySQL/MariaDB initial handshake packet."""
    if payload[:1] == b"\xff":
        code = int.from_bytes(payload[1:3], "little") if len(payload) >= 3 else 0
        message = payload[3:].decode("utf-8", "replace").strip()
        raise CheckFailure(f"the MySQL server refused the connection: error {code}: {message[:200]}")
    if payload[:1] != b"\x0a":
        raise CheckFailure("not a MySQL server: unexpected initial handshake packet")
    end = payload.find(b"\x00", 1)
    if end < 0 or len(payload) < end + 1 + 4 + 8 + 1 + 2:
        raise CheckFailure("not a MySQL server: truncated initial handshake packet")
    version = payload[1:end].decode("utf-8", "replace")
    pos = end + 1 + 4 + 8 + 1
    caps = int.from_bytes(payload[pos : pos + 2], "little")
    if len(payload) >= pos + 2 + 1 + 2 + 2:
        caps |= int.from_bytes(payload[pos + 5 : pos + 7], "little") << 16
    # MariaDB >= 10 prefixes "5.5.5-" for old clients' sake.
    return version.removeprefix("5.5.5-"), caps



async def _greeting_and_ssl_request(conn: Connection, want_tls: bool, probe: Probe) -> bool:
    header = await conn.readexactly(4)
    payload = await conn.readexactly(int.from_bytes(header[:3], "little"))
    version, caps = parse_greeting(payload)
    probe.details["server_version"] = version
    offered = bool(caps & CLIENT_SSL)
    if want_tls and offered:
        flags = CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_SSL
        body = struct.pack("<IIB23x", flags, MAX_PACKET, CHARSET_UTF8MB4)
        conn.write(len(body).to_bytes(3, "little") + b"\x01" + body)
        await conn.drain()
    return offered


def _session(
    sock: socket.socket, db: Database, credential: Credential, timeout: float, timings: dict[str, float]
) -> tuple[str, Sequence[Any] | None]:
    """Log in and run the query over ``sock`` (blocking; runs in a worker thread)."""
    import pymysql

    spec = db.spec
    context: ssl.SSLContext | None = None
    if spec["tls"] != "disable":
        context = tls_context(spec["tls"] == "verify-full", db.options.ca_bundle)
    conn = pymysql.connections.Connection(
        host=db.server_name,  # the name the certificate is checked against; sock is already connected
        port=db.port,
        user=credential.username,
        password=credential.password or "",
        database=spec["database"],
        ssl=context,
        ssl_disabled=context is None,
        connect_timeout=timeout,
        read_timeout=timeout,
        write_timeout=timeout,
        charset="utf8mb4",
        autocommit=False,
        local_infile=False,
        program_name=APPLICATION_NAME,
        defer_connect=True,
    )
    sock.setblocking(True)
    sock.settimeout(timeout)
    start = time.perf_counter()
    try:
        conn.connect(sock=sock)
    except pymysql.MySQLError as exc:
        raise CheckFailure(f"MySQL login failed: {_reason(exc)}") from None
    timings["login_ms"] += (time.perf_counter() - start) * 1000.0
    try:
        version = str(conn.get_server_info()).removeprefix("5.5.5-")
        query: str | None = spec["query"]
        if query is None:
            return version, None
        start = time.perf_counter()
        try:
            with conn.cursor() as cur:
                cur.execute("START TRANSACTION READ ONLY")
                cur.execute(query)
                row = cur.fetchone()
            conn.rollback()
        except pymysql.MySQLError as exc:
            raise CheckFailure(f"query failed: {_reason(exc)}") from None
        finally:
            timings["query_ms"] = (time.perf_counter() - start) * 1000.0
        return version, row
    finally:
        conn.close()


def _reason(exc: BaseException) -> str:
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    if len(args) >= 2 and isinstance(args[0], int):
        return f"error {args[0]}: {first_line(Exception(args[1]))}"
    return first_line(exc)


async def _login(db: Database, credential: Credential, peer_ip: str) -> None:
    credential.require("username", purpose="a MySQL login")
    probe = db.probe
    probe.stage = "MySQL login"
    start = time.perf_counter()
    # A probe of its own: this TCP connect is part of login_ms (as libpq's is for PostgreSQL).
    sock, _peer = await connect_vetted_socket(peer_ip, db.port, db.options, Probe())
    timings: dict[str, float] = {"login_ms": (time.perf_counter() - start) * 1000.0}
    try:
        version, row = await asyncio.to_thread(_session, sock, db, credential, max(0.5, db.remaining()), timings)
    finally:
        for key, value in timings.items():
            probe.add_phase(key, value)
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes the worker thread if the check was cancelled
        except OSError:
            pass
        sock.close()  # never a transport's: the driver works on it in its thread, outside the event loop
    probe.details["server_version"] = version
    if db.spec["query"] is not None:
        assert_row(db.spec["expected"], row, probe)


async def run_mysql(spec: Mapping[str, Any], options: CheckOptions, probe: Probe) -> None:
    """Run a validated ``mysql`` spec (MySQL or MariaDB; see :mod:`vantage.checks.database`)."""
    db = Database(spec, options, probe, "MySQL")
    peer_ip = await db.handshake(
        "MySQL server greeting", "its greeting", lambda conn, want_tls: _greeting_and_ssl_request(conn, want_tls, probe)
    )
    if db.credential is not None:
        # The login connects to the address the probe vetted and reached (no second resolution).
        await _login(db, db.credential, peer_ip)


CHECK = check_type(
    "mysql", "MySQL or MariaDB: TLS offered and verified, optionally a login and a read-only query.", run_mysql, 3306
)
