"""One failing check never breaks the checks running beside it.

The agent runs every check in one event loop. A check that hands its socket to a protocol library
or upgrades it to TLS must give the socket back through the transport that owns it: closing the
raw socket while a (TLS) transport still has it registered lets the next socket reuse the
descriptor, and that socket's connect then fails with ``RuntimeError: File descriptor N is used
by transport`` — a healthy monitor reported down because of another one.

Each case runs one failing check of a type that owns a TLS session, a library's connection or a
datagram endpoint (wrong password, untrusted certificate, wrong host key, port unreachable),
against a real server (or a closed port) on loopback, while healthy ``http`` checks against a
loopback HTTP server keep starting before, during and right after it; over many rounds not one
healthy check may fail, and the failing check must fail for its own reason every time.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from check_servers import mariadb_server, postgres_server, ssh_keygen, ssh_server
from mailservers import CANARY_PASSWORD, MAIL_USER, run_dovecot, run_exim

from vantage.checks import CheckOptions, run_check
from vantage.checks.credentials import CredentialStore

ROUNDS = 20
HEALTHY_DURING = 40  # healthy checks started at most while the failing check runs, one every 5 ms
HEALTHY_AFTER = 12  # healthy checks started at once when the failing check has finished
WRONG = "wrong-" + CANARY_PASSWORD
DB_USER = "vantage_probe"


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"healthy"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Case:
    spec: dict[str, Any]
    options: CheckOptions
    error: str  # the failing check's error starts with this, every round


def _store(**credentials: dict[str, str]) -> CredentialStore:
    return CredentialStore.from_mapping({"credentials": credentials})


@contextmanager
def _smtp_auth() -> Iterator[Case]:
    with run_exim() as exim:
        yield Case(
            {"type": "smtp", "target": f"127.0.0.1:{exim.port}", "server_name": "mail.test", "credential": "wrong"},
            CheckOptions(ca_bundle=str(exim.certs.ca), credentials=_store(wrong={"username": MAIL_USER,
                                                                                 "password": WRONG})),
            "authentication failed for credential 'wrong'",
        )


@contextmanager
def _smtp_untrusted() -> Iterator[Case]:
    with run_exim() as exim:
        yield Case({"type": "smtp", "target": f"127.0.0.1:{exim.port}"}, CheckOptions(),
                   "TLS certificate verify failed (STARTTLS)")


@contextmanager
def _imap_auth() -> Iterator[Case]:
    with run_dovecot() as dovecot:
        yield Case(
            {"type": "imap", "target": f"127.0.0.1:{dovecot.imaps_port}", "server_name": "mail.test",
             "credential": "wrong"},
            CheckOptions(ca_bundle=str(dovecot.certs.ca), credentials=_store(wrong={"username": MAIL_USER,
                                                                                    "password": WRONG})),
            "login failed for credential 'wrong'",
        )


@contextmanager
def _ssh_auth(tmp: Path) -> Iterator[Case]:
    key = tmp / "id_ed25519"
    ssh_keygen(key)
    with ssh_server(key.with_name("id_ed25519.pub").read_text(), "right-" + CANARY_PASSWORD) as sshd:
        yield Case(
            {"type": "ssh", "target": f"127.0.0.1:{sshd.port}", "host_key_sha256": sshd.host_key_sha256,
             "credential": "wrong"},
            CheckOptions(credentials=_store(wrong={"username": sshd.user, "password": WRONG})),
            "SSH authentication failed",
        )


@contextmanager
def _ssh_host_key(tmp: Path) -> Iterator[Case]:
    key = tmp / "id_ed25519"
    ssh_keygen(key)
    with ssh_server(key.with_name("id_ed25519.pub").read_text(), "right-" + CANARY_PASSWORD) as sshd:
        yield Case(
            {"type": "ssh", "target": f"127.0.0.1:{sshd.port}", "host_key_sha256": "SHA256:" + "A" * 43,
             "credential": "wrong"},
            CheckOptions(credentials=_store(wrong={"username": sshd.user, "password": WRONG})),
            "host key changed",
        )


def _db_pki(tmp: Path) -> tuple[Path, Path, Path]:
    ca = trustme.CA()
    leaf = ca.issue_cert("db.test", "127.0.0.1")
    paths = (tmp / "ca.pem", tmp / "server.crt", tmp / "server.key")
    ca.cert_pem.write_to_path(str(paths[0]))
    leaf.cert_chain_pems[0].write_to_path(str(paths[1]))
    leaf.private_key_pem.write_to_path(str(paths[2]))
    return paths


@contextmanager
def _postgres_auth(tmp: Path) -> Iterator[Case]:
    ca, cert, key = _db_pki(tmp)
    with postgres_server(tls=(cert, key), host_auth="scram-sha-256") as pg:
        pg.psql(f"CREATE ROLE {DB_USER} LOGIN PASSWORD 'right-{CANARY_PASSWORD}'")
        yield Case(
            {"type": "postgres", "target": f"127.0.0.1:{pg.port}", "server_name": "db.test", "credential": "wrong"},
            CheckOptions(ca_bundle=str(ca), credentials=_store(wrong={"username": DB_USER, "password": WRONG})),
            "PostgreSQL login failed",
        )


@contextmanager
def _mysql_auth(tmp: Path) -> Iterator[Case]:
    ca, cert, key = _db_pki(tmp)
    with mariadb_server(tls=(cert, key)) as db:
        db.sql(f"CREATE USER '{DB_USER}'@'127.0.0.1' IDENTIFIED BY 'right-{CANARY_PASSWORD}'")
        yield Case(
            {"type": "mysql", "target": f"127.0.0.1:{db.port}", "server_name": "db.test", "credential": "wrong"},
            CheckOptions(ca_bundle=str(ca), credentials=_store(wrong={"username": DB_USER, "password": WRONG})),
            "MySQL login failed",
        )


@contextmanager
def _tls_untrusted() -> Iterator[Case]:
    with run_dovecot() as dovecot:
        yield Case({"type": "tls", "target": f"127.0.0.1:{dovecot.imaps_port}"}, CheckOptions(),
                   "TLS certificate verify failed")


@contextmanager
def _ntp_unreachable() -> Iterator[Case]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    yield Case({"type": "ntp", "target": f"127.0.0.1:{port}"}, CheckOptions(), "no NTP server at")


CASES: dict[str, Callable[[Path], AbstractContextManager[Case]]] = {
    "smtp-auth": lambda tmp: _smtp_auth(),
    "smtp-untrusted": lambda tmp: _smtp_untrusted(),
    "imap-auth": lambda tmp: _imap_auth(),
    "ssh-auth": _ssh_auth,
    "ssh-host-key": _ssh_host_key,
    "postgres-auth": _postgres_auth,
    "mysql-auth": _mysql_auth,
    "tls-untrusted": lambda tmp: _tls_untrusted(),
    "ntp-unreachable": lambda tmp: _ntp_unreachable(),
}


async def _round(case: Case, http_url: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    healthy_spec = {"type": "http", "target": http_url, "keyword": "healthy", "timeout_s": 10}
    failing = asyncio.create_task(run_check(case.spec, case.options))
    healthy = [asyncio.create_task(run_check(healthy_spec, CheckOptions()))]
    while not failing.done() and len(healthy) < HEALTHY_DURING:  # open sockets while it runs and cleans up
        await asyncio.sleep(0.005)
        healthy.append(asyncio.create_task(run_check(healthy_spec, CheckOptions())))
    await asyncio.wait([failing])
    healthy += [asyncio.create_task(run_check(healthy_spec, CheckOptions())) for _ in range(HEALTHY_AFTER)]
    results = await asyncio.gather(*healthy)
    return (await failing).to_dict(), [r.to_dict() for r in results]


@pytest.mark.parametrize("name", list(CASES))
def test_a_failing_check_causes_no_collateral_failures(
    name: str, http_url: str, tmp_path: Path
) -> None:
    with CASES[name](tmp_path) as case:

        async def rounds() -> tuple[list[str], int, list[str]]:
            own: list[str] = []
            healthy_total = 0
            collateral: list[str] = []
            for _ in range(ROUNDS):
                failed, healthy = await _round(case, http_url)
                own.append(str(failed["error"]))
                healthy_total += len(healthy)
                collateral += [str(r["error"]) for r in healthy if not r["ok"]]
            return own, healthy_total, collateral

        own, healthy_total, collateral = asyncio.run(rounds())
    assert not collateral, (
        f"{len(collateral)} of {healthy_total} healthy http checks failed beside a failing {name} check; "
        f"first: {collateral[0]}"
    )
    wrong = [error for error in own if not error.startswith(case.error)]
    assert not wrong, f"{len(wrong)} of {ROUNDS} failing {name} checks failed for another reason: {wrong[0]}"
