"""The ``ssh`` check against a real OpenSSH server (``sshd -D``, ``internal-sftp``) on 127.0.0.1.

Covers success (probe, key login, password login, SFTP listing and file-exists), and each failure
class: refused, timeout, host key changed, wrong credential, assertion failed (missing file).
No result ever contains the password, the private key or its passphrase.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from check_servers import SSHServer, free_port, silent_listener, ssh_keygen, ssh_server

from vantage.checks import CheckOptions, DataProtection, run_check
from vantage.checks.credentials import CredentialStore

PASSWORD = "canary-ssh-pw-" + secrets.token_hex(6)
PASSPHRASE = "canary-ssh-pass-" + secrets.token_hex(6)


@pytest.fixture(scope="module")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sshkey") / "id_ed25519"
    ssh_keygen(path, passphrase=PASSPHRASE, comment="vantage-probe")
    return path


@pytest.fixture(scope="module")
def sshd(client_key: Path) -> Iterator[SSHServer]:
    with ssh_server(client_key.with_name("id_ed25519.pub").read_text(), PASSWORD) as server:
        yield server


@pytest.fixture(scope="module")
def options(client_key: Path, sshd: SSHServer) -> CheckOptions:
    store = CredentialStore.from_mapping({"credentials": {
        "sftp-key": {"username": sshd.user, "private_key": client_key.read_text(), "passphrase": PASSPHRASE},
        "sftp-password": {"username": sshd.user, "password": PASSWORD},
        "sftp-wrong": {"username": sshd.user, "password": PASSWORD + "-wrong"},
        "sftp-no-secret": {"username": sshd.user},
    }})
    return CheckOptions(credentials=store)


def _canaries(client_key: Path) -> list[str]:
    body = [line for line in client_key.read_text().splitlines() if line and not line.startswith("-----")]
    return [PASSWORD, PASSPHRASE, *body]


async def _run(spec: dict[str, Any], options: CheckOptions, client_key: Path) -> dict[str, Any]:
    result = (await run_check(spec, options)).to_dict()
    dumped = json.dumps(result)
    for canary in _canaries(client_key):
        assert canary not in dumped, "a secret leaked into the result"
    return result


async def test_probe_without_pins_reports_banner_and_fingerprint(
    sshd: SSHServer, options: CheckOptions, client_key: Path
) -> None:
    result = await _run({"type": "ssh", "target": f"127.0.0.1:{sshd.port}"}, options, client_key)
    assert result["ok"], result["error"]
    assert result["details"]["banner"].startswith("SSH-2.0-OpenSSH")
    assert result["details"]["host_key"] == {"type": "ssh-ed25519", "sha256": sshd.host_key_sha256}
    assert any(sshd.host_key_sha256 in w and "not pinned" in w for w in result["details"]["warnings"])
    assert {"connect_ms", "handshake_ms"} <= set(result["phases"]) and "auth_ms" not in result["phases"]


async def test_pinned_key_login_and_sftp(sshd: SSHServer, options: CheckOptions, client_key: Path) -> None:
    spec = {"type": "ssh", "target": f"127.0.0.1:{sshd.port}", "host_key_sha256": [sshd.host_key_sha256],
            "credential": "sftp-key", "sftp": {"list_dir": "upload", "file_exists": "upload/ready.flag"}}
    result = await _run(spec, options, client_key)
    assert result["ok"], result["error"]
    assert result["details"]["sftp"]["listing"] == ["ready.flag", "report.csv"]
    assert result["details"]["sftp"]["entries"] == 2
    assert result["details"]["sftp"]["file"]["type"] == "file"
    assert {"connect_ms", "handshake_ms", "auth_ms", "sftp_ms"} <= set(result["phases"])
    assert result["details"]["warnings"] == []
    stripped = DataProtection(strip_content=True, strip_ips=True).apply(result)
    assert "banner" not in stripped["details"] and "listing" not in stripped["details"]["sftp"]
    assert "127.0.0.1" not in json.dumps(stripped)


async def test_password_login(sshd: SSHServer, options: CheckOptions, client_key: Path) -> None:
    spec = {"type": "ssh", "target": f"127.0.0.1:{sshd.port}", "host_key_sha256": sshd.host_key_sha256,
            "credential": "sftp-password", "sftp": {"file_exists": "upload/report.csv"}}
    result = await _run(spec, options, client_key)
    assert result["ok"], result["error"]
    assert result["details"]["sftp"]["file"]["size"] == len("id,value\n1,2\n")


async def test_host_key_changed(sshd: SSHServer, options: CheckOptions, client_key: Path, tmp_path: Path) -> None:
    other = ssh_keygen(tmp_path / "other")
    spec = {"type": "ssh", "target": f"127.0.0.1:{sshd.port}", "host_key_sha256": [other],
            "credential": "sftp-key", "sftp": {"list_dir": "."}}
    result = await _run(spec, options, client_key)
    assert not result["ok"]
    assert result["error"] == f"host key changed: expected {other}, got {sshd.host_key_sha256} (ssh-ed25519)"
    assert "auth_ms" not in result["phases"], "authentication must not start with an unpinned key"
    # a probe without a credential alerts the same way
    probe = await _run({"type": "ssh", "target": f"127.0.0.1:{sshd.port}", "host_key_sha256": other},
                       options, client_key)
    assert not probe["ok"] and probe["error"].startswith("host key changed:")


@pytest.mark.parametrize("credential", ["sftp-wrong", "sftp-no-secret"])
async def test_wrong_credential(sshd: SSHServer, options: CheckOptions, client_key: Path, credential: str) -> None:
    spec = {"type": "ssh", "target": f"127.0.0.1:{sshd.port}", "host_key_sha256": sshd.host_key_sha256,
            "credential": credential}
    result = await _run(spec, options, client_key)
    assert not result["ok"]
    if credential == "sftp-wrong":
        assert result["error"].startswith(f"SSH authentication failed for user '{sshd.user}'")
    else:
        assert "has no private_key" in result["error"]


async def test_unknown_credential_name(sshd: SSHServer, options: CheckOptions, client_key: Path) -> None:
    spec = {"type": "ssh", "target": f"127.0.0.1:{sshd.port}", "host_key_sha256": sshd.host_key_sha256,
            "credential": "nope"}
    result = await _run(spec, options, client_key)
    assert not result["ok"] and "unknown credential 'nope'" in result["error"]


async def test_sftp_assertion_failed(sshd: SSHServer, options: CheckOptions, client_key: Path) -> None:
    spec = {"type": "ssh", "target": f"127.0.0.1:{sshd.port}", "host_key_sha256": sshd.host_key_sha256,
            "credential": "sftp-key", "sftp": {"file_exists": "upload/missing.csv"}}
    result = await _run(spec, options, client_key)
    assert not result["ok"] and result["error"] == "SFTP file 'upload/missing.csv' does not exist"
    listing = await _run({**spec, "sftp": {"list_dir": "no-such-dir"}}, options, client_key)
    assert not listing["ok"]
    assert listing["error"] == "SFTP cannot list 'no-such-dir': no such file or directory"


async def test_refused(options: CheckOptions, client_key: Path) -> None:
    port = free_port()
    result = await _run({"type": "ssh", "target": f"127.0.0.1:{port}"}, options, client_key)
    assert not result["ok"] and result["error"] == f"connection refused to 127.0.0.1:{port}"


async def test_timeout(options: CheckOptions, client_key: Path) -> None:
    with silent_listener() as port:
        result = await _run({"type": "ssh", "target": f"127.0.0.1:{port}", "timeout_s": 1}, options, client_key)
    assert not result["ok"]
    assert result["error"] == "timed out after 1.0 s during SSH handshake"
