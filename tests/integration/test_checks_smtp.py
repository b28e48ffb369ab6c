"""The ``smtp`` check against a real Exim (STARTTLS, AUTH PLAIN/LOGIN) run by the test on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from mailservers import CANARY_PASSWORD, MAIL_USER, Exim, free_port, run_exim

from vantage.checks import CheckOptions, DataProtection, run_check
from vantage.checks.credentials import CredentialStore

STORE = CredentialStore.from_mapping(
    {
        "credentials": {
            "mail": {"username": MAIL_USER, "password": CANARY_PASSWORD},
            "wrong": {"username": MAIL_USER, "password": CANARY_PASSWORD + "-wrong"},
            "nopass": {"username": MAIL_USER},
        }
    }
)


@pytest.fixture(scope="module")
def exim() -> Iterator[Exim]:
    with run_exim() as server:
        yield server


def options(server: Exim) -> CheckOptions:
    return CheckOptions(ca_bundle=str(server.certs.ca), credentials=STORE)


def run(spec: dict[str, Any], opts: CheckOptions) -> dict[str, Any]:
    result = asyncio.run(run_check(spec, opts)).to_dict()
    assert CANARY_PASSWORD not in json.dumps(result)  # never echo a secret, success or failure
    return result


def test_starttls_and_auth_succeed_with_phases(exim: Exim) -> None:
    spec = {"type": "smtp", "target": f"127.0.0.1:{exim.port}", "server_name": "mail.test",
            "credential": "mail", "expect_banner": "ESMTP"}
    result = run(spec, options(exim))
    assert result["ok"], result["error"]
    assert set(result["phases"]) >= {"connect_ms", "banner_ms", "ehlo_ms", "tls_ms", "auth_ms"}
    details = result["details"]
    assert details["authenticated"] is True and "STARTTLS" not in details["extensions"]
    assert "PLAIN" in details["auth_mechanisms"] and details["tls"]["protocol"].startswith("TLS")
    assert "mail.test ESMTP Exim" in details["banner"]


def test_plain_session_without_tls(exim: Exim) -> None:
    result = run({"type": "smtp", "target": f"localhost:{exim.port}", "tls": "none"}, options(exim))
    assert result["ok"], result["error"]
    assert "STARTTLS" in result["details"]["extensions"] and "auth_ms" not in result["phases"]


def test_wrong_password_is_an_auth_failure_without_server_text_in_error(exim: Exim) -> None:
    spec = {"type": "smtp", "target": f"127.0.0.1:{exim.port}", "credential": "wrong"}
    result = run(spec, options(exim))
    assert not result["ok"]
    assert result["error"] == "authentication failed for credential 'wrong' (535)"
    assert result["details"]["server_reply"]  # the server's text is content, kept in details
    stripped = DataProtection(strip_content=True).apply(result)
    assert "server_reply" not in stripped["details"] and "banner" not in stripped["details"]


@pytest.mark.parametrize("mechanism", ["CRAM-MD5", "PLAIN", "LOGIN"])
def test_each_auth_mechanism_succeeds_and_fails_once(mechanism: str) -> None:
    with run_exim(mechanisms=(mechanism,)) as server:
        spec = {"type": "smtp", "target": f"127.0.0.1:{server.port}", "server_name": "mail.test", "credential": "mail"}
        result = run(spec, options(server))
        assert result["ok"], result["error"]
        assert result["details"]["auth_mechanisms"] == [mechanism]
        assert result["details"]["auth_mechanism"] == mechanism
        result = run({**spec, "credential": "wrong"}, options(server))
        assert result["error"] == "authentication failed for credential 'wrong' (535)"


def test_cram_md5_is_preferred_when_offered() -> None:
    with run_exim(mechanisms=("PLAIN", "LOGIN", "CRAM-MD5")) as server:
        spec = {"type": "smtp", "target": f"127.0.0.1:{server.port}", "server_name": "mail.test", "credential": "mail"}
        result = run(spec, options(server))
        assert result["ok"], result["error"]
        assert result["details"]["auth_mechanism"] == "CRAM-MD5"


def test_implicit_tls_session() -> None:
    """SMTPS (port 465 style): TLS first, then the banner, timed separately."""
    with run_exim(tls_on_connect=True) as server:
        spec = {"type": "smtp", "target": f"127.0.0.1:{server.port}", "server_name": "mail.test", "tls": "implicit",
                "credential": "mail"}
        result = run(spec, options(server))
        assert result["ok"], result["error"]
        assert set(result["phases"]) >= {"connect_ms", "tls_ms", "banner_ms", "ehlo_ms", "auth_ms"}
        assert result["details"]["tls"]["protocol"].startswith("TLS") and result["details"]["authenticated"]


def test_credential_without_password_and_unknown_credential(exim: Exim) -> None:
    target = f"127.0.0.1:{exim.port}"
    result = run({"type": "smtp", "target": target, "credential": "nopass"}, options(exim))
    assert result["error"] == "credential 'nopass' has no password, which SMTP AUTH needs"
    result = run({"type": "smtp", "target": target, "credential": "other"}, options(exim))
    assert result["error"].startswith("unknown credential 'other'")


def test_untrusted_certificate_fails_starttls(exim: Exim) -> None:
    result = run({"type": "smtp", "target": f"127.0.0.1:{exim.port}"}, CheckOptions(credentials=STORE))
    assert not result["ok"]
    assert result["error"].startswith("TLS certificate verify failed (STARTTLS)")


def test_name_mismatch_fails_and_verify_off_reports(exim: Exim) -> None:
    spec = {"type": "smtp", "target": f"127.0.0.1:{exim.port}", "server_name": "other.test"}
    result = run(spec, options(exim))
    assert not result["ok"] and "TLS certificate verify failed" in result["error"]
    result = run({**spec, "verify_tls": False}, options(exim))
    assert result["ok"] and result["details"]["tls"]["san"][0] == "DNS:mail.test"


def test_expired_certificate_fails_verification() -> None:
    with run_exim(expired=True) as server:
        result = run({"type": "smtp", "target": f"127.0.0.1:{server.port}", "server_name": "mail.test"},
                     options(server))
        assert not result["ok"] and "expired" in result["error"]
        result = run({"type": "smtp", "target": f"127.0.0.1:{server.port}", "verify_tls": False}, options(server))
        assert result["ok"] and any("certificate expired" in w for w in result["details"]["warnings"])


def test_implicit_tls_against_a_starttls_port_fails_readably(exim: Exim) -> None:
    spec = {"type": "smtp", "target": f"127.0.0.1:{exim.port}", "tls": "implicit", "timeout_s": 3}
    result = run(spec, options(exim))
    assert not result["ok"] and result["error"].startswith("TLS handshake failed")


def test_banner_assertion(exim: Exim) -> None:
    result = run({"type": "smtp", "target": f"127.0.0.1:{exim.port}", "tls": "none", "expect_banner": "Postfix"},
                 options(exim))
    assert result["error"] == "expected 'Postfix' not found in the SMTP banner"


def test_refused() -> None:
    result = run({"type": "smtp", "target": f"127.0.0.1:{free_port()}"}, CheckOptions())
    assert result["error"].startswith("connection refused to 127.0.0.1:")


def test_timeout_when_the_server_never_greets() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        result = run({"type": "smtp", "target": f"127.0.0.1:{port}", "timeout_s": 0.5}, CheckOptions())
    assert not result["ok"]
    assert result["error"] == "timed out after 0.5 s during banner"
