"""The ``imap`` check against a real Dovecot (implicit TLS and STARTTLS, LOGIN) run by the test on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from mailservers import CANARY_PASSWORD, MAIL_USER, Dovecot, free_port, run_dovecot

from vantage.checks import CheckOptions, DataProtection, run_check
from vantage.checks.credentials import CredentialStore

STORE = CredentialStore.from_mapping(
    {
        "credentials": {
            "mail": {"username": MAIL_USER, "password": CANARY_PASSWORD},
            "wrong": {"username": MAIL_USER, "password": CANARY_PASSWORD + "-wrong"},
            "unicode": {"username": MAIL_USER, "password": "pässwörd-" + CANARY_PASSWORD},
        }
    }
)


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with run_dovecot() as server:
        yield server


def options(server: Dovecot) -> CheckOptions:
    return CheckOptions(ca_bundle=str(server.certs.ca), credentials=STORE)


def run(spec: dict[str, Any], opts: CheckOptions) -> dict[str, Any]:
    result = asyncio.run(run_check(spec, opts)).to_dict()
    assert CANARY_PASSWORD not in json.dumps(result)
    return result


def test_implicit_tls_login(dovecot: Dovecot) -> None:
    result = run({"type": "imap", "target": f"127.0.0.1:{dovecot.imaps_port}", "credential": "mail",
                  "expect_banner": "Dovecot"}, options(dovecot))
    assert result["ok"], result["error"]
    assert set(result["phases"]) >= {"connect_ms", "tls_ms", "banner_ms", "capability_ms", "auth_ms"}
    assert result["details"]["authenticated"] is True and result["details"]["tls"]["protocol"].startswith("TLS")


def test_starttls_login_with_server_name(dovecot: Dovecot) -> None:
    spec = {"type": "imap", "target": f"localhost:{dovecot.imap_port}", "tls": "starttls",
            "server_name": "mail.test", "credential": "mail"}
    result = run(spec, options(dovecot))
    assert result["ok"], result["error"]
    assert "STARTTLS" not in result["details"]["capabilities"]  # capabilities re-read after TLS
    assert result["details"]["tls"]["san"][0] == "DNS:mail.test"


def test_plain_reachability_and_data_protection(dovecot: Dovecot) -> None:
    result = run({"type": "imap", "target": f"127.0.0.1:{dovecot.imap_port}", "tls": "none"}, options(dovecot))
    assert result["ok"], result["error"]
    assert "STARTTLS" in result["details"]["capabilities"]
    stripped = DataProtection(strip_content=True, strip_ips=True).apply(result)
    assert "banner" not in stripped["details"] and "127.0.0.1" not in json.dumps(stripped)


def test_wrong_password(dovecot: Dovecot) -> None:
    for name in ("wrong", "unicode"):  # the second is sent as an IMAP literal
        result = run({"type": "imap", "target": f"127.0.0.1:{dovecot.imaps_port}", "credential": name},
                     options(dovecot))
        assert not result["ok"]
        assert result["error"] == f"login failed for credential '{name}' (NO [AUTHENTICATIONFAILED])"
        assert "server_reply" in result["details"]


def test_untrusted_certificate(dovecot: Dovecot) -> None:
    result = run({"type": "imap", "target": f"127.0.0.1:{dovecot.imaps_port}"}, CheckOptions())
    assert not result["ok"] and result["error"].startswith("TLS certificate verify failed")
    result = run({"type": "imap", "target": f"127.0.0.1:{dovecot.imap_port}", "tls": "starttls"}, CheckOptions())
    assert not result["ok"] and result["error"].startswith("TLS certificate verify failed")


def test_implicit_tls_on_a_plain_port(dovecot: Dovecot) -> None:
    result = run({"type": "imap", "target": f"127.0.0.1:{dovecot.imap_port}"}, options(dovecot))
    assert not result["ok"] and result["error"].startswith("TLS handshake failed")


def test_banner_assertion(dovecot: Dovecot) -> None:
    result = run({"type": "imap", "target": f"127.0.0.1:{dovecot.imaps_port}", "expect_banner": "Cyrus"},
                 options(dovecot))
    assert result["error"] == "expected 'Cyrus' not found in the IMAP greeting"


def test_refused_and_timeout() -> None:
    result = run({"type": "imap", "target": f"127.0.0.1:{free_port()}"}, CheckOptions())
    assert result["error"].startswith("connection refused to 127.0.0.1:")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        spec = {"type": "imap", "target": f"127.0.0.1:{silent.getsockname()[1]}", "tls": "none", "timeout_s": 0.5}
        result = run(spec, CheckOptions())
    assert result["error"] == "timed out after 0.5 s during the greeting"
