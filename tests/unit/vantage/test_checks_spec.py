"""validate_spec: defaults, normalisation, and errors that name the offending field."""

from __future__ import annotations

from typing import Any

import pytest

from vantage.checks import CheckSpecError, check_fields, validate_spec


def test_http_defaults_filled() -> None:
    spec = validate_spec({"type": "http", "target": "https://Example.COM/ä?q=ü#frag"})
    assert spec == {
        "type": "http",
        "target": "https://example.com/%C3%A4?q=%C3%BC",
        "timeout_s": 10.0,
        "method": "GET",
        "headers": {},
        "body": None,
        "expected_status": None,
        "max_body_bytes": 65536,
        "keyword": None,
        "keyword_absent": None,
        "follow_redirects": True,
        "verify_tls": True,
        "cert_expiry_warning_days": 14,
    }


@pytest.mark.parametrize(
    "spec",
    [
        {
            "type": "http",
            "target": "http://127.0.0.1:8080/x",
            "method": "post",
            "expected_status": [204, 200],
            "headers": {"X-Foo": "bar"},
            "body": "{}",
            "keyword": "ok",
            "timeout_s": 2,
        },
        {"type": "tcp", "target": "[::1]:443", "send": "PING\r\n", "expect": "PONG"},
        {
            "type": "dns",
            "target": "example.com",
            "record_type": "mx",
            "resolver": "[::1]:5353",
            "expected": ["mail.example.com"],
        },
        {"type": "dns", "target": "127.0.0.1", "record_type": "PTR", "resolver": "10.0.0.53"},
        {"type": "tls", "target": "db.internal:5432", "server_name": "db.example.com", "verify": False},
    ],
)
def test_normalisation_is_idempotent(spec: dict[str, Any]) -> None:
    once = validate_spec(spec)
    assert validate_spec(once) == once
    assert set(once) == check_fields(spec["type"])


def test_normalised_values() -> None:
    spec = validate_spec(
        {"type": "http", "target": "http://h/", "method": "post", "expected_status": [204, 200, 204]}
    )
    assert spec["method"] == "POST"
    assert spec["expected_status"] == [200, 204]
    assert validate_spec({"type": "http", "target": "http://h/", "expected_status": 201})[
        "expected_status"
    ] == [201]
    assert validate_spec({"type": "dns", "target": "x.org", "record_type": "txt"})["record_type"] == "TXT"
    assert validate_spec({"type": "tcp", "target": "Host.Example:22"})["target"] == "host.example:22"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"target": "http://h/"}, "type"),
        ({"type": "ftp", "target": "ftp://h/"}, "type"),
        ({"type": "http"}, "target"),
        ({"type": "http", "target": "http://h/", "keywrod": "x"}, "keywrod"),
        ({"type": "http", "target": "http://h/", "timeout": 5}, "timeout"),
        ({"type": "tcp", "target": "h:1", "method": "GET"}, "method"),
        ({"type": "http", "target": "http://h/", "timeout_s": 0}, "timeout_s"),
        ({"type": "http", "target": "http://h/", "timeout_s": 121}, "timeout_s"),
        ({"type": "http", "target": "http://h/", "timeout_s": "5"}, "timeout_s"),
        ({"type": "http", "target": "http://h/", "timeout_s": True}, "timeout_s"),
        ({"type": "http", "target": "ftp://h/"}, "target"),
        ({"type": "http", "target": "http://user:pw@h/"}, "target"),
        ({"type": "http", "target": "http://h/a\r\nX: y"}, "target"),
        ({"type": "http", "target": "http:///path"}, "target"),
        ({"type": "http", "target": "http://h/a b"}, "target"),
        ({"type": "http", "target": "http://h:99999/"}, "target"),
        ({"type": "http", "target": "http://h/", "method": "TRACE"}, "method"),
        ({"type": "http", "target": "http://h/", "headers": ["X"]}, "headers"),
        ({"type": "http", "target": "http://h/", "headers": {"X-Foo": 1}}, "headers.X-Foo"),
        ({"type": "http", "target": "http://h/", "headers": {"X-Foo": "a\r\nb"}}, "headers.X-Foo"),
        ({"type": "http", "target": "http://h/", "headers": {"Bad Name": "a"}}, "headers.Bad Name"),
        (
            {"type": "http", "target": "http://h/", "headers": {"Content-Length": "5"}},
            "headers.Content-Length",
        ),
        ({"type": "http", "target": "http://h/", "body": 5}, "body"),
        ({"type": "http", "target": "http://h/", "expected_status": 99}, "expected_status"),
        ({"type": "http", "target": "http://h/", "expected_status": []}, "expected_status"),
        ({"type": "http", "target": "http://h/", "expected_status": ["200"]}, "expected_status"),
        ({"type": "http", "target": "http://h/", "keyword": ""}, "keyword"),
        ({"type": "http", "target": "http://h/", "keyword_absent": 3}, "keyword_absent"),
        ({"type": "http", "target": "http://h/", "follow_redirects": "yes"}, "follow_redirects"),
        ({"type": "http", "target": "http://h/", "verify_tls": 1}, "verify_tls"),
        ({"type": "http", "target": "http://h/", "cert_expiry_warning_days": -1}, "cert_expiry_warning_days"),
        ({"type": "http", "target": "http://h/", "max_body_bytes": 1.5}, "max_body_bytes"),
        ({"type": "http", "target": "http://h/", "max_body_bytes": 0, "keyword": "x"}, "max_body_bytes"),
        ({"type": "http", "target": "http://h/", "method": "HEAD", "keyword": "x"}, "keyword"),
        ({"type": "tcp", "target": "h"}, "target"),
        ({"type": "tcp", "target": "::1:443"}, "target"),
        ({"type": "tcp", "target": "h:0"}, "target"),
        ({"type": "tcp", "target": "bad_-.name..x:22"}, "target"),
        ({"type": "tcp", "target": "h:22", "expect": ""}, "expect"),
        ({"type": "tcp", "target": "h:22", "send": ["x"]}, "send"),
        ({"type": "dns", "target": "a..b"}, "target"),
        ({"type": "dns", "target": "example.com", "record_type": "SOA"}, "record_type"),
        ({"type": "dns", "target": "example.com", "resolver": "dns.google"}, "resolver"),
        ({"type": "dns", "target": "example.com", "resolver": "1.1.1.1:0"}, "resolver"),
        ({"type": "dns", "target": "example.com", "expected": "1.2.3.4"}, "expected"),
        ({"type": "dns", "target": "example.com", "expected": ["1.2.3.4", ""]}, "expected.1"),
        ({"type": "tls", "target": "h:443", "verify": "false"}, "verify"),
        ({"type": "tls", "target": "h:443", "server_name": "bad name"}, "server_name"),
        ({"type": "tls", "target": "h:443", "verify_tls": False}, "verify_tls"),
    ],
)
def test_errors_name_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(CheckSpecError) as info:
        validate_spec(spec)
    assert info.value.field == field
    assert str(info.value) == f"{field}: {info.value.message}"
    assert isinstance(info.value, ValueError)


def test_typo_suggests_the_right_field() -> None:
    with pytest.raises(CheckSpecError) as info:
        validate_spec({"type": "http", "target": "http://h/", "keywrod": "x"})
    assert "did you mean 'keyword'" in info.value.message


def test_not_a_mapping() -> None:
    with pytest.raises(CheckSpecError) as info:
        validate_spec(["type", "http"])  # type: ignore[arg-type]
    assert info.value.field == "spec"


def test_check_fields_unknown_type() -> None:
    with pytest.raises(CheckSpecError):
        check_fields("gopher")
