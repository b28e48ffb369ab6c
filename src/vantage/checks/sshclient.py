"""The ``ssh`` check's implementation on ``asyncssh`` (imported only when an ssh check runs).

See :mod:`vantage.checks.ssh` for what the check does.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Mapping, Sequence
from typing import Any

import asyncssh

from vantage.checks.net import connect_vetted_socket
from vantage.checks.netpolicy import CheckOptions
from vantage.checks.result import CheckFailure, Probe
from vantage.checks.spec import parse_host_port

LISTING_MAX = 100  # directory entries reported (all are counted)


class _ProbeDone(Exception):
    """Raised from ``begin_auth`` to end a probe-only connection after a completed key exchange."""


class _Client(asyncssh.SSHClient):
    """Checks the presented host key against the pins and records what the handshake showed."""

    def __init__(self, pins: Sequence[str], login: bool, probe: Probe) -> None:
        self._pins = frozenset(pins)
        self._login = login
        self._probe = probe
        self._started = time.perf_counter()
        self.conn: asyncssh.SSHClientConnection | None = None
        self.fingerprint: str | None = None
        self.key_type: str | None = None
        self.key_rejected = False
        self.kex_done = False

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        self.conn = conn
        self._started = time.perf_counter()

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.fingerprint = key.get_fingerprint("sha256")
        self.key_type = key.get_algorithm()
        if not self._pins:
            # Only reachable without a login (validation requires pins for one): report, probe on.
            return not self._login
        self.key_rejected = self.fingerprint not in self._pins
        return not self.key_rejected

    def begin_auth(self, username: str) -> None:
        # Key exchange (host key signature included) is complete; authentication starts now.
        self.kex_done = True
        self._probe.add_phase("handshake_ms", (time.perf_counter() - self._started) * 1000.0)
        self._started = time.perf_counter()
        self._probe.stage = "SSH authentication"
        if not self._login:
            raise _ProbeDone()

    def auth_completed(self) -> None:
        self._probe.add_phase("auth_ms", (time.perf_counter() - self._started) * 1000.0)

    def server_version(self) -> str | None:
        if self.conn is None:
            return None
        value = self.conn.get_extra_info("server_version")
        return str(value) if value else None


def _client_keys(credential_name: str, private_key: str | None, passphrase: str | None) -> list[Any]:
    if private_key is None:
        return []
    try:
        return [asyncssh.import_private_key(private_key, passphrase)]
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise CheckFailure(f"credential {credential_name!r}: the private key cannot be loaded ({exc})") from None


def _report(client: _Client, probe: Probe) -> None:
    banner = client.server_version()
    if banner is not None:
        probe.details["banner"] = banner
    if client.fingerprint is not None:
        probe.details["host_key"] = {"type": client.key_type, "sha256": client.fingerprint}


async def run(spec: Mapping[str, Any], options: CheckOptions, probe: Probe) -> None:
    """Run a validated ``ssh`` spec (see :mod:`vantage.checks.ssh` for the steps and the pinning rule)."""
    host, port = parse_host_port(str(spec["target"]))
    pins: list[str] = list(spec["host_key_sha256"] or [])
    credential = options.credentials.get(spec["credential"]) if spec["credential"] else None
    username = password = None
    keys: list[Any] = []
    if credential is not None:
        credential.require("username", purpose="an ssh login")
        if credential.private_key is None and credential.password is None:
            raise CheckFailure(f"credential {credential.name!r} has no private_key or password, which an ssh login needs")
        username, password = credential.username, credential.password
        keys = _client_keys(credential.name, credential.private_key, credential.passphrase)
    sock, _peer = await connect_vetted_socket(host, port, options, probe)
    client = _Client(pins, credential is not None, probe)
    probe.stage = "SSH handshake"
    conn: asyncssh.SSHClientConnection | None = None
    try:
        conn = await asyncssh.connect(
            host,
            port,
            sock=sock,
            client_factory=lambda: client,
            known_hosts=([], [], []),  # validation always runs, through _Client
            config=None,  # never read ~/.ssh/config
            agent_path=None,
            agent_forwarding=False,
            client_keys=keys,
            username=username or "vantage-probe",
            password=password,
            passphrase=None,
            kbdint_auth=False,
            gss_host=None,
            x509_trusted_certs=None,
            server_host_key_algs="default",
            connect_timeout=None,
            login_timeout=float(spec["timeout_s"]),
            keepalive_interval=0,
        )
    except _ProbeDone:
        pass
    except asyncssh.PermissionDenied:
        _report(client, probe)
        raise CheckFailure(
            f"SSH authentication failed for user {username!r}: the server did not accept "
            f"credential {spec['credential']!r}"
        ) from None
    except asyncssh.HostKeyNotVerifiable:
        _report(client, probe)
        if client.key_rejected:
            raise CheckFailure(
                f"host key changed: expected {' or '.join(pins)}, got {client.fingerprint} ({client.key_type})"
            ) from None
        raise CheckFailure("SSH host key not verifiable (a host certificate or an unsupported key)") from None
    except asyncssh.DisconnectError as exc:
        _report(client, probe)
        raise CheckFailure(f"SSH connection closed during {probe.stage}: {exc.reason}") from None
    except (ConnectionError, EOFError):
        _report(client, probe)
        raise CheckFailure(f"connection closed by the server during {probe.stage}") from None
    finally:
        if conn is None:
            # Once asyncssh made a connection, its transport owns the socket: close through it.
            if client.conn is not None:
                client.conn.abort()
            else:
                sock.close()
    _report(client, probe)
    if not client.kex_done:  # pragma: no cover - asyncssh returns only after authentication
        raise CheckFailure("SSH key exchange did not complete")
    if not pins:
        probe.warnings.append(
            f"host key not pinned: pin it with host_key_sha256: [{client.fingerprint!r}] "
            "(verify it out of band first)"
        )
    if conn is None:
        return
    async with conn:
        sftp_spec: Mapping[str, Any] | None = spec["sftp"]
        if sftp_spec is not None:
            await _run_sftp(conn, sftp_spec, probe)


async def _run_sftp(conn: asyncssh.SSHClientConnection, sftp_spec: Mapping[str, Any], probe: Probe) -> None:
    out: dict[str, Any] = {}
    probe.details["sftp"] = out
    with probe.phase("SFTP session", "sftp_ms"):
        try:
            sftp = await conn.start_sftp_client()
        except asyncssh.ChannelOpenError as exc:
            raise CheckFailure(f"SFTP session refused: {exc.reason}") from None
        except asyncssh.SFTPError as exc:
            raise CheckFailure(f"SFTP session failed: {exc.reason}") from None
        async with sftp:
            list_dir: str | None = sftp_spec["list_dir"]
            if list_dir is not None:
                probe.stage = f"SFTP listing of {list_dir!r}"
                try:
                    names = [n for n in await sftp.listdir(list_dir) if n not in (".", "..")]
                except asyncssh.SFTPError as exc:
                    raise CheckFailure(f"SFTP cannot list {list_dir!r}: {_sftp_reason(exc)}") from None
                names.sort()
                out["list_dir"] = list_dir
                out["entries"] = len(names)
                out["listing"] = names[:LISTING_MAX]
            file_exists: str | None = sftp_spec["file_exists"]
            if file_exists is not None:
                probe.stage = f"SFTP stat of {file_exists!r}"
                try:
                    attrs = await sftp.stat(file_exists)
                except asyncssh.SFTPError as exc:
                    if exc.code == asyncssh.FX_NO_SUCH_FILE:
                        raise CheckFailure(f"SFTP file {file_exists!r} does not exist") from None
                    raise CheckFailure(f"SFTP cannot stat {file_exists!r}: {_sftp_reason(exc)}") from None
                out["file_exists"] = file_exists
                out["file"] = {
                    "size": attrs.size,
                    "mtime": attrs.mtime,
                    "type": "directory" if attrs.permissions and stat.S_ISDIR(attrs.permissions) else "file",
                }


def _sftp_reason(exc: asyncssh.SFTPError) -> str:
    if exc.code == asyncssh.FX_NO_SUCH_FILE:
        return "no such file or directory"
    if exc.code == asyncssh.FX_PERMISSION_DENIED:
        return "permission denied"
    return str(exc.reason or exc)
