"""The ``postgres`` check: SSLRequest and TLS probe, optional login and read-only query (psycopg).

See :mod:`vantage.checks.database` for the two steps. The login uses libpq through psycopg
(imported on the first run): ``hostaddr`` is the address the probe vetted and reached, ``host`` the
name the certificate is checked against; no password file, no GSSAPI.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from vantage.checks.credentials import Credential
from vantage.checks.database import (
    APPLICATION_NAME,
    Database,
    assert_row,
    check_type,
    first_line,
)
from vantage.checks.net import Connection
from vantage.checks.netpolicy import CheckOptions
from vantage.checks.result import CheckFailure, Probe

SSL_REQUEST = struct.pack("!ii", 8, 80877103)


async def _ssl_request(conn: Connection, want_tls: bool) -> bool:
    conn.write(SSL_REQUEST)
    await conn.drain()
    answer = await conn.readexactly(1)
    if answer not in (b"S", b"N"):
        raise CheckFailure("not a PostgreSQL server: unexpected answer to the SSLRequest")
    return answer == b"S"


async def _login(db: Database, credential: Credential, peer_ip: str) -> None:
    import psycopg  # imported here: only the checks that log in need the driver

    credential.require("username", "password", purpose="a PostgreSQL login")
    spec, probe = db.spec, db.probe
    remaining = max(1, int(db.remaining()))
    params: dict[str, Any] = {
        "host": db.server_name,
        "hostaddr": peer_ip,
        "port": db.port,
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
        params["sslrootcert"] = db.options.ca_bundle or "system"
    with probe.phase("PostgreSQL login", "login_ms"):
        try:
            conn = await psycopg.AsyncConnection.connect(**params)
        except psycopg.Error as exc:
            raise CheckFailure(f"PostgreSQL login failed: {first_line(exc)}") from None
    try:
        number = conn.info.server_version
        probe.details["server_version"] = f"{number // 10000}.{number % 10000}" if number >= 100000 else str(number)
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
                raise CheckFailure(f"query failed{state}: {first_line(exc)}") from None
        assert_row(spec["expected"], row, probe)
    finally:
        await conn.close()


async def run_postgres(spec: Mapping[str, Any], options: CheckOptions, probe: Probe) -> None:
    """Run a validated ``postgres`` spec (see :mod:`vantage.checks.database`)."""
    db = Database(spec, options, probe, "PostgreSQL")
    peer_ip = await db.handshake("PostgreSQL SSLRequest", "it answered the SSLRequest", _ssl_request)
    if db.credential is not None:
        await _login(db, db.credential, peer_ip)


CHECK = check_type(
    "postgres", "PostgreSQL: TLS offered and verified, optionally a login and a read-only query.", run_postgres, 5432
)
