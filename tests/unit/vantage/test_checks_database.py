"""``postgres`` / ``mysql`` spec validation, the MySQL greeting parser, result comparison and data
protection (the real-server tests are in ``tests/integration/test_checks_database_servers.py``)."""

from __future__ import annotations

import decimal
import struct
from typing import Any

import pytest

from vantage.checks import DataProtection, validate_spec
from vantage.checks.database import _matches, assert_row
from vantage.checks.mysql import parse_greeting
from vantage.checks.result import CheckFailure, Probe
from vantage.checks.spec import CheckSpecError


def _error(spec: dict[str, Any]) -> CheckSpecError:
    with pytest.raises(CheckSpecError) as info:
        validate_spec(spec)
    return info.value


@pytest.mark.parametrize("check_type", ["postgres", "mysql"])
def test_defaults_and_idempotence(check_type: str) -> None:
    norm = validate_spec({"type": check_type, "target": "DB.example.com:5432"})
    assert norm == {"type": check_type, "target": "db.example.com:5432", "timeout_s": 10.0, "tls": "verify-full",
                    "server_name": None, "cert_expiry_warning_days": 14, "database": None, "credential": None,
                    "query": None, "expected": None}
    assert validate_spec(norm) == norm


def test_full_spec() -> None:
    norm = validate_spec({"type": "postgres", "target": "10.0.0.5:5432", "tls": "REQUIRE", "server_name": "db",
                          "credential": "ro", "database": "app", "query": " select 1; ", "expected": [1, "x", True]})
    assert norm["tls"] == "require" and norm["query"] == "select 1" and norm["expected"] == [1, "x", True]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"tls": "prefer"}, "tls"),
        ({"query": "SELECT 1"}, "query"),  # needs a credential
        ({"credential": "ro", "query": "DELETE FROM t"}, "query"),
        ({"credential": "ro", "query": "  drop table t"}, "query"),
        ({"credential": "ro", "query": ""}, "query"),
        ({"expected": 1}, "expected"),  # needs a query
        ({"credential": "ro", "query": "SELECT 1", "expected": {"a": 1}}, "expected"),
        ({"credential": "ro", "query": "SELECT 1", "expected": []}, "expected"),
        ({"credential": "ro", "query": "SELECT 1", "expected": [None]}, "expected.0"),
        ({"credential": "ro", "query": "SELECT 1", "expected": float("nan")}, "expected"),
        ({"database": "app"}, "database"),  # needs a credential
        ({"server_name": "bad name"}, "server_name"),
        ({"sftp": {}}, "sftp"),
    ],
)
def test_invalid_fields_are_named(extra: dict[str, Any], field: str) -> None:
    assert _error({"type": "mysql", "target": "db:3306", **extra}).field == field


@pytest.mark.parametrize("query", ["SELECT 1", "with x as (select 1) select * from x", "SHOW VARIABLES",
                                   "VALUES (1)", "(SELECT 1)", "TABLE t"])
def test_read_queries_are_accepted(query: str) -> None:
    assert validate_spec({"type": "postgres", "target": "db:5432", "credential": "c", "query": query})["query"]


def _greeting(version: bytes, caps: int) -> bytes:
    return (b"\x0a" + version + b"\x00" + struct.pack("<I", 42) + b"12345678" + b"\x00"
            + struct.pack("<H", caps & 0xFFFF) + b"\x2d" + struct.pack("<H", 2) + struct.pack("<H", caps >> 16)
            + b"\x15" + b"\x00" * 10)


def testparse_greeting() -> None:
    assert parse_greeting(_greeting(b"5.5.5-10.11.6-MariaDB-0+deb12u1", 0x0800 | 0x0200)) == (
        "10.11.6-MariaDB-0+deb12u1", 0x0A00)
    assert parse_greeting(_greeting(b"8.0.36", 0x000F_A200))[1] & 0x0800 == 0
    with pytest.raises(CheckFailure, match="error 1130: Host 'x' is not allowed"):
        parse_greeting(b"\xff" + struct.pack("<H", 1130) + b"Host 'x' is not allowed to connect")
    with pytest.raises(CheckFailure, match="not a MySQL server"):
        parse_greeting(b"HTTP/1.1 400 Bad Request\r\n")
    with pytest.raises(CheckFailure, match="truncated"):
        parse_greeting(b"\x0a8.0\x00abc")


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        (42, 42, True), (42, decimal.Decimal("42.0"), True), (0.5, 0.5, True), (42, "42", True),
        (42, 43, False), ("ok", "ok", True), ("ok", b"ok", True), ("1", 1, True), ("ok", "OK", False),
        (True, True, True), (True, 1, True), (False, 0, True), (True, False, False), (True, "t", True),
        ("x", None, False),
    ],
)
def test_matches(expected: Any, actual: Any, ok: bool) -> None:
    assert _matches(expected, actual) is ok


def test_assert_row_never_quotes_the_actual_value() -> None:
    probe = Probe()
    with pytest.raises(CheckFailure) as info:
        assert_row("expected-value", ("response-canary", 2), probe)
    assert "response-canary" not in str(info.value) and "expected-value" in str(info.value)
    assert probe.details["first_row"] == ["response-canary", "2"]
    with pytest.raises(CheckFailure, match="got 2 values"):
        assert_row([1], ("a", 2), Probe())
    with pytest.raises(CheckFailure, match="no rows"):
        assert_row(1, None, Probe())
    assert_row(None, None, Probe())  # no expectation: nothing to assert


def test_data_protection_strips_results_versions_and_listings() -> None:
    result = {"ok": True, "error": None, "details": {
        "first_row": ["canary"], "server_version": "10.11.6-MariaDB", "banner": "SSH-2.0-OpenSSH_9.2",
        "sftp": {"listing": ["a.csv"], "entries": 1}, "host_key": {"sha256": "SHA256:x"}, "peer_ip": "10.1.2.3",
        "cert": {"san": ["IP:10.1.2.3"]}}}
    out = DataProtection(strip_content=True, strip_ips=True).apply(result)
    assert out["details"] == {"sftp": {"entries": 1}, "host_key": {"sha256": "SHA256:x"},
                              "cert": {"san": ["IP:<redacted>"]}}
