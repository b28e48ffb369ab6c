"""What the ``postgres`` and ``mysql`` checks share: their spec, the handshake probe, the first row.

Both checks take two steps, each on its own connection to the same vetted address:

1. **Handshake probe**, always, with no credential and on our own connection so that every phase
   is timed separately (``dns_ms``, ``connect_ms``, ``handshake_ms``, ``tls_ms``): the server is
   asked whether it offers TLS (PostgreSQL's ``SSLRequest``, MySQL's greeting and capability
   flags); then, unless ``tls: disable``, the TLS handshake with the same trust rules as the
   ``tls`` check (``verify-full``: chain and host name against the system store plus the agent's
   CA bundle; ``require``: encrypted, certificate not verified). The certificate is reported and
   its expiry warned about. The probe never authenticates.
2. **Login and query**, only with a ``credential``, through the database's driver (imported on
   the first run of the check). ``login_ms`` covers that connection's TCP, TLS and
   authentication; ``query_ms`` the read-only transaction with the query.

The query runs in a read-only transaction that is always rolled back. Its first row is reported
as ``first_row`` (response content: removed by ``strip_content``); error messages never quote it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from vantage.checks.credentials import Credential
from vantage.checks.fields import (
    CERT_EXPIRY_WARNING_DAYS,
    CREDENTIAL,
    CTL_RE,
    HOST_PORT_TARGET,
    SERVER_NAME,
    parse_host_port,
)
from vantage.checks.net import Connection, open_vetted, secure, tls_context
from vantage.checks.netpolicy import CheckOptions
from vantage.checks.result import CheckFailure, Probe
from vantage.checks.schema import (
    JSON,
    MAX_TEXT_FIELD,
    CheckSpecError,
    CheckType,
    Field,
    Protect,
    Requires,
    Rule,
    Runner,
    Text,
)

APPLICATION_NAME = "vantage-checkpoint"
ROW_VALUE_CHARS = 1024  # each reported value of the first row is cut to this length
MAX_ROW_VALUES = 100
TLS_MODES = ("disable", "require", "verify-full")
MAX_QUERY = 4096
MAX_EXPECTED = 100
#: First keywords a ``query`` may start with: reads only (a guard against mistakes; the
#: least-privilege account and the read-only transaction are the real guards).
READ_QUERY_KEYWORDS = ("SELECT", "WITH", "SHOW", "VALUES", "TABLE")
_FIRST_WORD_RE = re.compile(r"^\s*\(*\s*([A-Za-z]+)")


class Database:
    """One run of a database check: the target, the credential (looked up before any traffic), the deadline."""

    def __init__(self, spec: Mapping[str, Any], options: CheckOptions, probe: Probe, kind: str) -> None:
        self.deadline = time.monotonic() + float(spec["timeout_s"])
        self.host, self.port = parse_host_port(str(spec["target"]))
        self.server_name = str(spec["server_name"] or self.host)
        self.spec = spec
        self.options = options
        self.probe = probe
        self.kind = kind
        self.credential: Credential | None = None
        if spec["credential"] is not None:
            self.credential = options.credentials.get(spec["credential"])  # an unknown name fails first

    async def handshake(
        self, stage: str, before: str, ask: Callable[[Connection, bool], Awaitable[bool]]
    ) -> str:
        """Step 1: ``ask(conn, want_tls)`` learns whether the server offers TLS; then TLS unless disabled.

        ``before`` completes "connection closed by the server before ..." when the server hangs up
        during ``ask``. Returns the address the probe reached (the login connects there again).
        """
        want_tls = self.spec["tls"] != "disable"
        conn = await open_vetted(self.host, self.port, self.options, self.probe)
        try:
            with self.probe.phase(stage, "handshake_ms"):
                try:
                    offered = await ask(conn, want_tls)
                except asyncio.IncompleteReadError:
                    raise CheckFailure(
                        f"connection closed by the server before {before} (not a {self.kind} server?)"
                    ) from None
                except ConnectionError:
                    raise CheckFailure(f"connection reset by {conn.peer_ip} before {before}") from None
            self.probe.details["tls_offered"] = offered
            if want_tls:
                if not offered:
                    raise CheckFailure(
                        f"the {self.kind} server does not offer TLS (tls: require/verify-full); "
                        "set tls: disable to accept an unencrypted connection"
                    )
                context = tls_context(self.spec["tls"] == "verify-full", self.options.ca_bundle)
                cert, session = await secure(conn, context, self.server_name, self.probe,
                                             int(self.spec["cert_expiry_warning_days"]))
                self.probe.details["cert"] = cert
                self.probe.details["server_name"] = self.server_name
                self.probe.details.update(session)
        finally:
            conn.abort()
        if self.credential is not None and not want_tls:
            self.probe.warnings.append("login without TLS (tls: disable): the session is not encrypted")
        return conn.peer_ip

    def remaining(self) -> float:
        """Seconds left of the check's timeout (for a driver's own timeouts)."""
        return self.deadline - time.monotonic()


def first_line(exc: BaseException) -> str:
    """A driver's error message on one line, at most 500 characters."""
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines)[:500] if lines else type(exc).__name__


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


def assert_row(expected: Any, row: Sequence[Any] | None, probe: Probe) -> None:
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



# --- the spec -----------------------------------------------------------------------------------


def _scalar(value: Any) -> bool:
    return value is not None and (
        isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value))
    ) and not (isinstance(value, str) and len(value) > MAX_TEXT_FIELD)


class Expected(Field):
    """The expected first column (a scalar) or first row (a list of scalars) of the query's result."""

    def parse(self, value: Any, name: str, ctx: Mapping[str, Any]) -> Any:
        if isinstance(value, list):
            if not 1 <= len(value) <= MAX_EXPECTED:
                raise CheckSpecError(name, f"a row must have 1 to {MAX_EXPECTED} values")
            for i, item in enumerate(value):
                if not _scalar(item):
                    raise CheckSpecError(f"{name}.{i}", "must be a string, number or boolean")
            return list(value)
        if not _scalar(value):
            raise CheckSpecError(
                name, "must be a string, number or boolean (first column) or a list of them (first row)"
            )
        return value

    def value_schema(self) -> JSON:
        scalar = {"type": ["string", "number", "boolean"], "maxLength": MAX_TEXT_FIELD}
        return {"anyOf": [scalar, {"type": "array", "items": scalar, "minItems": 1, "maxItems": MAX_EXPECTED}]}


def _database_name(value: str, name: str) -> str:
    if CTL_RE.search(value.replace(" ", "")):
        raise CheckSpecError(name, "must not contain control characters")
    return value


def _read_query(value: str, name: str) -> str:
    query = value.strip().rstrip(";").rstrip()
    match = _FIRST_WORD_RE.match(query)
    if match is None or match.group(1).upper() not in READ_QUERY_KEYWORDS:
        raise CheckSpecError(name, f"must be one read-only statement starting with {', '.join(READ_QUERY_KEYWORDS)}")
    return query


#: The spec of both database checks (after ``target``).
FIELDS: dict[str, Field] = {
    "tls": Text(choices=TLS_MODES, fold=str.lower, default="verify-full",
                description="verify-full: TLS with chain and name verified; require: TLS, not verified; "
                "disable: no TLS (any case)"),
    "server_name": SERVER_NAME,
    "cert_expiry_warning_days": CERT_EXPIRY_WARNING_DAYS,
    "database": Text(max_length=64, normalize=_database_name,
                     description="database to log in to (default: the credential's user name); needs credential"),
    "credential": CREDENTIAL,
    "query": Text(max_length=MAX_QUERY, normalize=_read_query,
                  description=f"one read-only statement starting with {', '.join(READ_QUERY_KEYWORDS)}, run in a "
                  "read-only transaction that is rolled back; needs credential"),
    "expected": Expected(description="the query's expected first column (a value) or first row (a list of "
                         "values); numbers compare numerically; needs query"),
}
RULES: tuple[Rule, ...] = (
    Requires("database", "credential", "needs credential: the database is chosen at login"),
    Requires("query", "credential", "needs credential: the query runs after a login"),
    Requires("expected", "query", "needs query"),
)


def check_type(name: str, description: str, run: Runner, port: int) -> CheckType:
    """The declaration of a database check type: the shared spec and data protection, its own runner."""
    example = {"type": name, "target": f"db.example.internal:{port}", "credential": "db-probe",
               "query": "SELECT 1", "expected": 1}
    return CheckType(name=name, description=description, target=HOST_PORT_TARGET, fields=FIELDS, rules=RULES,
                     run=run, example=example, protect=Protect(content=frozenset({"first_row", "server_version"})))
