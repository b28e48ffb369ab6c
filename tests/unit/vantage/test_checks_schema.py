"""The JSON Schema of check specs: valid 2020-12, derived from the validator's own declarations.

What the validator accepts, the schema accepts (raw input and the normalised spec); what breaks a
rule the schema can state — a type, a range, an enumeration, a required or unknown field, a rule
between sibling fields — both refuse.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from vantage.checks import CHECK_TYPES, CheckSpecError, check_fields, spec_schema, specs_schema, validate_spec
from vantage.checks.spec import all_types

PIN = "SHA256:" + "A" * 43

VALID: list[dict[str, Any]] = [
    {"type": "http", "target": "https://Example.COM/ä?q=ü#frag"},
    {"type": "http", "target": " http://127.0.0.1:8080/x ", "method": "post", "expected_status": [204, 200],
     "headers": {"X-Foo": "bar", "authorization": "Bearer x"}, "body": "", "keyword": "ok", "timeout_s": 2},
    {"type": "http", "target": "http://h/", "expected_status": 201, "follow_redirects": False, "verify_tls": False,
     "cert_expiry_warning_days": 0, "max_body_bytes": 0, "method": "HEAD"},
    {"type": "http", "target": "http://[::1]:8080/", "keyword_absent": "error", "timeout_s": 120},
    {"type": "tcp", "target": "[::1]:443", "send": "PING\r\n", "expect": "PONG"},
    {"type": "tcp", "target": "Host.Example:22"},
    {"type": "dns", "target": "example.com", "record_type": "mx", "resolver": "[::1]:5353",
     "expected": ["mail.example.com"]},
    {"type": "dns", "target": "127.0.0.1", "record_type": "PTR", "resolver": "10.0.0.53"},
    {"type": "dns", "target": "bücher.example"},
    {"type": "tls", "target": "db.internal:5432", "server_name": "db.example.com", "verify": False},
    {"type": "ssh", "target": "SFTP.example.com:22"},
    {"type": "ssh", "target": "h:22", "host_key_sha256": [PIN, "B" * 43 + "="], "credential": "sftp",
     "sftp": {"list_dir": "/upload"}},
    {"type": "ssh", "target": "h:22", "host_key_sha256": PIN},
    {"type": "postgres", "target": "10.0.0.5:5432", "tls": "REQUIRE", "server_name": "db", "credential": "ro",
     "database": "app", "query": " select 1; ", "expected": [1, "x", True]},
    {"type": "mysql", "target": "db:3306", "tls": "disable", "credential": "ro", "query": "SHOW VARIABLES",
     "expected": 0.5},
    {"type": "smtp", "target": "relay.internal:587", "credential": "mail-probe", "expect_banner": "ESMTP",
     "ehlo_name": "probe.example"},
    {"type": "smtp", "target": "relay.internal:25", "tls": "None"},
    {"type": "smtp", "target": "relay.internal:25", "tls": None, "credential": "mail"},
    {"type": "http", "target": "http://h/", "method": None, "keyword": "x", "max_body_bytes": None},
    {"type": "imap", "target": "mail.internal:993", "tls": "starttls", "verify_tls": False, "credential": "m"},
    {"type": "http_multistep", "target": "https://orders.internal/", "credential": "orders-api", "steps": [
        {"name": "login", "method": "POST", "url": "/api/login", "headers": {"Content-Type": "application/json"},
         "body": '{"user": "${credential.username}", "password": "${credential.password}"}',
         "expected_status": 200, "extract": {"token": {"json": "$.token"}, "sid": {"header": "X-Session"},
                                             "csrf": {"regex": 'value="([^"]+)"', "group": 1}}},
        {"url": "/api/orders?limit=1&t=${token}", "headers": {"Authorization": "Bearer ${token}"},
         "json": [{"path": "$.status", "equals": "ok"}, {"path": "$.items[0]", "equals": {"id": 1}}]},
    ]},
]

# Each breaks a rule the schema states; the field the validator names is given.
INVALID: list[tuple[dict[str, Any], str]] = [
    ({"type": "http", "target": "http://h/", "keywrod": "x"}, "keywrod"),
    ({"type": "http"}, "target"),
    ({"type": "http", "target": "ftp://h/"}, "target"),
    ({"type": "http", "target": "http://h/", "timeout_s": 0}, "timeout_s"),
    ({"type": "http", "target": "http://h/", "timeout_s": "5"}, "timeout_s"),
    ({"type": "http", "target": "http://h/", "timeout_s": True}, "timeout_s"),
    ({"type": "http", "target": "http://h/", "method": "TRACE"}, "method"),
    ({"type": "http", "target": "http://h/", "headers": ["X"]}, "headers"),
    ({"type": "http", "target": "http://h/", "headers": {"X-Foo": 1}}, "headers.X-Foo"),
    ({"type": "http", "target": "http://h/", "headers": {"X-Foo": "a\r\nb"}}, "headers.X-Foo"),
    ({"type": "http", "target": "http://h/", "headers": {"Bad Name": "a"}}, "headers.Bad Name"),
    ({"type": "http", "target": "http://h/", "headers": {"content-LENGTH": "5"}}, "headers.content-LENGTH"),
    ({"type": "http", "target": "http://h/", "expected_status": 99}, "expected_status"),
    ({"type": "http", "target": "http://h/", "expected_status": []}, "expected_status"),
    ({"type": "http", "target": "http://h/", "expected_status": ["200"]}, "expected_status"),
    ({"type": "http", "target": "http://h/", "keyword": ""}, "keyword"),
    ({"type": "http", "target": "http://h/", "follow_redirects": "yes"}, "follow_redirects"),
    ({"type": "http", "target": "http://h/", "max_body_bytes": 1.5}, "max_body_bytes"),
    ({"type": "http", "target": "http://h/", "max_body_bytes": 0, "keyword": "x"}, "max_body_bytes"),
    ({"type": "http", "target": "http://h/", "method": "head", "keyword": "x"}, "keyword"),
    ({"type": "tcp", "target": "h"}, "target"),
    ({"type": "tcp", "target": "h:22", "send": ["x"]}, "send"),
    ({"type": "tcp", "target": "h:1", "method": "GET"}, "method"),
    ({"type": "dns", "target": "example.com", "record_type": "SOA"}, "record_type"),
    ({"type": "dns", "target": "example.com", "expected": "1.2.3.4"}, "expected"),
    ({"type": "dns", "target": "example.com", "expected": ["1.2.3.4", ""]}, "expected.1"),
    ({"type": "tls", "target": "h:443", "verify": "false"}, "verify"),
    ({"type": "tls", "target": "h:443", "verify_tls": False}, "verify_tls"),
    ({"type": "ssh", "target": "h:22", "host_key_sha256": "SHA256:short"}, "host_key_sha256.0"),
    ({"type": "ssh", "target": "h:22", "host_key_sha256": []}, "host_key_sha256"),
    ({"type": "ssh", "target": "h:22", "credential": "sftp"}, "host_key_sha256"),
    ({"type": "ssh", "target": "h:22", "host_key_sha256": PIN, "sftp": {"list_dir": "/"}}, "sftp"),
    ({"type": "ssh", "target": "h:22", "host_key_sha256": PIN, "credential": "c", "sftp": {}}, "sftp"),
    ({"type": "ssh", "target": "h:22", "host_key_sha256": PIN, "credential": "c", "sftp": {"lst_dir": "/"}},
     "sftp.lst_dir"),
    ({"type": "ssh", "target": "h:22", "host_key_sha256": PIN, "credential": "pass word!"}, "credential"),
    ({"type": "postgres", "target": "db:5432", "tls": "prefer"}, "tls"),
    ({"type": "postgres", "target": "db:5432", "query": "SELECT 1"}, "query"),
    ({"type": "mysql", "target": "db:3306", "expected": 1}, "expected"),
    ({"type": "mysql", "target": "db:3306", "database": "app"}, "database"),
    ({"type": "mysql", "target": "db:3306", "credential": "ro", "query": "SELECT 1", "expected": []}, "expected"),
    ({"type": "mysql", "target": "db:3306", "credential": "ro", "query": "SELECT 1", "expected": [None]},
     "expected.0"),
    ({"type": "mysql", "target": "db:3306", "credential": "ro", "query": "SELECT 1", "expected": {"a": 1}},
     "expected"),
    ({"type": "smtp", "target": "h:25", "tls": "NONE", "credential": "mail"}, "credential"),
    ({"type": "imap", "target": "h:993", "ehlo_name": "x"}, "ehlo_name"),
    ({"type": "http_multistep", "target": "http://h/", "steps": []}, "steps"),
    ({"type": "http_multistep", "target": "http://h/"}, "steps"),
    ({"type": "http_multistep", "target": "http://h/", "steps": [{"url": "/a", "methd": "GET"}]}, "steps.0.methd"),
    ({"type": "http_multistep", "target": "http://h/", "steps": [{"name": "no url"}]}, "steps.0.url"),
    ({"type": "http_multistep", "target": "http://h/", "steps": [{"url": "/a", "json": [{"path": "$.a"}]}]},
     "steps.0.json.0"),
    ({"type": "http_multistep", "target": "http://h/", "steps": [{"url": "/a", "extract": {"t": {"xml": "/a"}}}]},
     "steps.0.extract.t"),
    ({"type": "http_multistep", "target": "http://h/",
      "steps": [{"url": "/a", "headers": {"Content-Length": "1"}}]}, "steps.0.headers.Content-Length"),
    ({"type": "http_multistep", "target": "http://h/", "steps": [{"url": "/a", "method": "HEAD", "keyword": "x"}]},
     "steps.0.keyword"),
]


@functools.cache
def validator(check_type: str | None = None) -> Draft202012Validator:
    """A validator for one type's schema, or (``None``) for any spec; the schema itself checked first."""
    schema = specs_schema() if check_type is None else spec_schema(check_type)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@pytest.mark.parametrize("check_type", CHECK_TYPES)
def test_each_type_schema_is_valid_2020_12_and_lists_exactly_its_fields(check_type: str) -> None:
    schema = spec_schema(check_type)
    validator(check_type)
    assert set(schema["properties"]) == check_fields(check_type)
    assert schema["properties"]["type"] == {"const": check_type}
    assert schema["additionalProperties"] is False
    assert {"type", "target"} <= set(schema["required"])
    for name, field in schema["properties"].items():
        assert name == "type" or field.get("description"), f"{check_type}.{name} has no description"


@pytest.mark.parametrize("check_type", CHECK_TYPES)
def test_each_type_example_is_valid_and_shown(check_type: str) -> None:
    example = all_types()[check_type].example
    assert validate_spec(example)["type"] == check_type
    assert spec_schema(check_type)["examples"] == [example]
    assert validator(check_type).is_valid(example)


@pytest.mark.parametrize("spec", VALID, ids=lambda spec: str(spec["type"]))
def test_what_the_validator_accepts_the_schema_accepts(spec: dict[str, Any]) -> None:
    normalised = validate_spec(spec)
    schema = validator()
    for candidate in (spec, normalised):
        errors = [error.message for error in schema.iter_errors(candidate)]
        assert not errors, errors
    assert validate_spec(normalised) == normalised


@pytest.mark.parametrize(("spec", "field"), INVALID, ids=lambda value: str(value)[:60] if isinstance(value, dict) else value)
def test_what_the_schema_can_state_both_refuse(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(CheckSpecError) as info:
        validate_spec(spec)
    assert info.value.field == field
    assert not validator(spec["type"]).is_valid(spec), "the schema accepts what the validator refuses"
    assert not validator().is_valid(spec)


def test_the_schema_of_any_spec_is_one_of_the_types() -> None:
    inline = specs_schema()
    assert [alternative["properties"]["type"]["const"] for alternative in inline["oneOf"]] == list(CHECK_TYPES)
    assert not validator().is_valid({"type": "gopher", "target": "x"})

    ref = specs_schema("#/components/schemas/check-{type}")
    assert ref["oneOf"][0] == {"$ref": "#/components/schemas/check-http"}
    assert ref["discriminator"] == {
        "propertyName": "type",
        "mapping": {name: f"#/components/schemas/check-{name}" for name in CHECK_TYPES},
    }
    # As an OpenAPI 3.1 document would hold it: the references resolve and the checks still bite.
    document = {**ref, "components": {"schemas": {f"check-{name}": spec_schema(name) for name in CHECK_TYPES}}}
    resolved = Draft202012Validator(document)
    assert resolved.is_valid({"type": "tcp", "target": "h:22"})
    assert not resolved.is_valid({"type": "tcp", "target": "h:22", "expect": 5})


def test_unknown_type() -> None:
    with pytest.raises(CheckSpecError) as info:
        spec_schema("gopher")
    assert info.value.field == "type" and "one of http" in info.value.message
