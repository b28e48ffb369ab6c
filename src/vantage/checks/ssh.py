"""The ``ssh`` check: banner, host-key pinning, optional login and SFTP assertions (``asyncssh``).

Steps, each timed: resolve and vet (``dns_ms``) → TCP connect to the vetted address
(``connect_ms``) → SSH version exchange and key exchange, which proves the server holds the host
key it presents (``handshake_ms``) → with a ``credential``, user authentication (``auth_ms``) → with
an ``sftp`` block, the SFTP assertions (``sftp_ms``).

Host keys: the presented key's OpenSSH SHA-256 fingerprint (``SHA256:…``, as ``ssh-keygen -lf``
prints it) is checked against ``host_key_sha256`` *before* any authentication is attempted; a
key that is not pinned fails with ``host key changed: expected …, got …``. Without pins the check
only probes (validation refuses a ``credential`` without pins) and reports the fingerprint so that
it can be pinned. No ``~/.ssh`` file, ssh-agent or GSSAPI ticket of the agent's user is ever used.

``asyncssh`` adds about 7 MB to the agent's memory, so it is imported on the first ssh check only,
the way the database drivers are; the client class that checks the pins is built then.

Details: ``banner`` (the server's version string: content), ``host_key`` (type, SHA-256),
``sftp`` (``entries``, ``listing``: content, ``file``).
"""

from __future__ import annotations

import functools
import re
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from vantage.checks.fields import CREDENTIAL, HOST_PORT_TARGET, parse_host_port
from vantage.checks.net import connect_vetted_socket
from vantage.checks.netpolicy import CheckOptions
from vantage.checks.result import CheckFailure, Probe
from vantage.checks.schema import (
    JSON,
    MAX_TEXT_FIELD,
    AtLeastOne,
    CheckSpecError,
    CheckType,
    Field,
    Obj,
    Protect,
    Requires,
    Text,
)

if TYPE_CHECKING:
    import asyncssh

LISTING_MAX = 100  # directory entries reported (all are counted)
SSH_FINGERPRINT_RE = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")
MAX_HOST_KEY_PINS = 16
SFTP_FIELDS = ("list_dir", "file_exists")


class _ProbeDone(Exception):
    """Raised from ``begin_auth`` to end a probe-only connection after a completed key exchange."""


class _Handshake:
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

    def connected(self, conn: asyncssh.SSHClientConnection) -> None:
        self.conn = conn
        self._started = time.perf_counter()

    def host_key_ok(self, key: asyncssh.SSHKey) -> bool:
        self.fingerprint = key.get_fingerprint("sha256")
        self.key_type = key.get_algorithm()
        if not self._pins:
            # Only reachable without a login (validation requires pins for one): report, probe on.
            return not self._login
        self.key_rejected = self.fingerprint not in self._pins
        return not self.key_rejected

    def auth_begins(self) -> None:
        # Key exchange (host key signature included) is complete; authentication starts now.
        self.kex_done = True
        self._probe.add_phase("handshake_ms", (time.perf_counter() - self._started) * 1000.0)
        self._started = time.perf_counter()
        self._probe.stage = "SSH authentication"
        if not self._login:
            raise _ProbeDone()

    def auth_done(self) -> None:
        self._probe.add_phase("auth_ms", (time.perf_counter() - self._started) * 1000.0)

    def report(self) -> None:
        version = self.conn.get_extra_info("server_version") if self.conn is not None else None
        if version:
            self._probe.details["banner"] = str(version)
        if self.fingerprint is not None:
            self._probe.details["host_key"] = {"type": self.key_type, "sha256": self.fingerprint}


@functools.cache
def _client_class() -> Callable[[_Handshake], asyncssh.SSHClient]:
    """asyncssh's client interface, handing every event to a :class:`_Handshake` (built on first use)."""
    import asyncssh

    class Client(asyncssh.SSHClient):
        def __init__(self, handshake: _Handshake) -> None:
            self.handshake = handshake

        def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
            self.handshake.connected(conn)

        def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
            return self.handshake.host_key_ok(key)

        def begin_auth(self, username: str) -> None:
            self.handshake.auth_begins()

        def auth_completed(self) -> None:
            self.handshake.auth_done()

    return Client


def _client_keys(credential_name: str, private_key: str | None, passphrase: str | None) -> list[Any]:
    import asyncssh

    if private_key is None:
        return []
    try:
        return [asyncssh.import_private_key(private_key, passphrase)]
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise CheckFailure(f"credential {credential_name!r}: the private key cannot be loaded ({exc})") from None


async def run_ssh(spec: Mapping[str, Any], options: CheckOptions, probe: Probe) -> None:
    """Run a validated ``ssh`` spec (see the module docstring for the steps and the pinning rule)."""
    import asyncssh

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
    client = _Handshake(pins, credential is not None, probe)
    client_class = _client_class()
    probe.stage = "SSH handshake"
    conn: asyncssh.SSHClientConnection | None = None
    try:
        conn = await asyncssh.connect(
            host,
            port,
            sock=sock,
            client_factory=lambda: client_class(client),
            known_hosts=([], [], []),  # validation always runs, through _Handshake
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
        client.report()
        raise CheckFailure(
            f"SSH authentication failed for user {username!r}: the server did not accept "
            f"credential {spec['credential']!r}"
        ) from None
    except asyncssh.HostKeyNotVerifiable:
        client.report()
        if client.key_rejected:
            raise CheckFailure(
                f"host key changed: expected {' or '.join(pins)}, got {client.fingerprint} ({client.key_type})"
            ) from None
        raise CheckFailure("SSH host key not verifiable (a host certificate or an unsupported key)") from None
    except asyncssh.DisconnectError as exc:
        client.report()
        raise CheckFailure(f"SSH connection closed during {probe.stage}: {exc.reason}") from None
    except (ConnectionError, EOFError):
        client.report()
        raise CheckFailure(f"connection closed by the server during {probe.stage}") from None
    finally:
        if conn is None:
            # Once asyncssh made a connection, its transport owns the socket: close through it.
            if client.conn is not None:
                client.conn.abort()
            else:
                sock.close()
    client.report()
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
    import asyncssh

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
    import asyncssh

    if exc.code == asyncssh.FX_NO_SUCH_FILE:
        return "no such file or directory"
    if exc.code == asyncssh.FX_PERMISSION_DENIED:
        return "permission denied"
    return str(exc.reason or exc)


class HostKeyPins(Field):
    """One OpenSSH SHA-256 fingerprint or a list of them; normalised to a list with the prefix, no padding."""

    def parse(self, value: Any, name: str, ctx: Mapping[str, Any]) -> list[str]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_HOST_KEY_PINS:
            raise CheckSpecError(name, f"must be a fingerprint or a list of 1 to {MAX_HOST_KEY_PINS}")
        pins: list[str] = []
        for i, item in enumerate(items):
            text = item.strip().rstrip("=") if isinstance(item, str) else ""
            if text and not text.startswith("SHA256:"):
                text = "SHA256:" + text
            if not SSH_FINGERPRINT_RE.match(text):
                raise CheckSpecError(
                    f"{name}.{i}",
                    "must be an OpenSSH SHA-256 fingerprint 'SHA256:<43 base64 characters>' "
                    "(as `ssh-keygen -lf` prints it, or as this check reports it)",
                )
            if text not in pins:
                pins.append(text)
        return pins

    def value_schema(self) -> JSON:
        pin = {"type": "string", "pattern": r"^\s*(?:SHA256:)?[A-Za-z0-9+/]{43}=?\s*$"}
        return {"anyOf": [pin, {"type": "array", "items": pin, "minItems": 1, "maxItems": MAX_HOST_KEY_PINS}]}


def _no_nul(value: str, name: str) -> str:
    if "\x00" in value:
        raise CheckSpecError(name, f"must be a non-empty path without NUL, at most {MAX_TEXT_FIELD} characters")
    return value


_PATH = Text(message=f"must be a non-empty path without NUL, at most {MAX_TEXT_FIELD} characters",
             normalize=_no_nul, pattern=r"^[^\u0000]+$")


CHECK = CheckType(
    name="ssh",
    description="SSH banner and host key (pinned), optionally a login and SFTP assertions.",
    target=HOST_PORT_TARGET,
    fields={
        "host_key_sha256": HostKeyPins(description="pinned host key fingerprint(s) 'SHA256:...' as ssh-keygen -lf "
                                       "prints them; required with credential"),
        "credential": CREDENTIAL,
        "sftp": Obj(
            {"list_dir": _PATH, "file_exists": _PATH},
            rules=(AtLeastOne(SFTP_FIELDS, f"needs at least one of {', '.join(SFTP_FIELDS)}"),),
            unknown=lambda key: f"unknown field (allowed: {', '.join(SFTP_FIELDS)})",
            message=f"must be an object with {' and/or '.join(SFTP_FIELDS)}",
            description="SFTP assertions after the login: a directory that can be listed, a file that exists",
        ),
    },
    rules=(
        Requires("credential", "host_key_sha256",
                 "is required with credential: a login to an unpinned server could be answered by an "
                 "impostor; run the check without credential once and pin the fingerprint it reports",
                 error_field="host_key_sha256"),
        Requires("sftp", "credential", "needs credential: SFTP runs after a login"),
    ),
    run=run_ssh,
    example={"type": "ssh", "target": "sftp.example.internal:22", "host_key_sha256": "SHA256:" + "A" * 43,
             "credential": "sftp-probe", "sftp": {"list_dir": "/upload"}},
    protect=Protect(content=frozenset({"banner", "listing"})),
)
