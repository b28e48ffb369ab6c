"""The ``postgres`` and ``mysql`` (MariaDB) checks: TLS-capable handshake, optional login and query.

Two steps, each on its own connection to the same vetted address:

1. **Handshake probe**, always, with no credential and on our own socket so that every phase is
   timed separately (``dns_ms``, ``connect_ms``, ``handshake_ms``, ``tls_ms``): PostgreSQL's
   ``SSLRequest`` (answer ``S``/``N``), or MySQL's server greeting (version, capability flags)
   followed by its ``SSLRequest`` packet; then, unless ``tls: disable``, the TLS handshake with the
   same trust rules as the ``tls`` check (``verify-full``: chain and host name against the system
   store plus the agent's CA bundle; ``require``: encrypted, certificate not verified). The
   certificate is reported and its expiry warned about. The probe never authenticates.
2. **Login and query**, only with a ``credential``: psycopg (libpq; ``hostaddr`` = the vetted
   address, ``host`` = the name the certificate is checked against) or PyMySQL (in a worker thread,
   over a socket we connected to the vetted address). ``login_ms`` covers that connection's
   TCP, TLS and authentication; ``query_ms`` the read-only transaction with the query.

The query runs in a read-only transaction (``SET TRANSACTION READ ONLY`` / ``START TRANSACTION
READ ONLY``) that is always rolled back. Its first row is reported as ``first_row`` (response
content: removed by ``strip_content``); error messages never quote it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import socket
import ssl
import struct
import time
from collections.abc import Mapping, Sequence
from typing import Any

from vantage.checks.net import Connection, connect_vetted_socket, open_vetted, secure, tls_context
from vantage.checks.netpolicy import CheckOptions
from vantage.checks.result import CheckFailure, Probe
from vantage.checks.spec import parse_host_port

APPLICATION_NAME = "vantage-checkpoint"
ROW_VALUE_CHARS = 1024  # each reported value of the first row is cut to this length
MAX_ROW_VALUES = 100

PG_SSL_REQUEST = struct.pack("!ii", 8, 80877103)

MYSQL_CLIENT_LONG_PASSWORD = 0x1
MYSQL_CLIENT_PROTOCOL_41 = 0x200
MYSQL_CLIENT_SSL = 0x800
MYSQL_CLIENT_SECURE_CONNECTION = 0x8000
MYSQL_MAX_PACKET = 16 * 1024 * 1024
MYSQL_CHARSET_UTF8MB4 = 45


# --- step 1: the handshake probe ---------------------------------------------------------------


async def _tls(conn: Connection, spec: Mapping[str, Any], options: CheckOptions, server_name: str,
               probe: Probe) -> None:
    context = tls_context(spec["tls"] == "verify-full", options.ca_bundle)
    cert, session = await secure(conn, context, server_name, probe, int(spec["cert_expiry_warning_days"]))
    probe.details["cert"] = cert
    probe.details["server_name"] = server_name
    probe.details.update(session)


def _no_tls(kind: str) -> CheckFailure:
    return CheckFailure(
        f"the {kind} server does not offer TLS (tls: require/verify-full); "
        "set tls: disable to accept an unencrypted connection"
    )


async def _postgres_probe(
    host: str, port: int, spec: Mapping[str, Any], options: CheckOptions, server_name: str, probe: Probe
) -> str:
    conn = await open_vetted(host, port, options, probe)
    try:
        with probe.phase("PostgreSQL SSLRequest", "handshake_ms"):
            try:
                conn.writer.write(PG_SSL_REQUEST)
                await conn.writer.drain()
                answer = await conn.reader.readexactly(1)
            except asyncio.IncompleteReadError:
                raise CheckFailure("connection closed by the server before it answered the SSLRequest "
                                   "(not a PostgreSQL server?)") from None
            except ConnectionError:
                raise CheckFailure(f"connection reset by {conn.peer_ip} during the SSLRequest") from None
        if answer not in (b"S", b"N"):
            raise CheckFailure("not a PostgreSQL server: unexpected answer to the SSLRequest")
        probe.details["tls_offered"] = answer == b"S"
        if spec["tls"] != "disable":
            if answer != b"S":
                raise _no_tls("PostgreSQL")
            await _tls(conn, spec, options, server_name, probe)
    finally:
        conn.abort()
    return conn.peer_ip


def _mysql_greeting(payload: bytes) -> tuple[str, int]:
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


async def _mysql_probe(
    host: str, port: int, spec: Mapping[str, Any], options: CheckOptions, server_name: str, probe: Probe
) -> str:
    conn = await open_vetted(host, port, options, probe)
    try:
        with probe.phase("MySQL server greeting", "handshake_ms"):
            try:
                header = await conn.reader.readexactly(4)
                payload = await conn.reader.readexactly(int.from_bytes(header[:3], "little"))
            except asyncio.IncompleteReadError:
                raise CheckFailure("connection closed by the server before its greeting "
                                   "(not a MySQL server?)") from None
            except ConnectionError:
                raise CheckFailure(f"connection reset by {conn.peer_ip} before the greeting") from None
        version, caps = _mysql_greeting(payload)
        probe.details["server_version"] = version
        probe.details["tls_offered"] = bool(caps & MYSQL_CLIENT_SSL)
        if spec["tls"] != "disable":
            if not caps & MYSQL_CLIENT_SSL:
                raise _no_tls("MySQL")
            flags = (MYSQL_CLIENT_LONG_PASSWORD | MYSQL_CLIENT_PROTOCOL_41 | MYSQL_CLIENT_SECURE_CONNECTION
                     | MYSQL_CLIENT_SSL)
            body = struct.pack("<IIB23x", flags, MYSQL_MAX_PACKET, MYSQL_CHARSET_UTF8MB4)
            conn.writer.write(len(body).to_bytes(3, "little") + b"\x01" + body)
            await conn.writer.drain()
            await _tls(conn, spec, options, server_name, probe)
    finally:
        conn.abort()
    return conn.peer_ip


# --- step 2: login and query -------------------------------------------------------------------


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def _matches(expected: Any, actual: Any) -> bool:
    """``expected`` (a spec scalar) against a driver value: numbers numerically, the rest as text."""
    if isinstance(expected, bool):
        if isinstance(actual, bool):
            return actual is expected
        if isinstance(actual, int):  # MySQL has no boolean type: TINYINT 0/1
            return actual == int(expected)
        return _text(actual) in (("true", "t", "1") if expected else ("false", "f", "0"))
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float, decimal.Decimal)) \
            and not isinstance(actual, bool):
        return decimal.Decimal(str(expected)) == decimal.Decimal(str(actual))
    return _text(actual) == _text(expected)


def _assert_row(expected: Any, row: Sequence[Any] | None, probe: Probe) -> None:
    if row is not None:
        probe.details["first_row"] = [
            None if (text := _text(v)) is None else text[:ROW_VALUE_CHARS] for v in list(row)[:MAX_ROW_VALUES]
        ]
    if expected is None:
        return
    if row is None:
        raise CheckFailure("query returned no rows, so the expected result cannot match")
    if isinstance(expected, list):
        if len(row) != len(expected) or not all(_matches(e, a) for e, a in zip(expected, row, strict=True)):
            raise CheckFailure(
                f"query result does not match: expected first row {expected!r} "
                f"({len(expected)} values; got {len(row)} values, see details.first_row)"
            )
    elif not row or not _matches(expected, row[0]):
        raise CheckFailure(
            f"query result does not match: expected {expected!r} in the first column of the first row "
            "(see details.first_row)"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines)[:500] if lines else type(exc).__name__


async def _postgres_login(
    spec: Mapping[str, Any], options: CheckOptions, server_name: str, peer_ip: str, port: int,
    deadline: float, probe: Probe
) -> None:
    import psycopg  # imported here: only the checks that log in need the driver

    credential = options.credentials.get(spec["credential"])
    credential.require("username", "password", purpose="a PostgreSQL login")
    remaining = max(1, int(deadline - time.monotonic()))
    params: dict[str, Any] = {
        "host": server_name,
        "hostaddr": peer_ip,
        "port": port,
        "user": credential.username,
        "password": credential.password,
        "dbname": spec["database"] or credential.username,
        "connect_timeout": remaining,
        "application_name": APPLICATION_NAME,
        "sslmode": spec["tls"],
        "gssencmode": "disable",
        "passfile": "/dev/null",
        "options": f"-c default_transaction_read_only=on -c statement_timeout={remaining * 1000}",
    }
    if spec["tls"] == "verify-full":
        # libpq takes one trust file: the agent's CA bundle when configured, else the system store.
        params["sslrootcert"] = options.ca_bundle or "system"
    with probe.phase("PostgreSQL login", "login_ms"):
        try:
            conn = await psycopg.AsyncConnection.connect(**params)
        except psycopg.Error as exc:
            raise CheckFailure(f"PostgreSQL login failed: {_first_line(exc)}") from None
    try:
        probe.details["server_version"] = _pg_version(conn.info.server_version)
        query: str | None = spec["query"]
        if query is None:
            return
        with probe.phase("query", "query_ms"):
            try:
                await conn.set_read_only(True)
                async with conn.cursor() as cur:
                    await cur.execute(query)  # the monitor's own statement, validated as a read
                    row = await cur.fetchone() if cur.description is not None else None
                await conn.rollback()
            except psycopg.Error as exc:
                state = f" [{exc.sqlstate}]" if exc.sqlstate else ""
                raise CheckFailure(f"query failed{state}: {_first_line(exc)}") from None
        _assert_row(spec["expected"], row, probe)
    finally:
        await conn.close()


def _pg_version(number: int) -> str:
    return f"{number // 10000}.{number % 10000}" if number >= 100000 else str(number)


def _mysql_session(
    sock: socket.socket, spec: Mapping[str, Any], options: CheckOptions, server_name: str, port: int,
    timeout: float, timings: dict[str, float]
) -> tuple[str, Sequence[Any] | None]:
    """Log in and run the query over ``sock`` (blocking; runs in a worker thread)."""
    import pymysql

    credential = options.credentials.get(spec["credential"])
    credential.require("username", purpose="a MySQL login")
    context: ssl.SSLContext | None = None
    if spec["tls"] != "disable":
        context = tls_context(spec["tls"] == "verify-full", options.ca_bundle)
    conn = pymysql.connections.Connection(
        host=server_name,  # the name the certificate is checked against; sock is already connected
        port=port,
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
        raise CheckFailure(f"MySQL login failed: {_mysql_reason(exc)}") from None
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
            raise CheckFailure(f"query failed: {_mysql_reason(exc)}") from None
        finally:
            timings["query_ms"] = (time.perf_counter() - start) * 1000.0
        return version, row
    finally:
        conn.close()


def _mysql_reason(exc: BaseException) -> str:
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    if len(args) >= 2 and isinstance(args[0], int):
        return f"error {args[0]}: {_first_line(Exception(args[1]))}"
    return _first_line(exc)


async def _mysql_login(
    spec: Mapping[str, Any], options: CheckOptions, host: str, server_name: str, port: int,
    deadline: float, probe: Probe
) -> None:
    probe.stage = "MySQL login"
    start = time.perf_counter()
    # A probe of its own: this TCP connect is part of login_ms (as libpq's is for PostgreSQL).
    sock, _peer = await connect_vetted_socket(host, port, options, Probe())
    timings: dict[str, float] = {"login_ms": (time.perf_counter() - start) * 1000.0}
    timeout = max(0.5, deadline - time.monotonic())
    try:
        version, row = await asyncio.to_thread(
            _mysql_session, sock, spec, options, server_name, port, timeout, timings
        )
    finally:
        for key, value in timings.items():
            probe.add_phase(key, value)
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes the worker thread if the check was cancelled
        except OSError:
            pass
        sock.close()
    probe.details["server_version"] = version
    if spec["query"] is not None:
        _assert_row(spec["expected"], row, probe)


# --- entry points ------------------------------------------------------------------------------


def _plaintext_login_warning(spec: Mapping[str, Any], probe: Probe) -> None:
    if spec["credential"] is not None and spec["tls"] == "disable":
        probe.warnings.append("login without TLS (tls: disable): the session is not encrypted")


async def run_postgres(spec: Mapping[str, Any], options: CheckOptions, probe: Probe) -> None:
    """Run a validated ``postgres`` spec (see the module docstring)."""
    deadline = time.monotonic() + float(spec["timeout_s"])
    host, port = parse_host_port(str(spec["target"]))
    server_name = str(spec["server_name"] or host)
    if spec["credential"] is not None:
        options.credentials.get(spec["credential"])  # an unknown name fails before any traffic
    peer_ip = await _postgres_probe(host, port, spec, options, server_name, probe)
    _plaintext_login_warning(spec, probe)
    if spec["credential"] is not None:
        await _postgres_login(spec, options, server_name, peer_ip, port, deadline, probe)


async def run_mysql(spec: Mapping[str, Any], options: CheckOptions, probe: Probe) -> None:
    """Run a validated ``mysql`` spec (MySQL or MariaDB; see the module docstring)."""
    deadline = time.monotonic() + float(spec["timeout_s"])
    host, port = parse_host_port(str(spec["target"]))
    server_name = str(spec["server_name"] or host)
    if spec["credential"] is not None:
        options.credentials.get(spec["credential"])
    peer_ip = await _mysql_probe(host, port, spec, options, server_name, probe)
    _plaintext_login_warning(spec, probe)
    if spec["credential"] is not None:
        # The login connects to the address the probe vetted and reached (no second resolution).
        await _mysql_login(spec, options, peer_ip, server_name, port, deadline, probe)
