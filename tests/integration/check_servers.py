"""Throw-away real servers on 127.0.0.1 high ports for the integration tests: PostgreSQL, MariaDB,
OpenSSH, plus a silent TCP listener (accepts, never answers) for timeout tests.

Every server runs from a temporary directory and is stopped and removed at the end. A missing
server binary skips the test with the reason — which ``VANTAGE_NO_SKIP=1`` (``make test``) turns
into a failure, so CI cannot pass without having run them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.net import free_port
from support.postgres import BINARIES, PostgresServer
from support.postgres import postgres_server as _postgres_server
from support.postgres import server_dir as _base_dir


def need(*binaries: str) -> None:
    """Skip (a failure under VANTAGE_NO_SKIP=1) when a server binary is missing."""
    missing = [b for b in binaries if shutil.which(b) is None and not Path(b).exists()]
    if missing:
        pytest.skip(f"server binaries not found: {', '.join(missing)} (tests/setup/host-prereqs.sh installs them)")


def wait_port(port: int, proc: subprocess.Popen[bytes] | None, log: Path | None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"server did not listen on 127.0.0.1:{port} within {timeout}s: {_tail(log)}")


def _tail(log: Path | None) -> str:
    if log is None:
        return ""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def silent_listener() -> Iterator[int]:
    """A TCP port that accepts connections and never sends a byte (for timeout tests)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def loop() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(conn)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()
        server.close()


# --- PostgreSQL ---------------------------------------------------------------------------------


@contextmanager
def postgres_server(
    tls: tuple[Path, Path] | None = None, host_auth: str = "trust"
) -> Iterator[PostgresServer]:
    """:func:`support.postgres.postgres_server`, skipped (a failure under VANTAGE_NO_SKIP=1) without it."""
    need(*BINARIES)
    with _postgres_server(tls, host_auth) as server:
        yield server


# --- MariaDB ------------------------------------------------------------------------------------


@dataclass
class MariaDBServer:
    port: int
    socket: Path

    def sql(self, statement: str) -> str:
        out = subprocess.run(
            ["mariadb", f"--socket={self.socket}", "-uroot", "-N", "-B", "-e", statement],
            check=True, capture_output=True, text=True, timeout=60,
        )
        return out.stdout


@contextmanager
def mariadb_server(tls: tuple[Path, Path] | None = None) -> Iterator[MariaDBServer]:
    """A MariaDB server (``mariadbd``) with a temporary datadir on 127.0.0.1, optionally with TLS."""
    need("mariadbd", "mariadb-install-db", "mariadb")
    port = free_port()
    user = "mysql" if os.geteuid() == 0 else None
    with _base_dir("vantage-mariadb-", user) as base:
        data = base / "data"
        sock = base / "mysqld.sock"
        install = ["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=socket",
                   "--skip-test-db"]
        if user:
            install.append(f"--user={user}")
        subprocess.run(install, check=True, capture_output=True, timeout=180)
        args = [
            shutil.which("mariadbd") or "mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={sock}",
            f"--port={port}", "--bind-address=127.0.0.1", f"--pid-file={base / 'mysqld.pid'}",
            "--skip-name-resolve", "--innodb-buffer-pool-size=16M", "--skip-log-bin",
            f"--log-error={base / 'error.log'}",
        ]
        if user:
            args.append(f"--user={user}")
        if tls is not None:
            for src, name in zip(tls, ("server.crt", "server.key"), strict=True):
                shutil.copy(src, base / name)
                if user:
                    shutil.chown(base / name, user, user)
            args += [f"--ssl-cert={base / 'server.crt'}", f"--ssl-key={base / 'server.key'}"]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port, proc, base / "error.log", timeout=120)
            yield MariaDBServer(port, sock)
        finally:
            _stop(proc)


# --- OpenSSH ------------------------------------------------------------------------------------

SSH_TEST_USER = "vantage-sftp-probe"


@dataclass
class SSHServer:
    port: int
    base: Path
    user: str
    home: Path
    host_key_sha256: str


def _fingerprint(pub: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub)], check=True, capture_output=True,
                         text=True, timeout=30)
    return out.stdout.split()[1]


def ssh_keygen(path: Path, passphrase: str = "", comment: str = "vantage-test") -> str:
    """An Ed25519 key pair at ``path`` (OpenSSH format); returns its SHA256 fingerprint."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", comment, "-f", str(path)],
                   check=True, capture_output=True, timeout=30)
    return _fingerprint(path.with_name(path.name + ".pub"))


@contextmanager
def ssh_server(authorized_key: str, password: str) -> Iterator[SSHServer]:
    """``sshd -D`` on 127.0.0.1 with its own host key, an ``internal-sftp``-only test user.

    The user (created for the test and deleted afterwards) may log in with ``authorized_key`` or
    ``password``, is forced into ``internal-sftp`` (no shell, no forwarding) — the least-privilege
    shape the docs recommend for the check's account.
    """
    need("/usr/sbin/sshd", "ssh-keygen", "useradd", "userdel", "chpasswd")
    if os.geteuid() != 0:
        pytest.skip("the sshd test needs root (it creates a system user)")
    port = free_port()
    with _base_dir("vantage-sshd-") as base:
        home = base / "home"
        (home / "upload").mkdir(parents=True)
        (home / "upload" / "report.csv").write_text("id,value\n1,2\n")
        (home / "upload" / "ready.flag").write_text("")
        host_key = base / "host_ed25519"
        fingerprint = ssh_keygen(host_key, comment="vantage-test-host")
        (base / "authorized_keys").mkdir()
        (base / "authorized_keys" / SSH_TEST_USER).write_text(authorized_key.strip() + "\n")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        subprocess.run(["userdel", SSH_TEST_USER], check=False, capture_output=True, timeout=30)
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", str(home), "--shell",
                        "/usr/sbin/nologin", SSH_TEST_USER], check=True, capture_output=True, timeout=30)
        try:
            subprocess.run(["chpasswd"], input=f"{SSH_TEST_USER}:{password}\n", text=True, check=True,
                           capture_output=True, timeout=30)
            shutil.chown(home, SSH_TEST_USER, SSH_TEST_USER)
            config = base / "sshd_config"
            config.write_text(
                f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile none\nUsePAM no\n"
                "StrictModes no\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\n"
                f"PubkeyAuthentication yes\nAuthorizedKeysFile {base}/authorized_keys/%u\n"
                f"AllowUsers {SSH_TEST_USER}\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n"
                f"Match User {SSH_TEST_USER}\n  ForceCommand internal-sftp\n  AllowTcpForwarding no\n"
                "  X11Forwarding no\n  PermitTTY no\n"
            )
            log = base / "sshd.log"
            proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                                    stderr=log.open("wb"))
            try:
                wait_port(port, proc, log, timeout=30)
                yield SSHServer(port, base, SSH_TEST_USER, home, fingerprint)
            finally:
                _stop(proc)
        finally:
            subprocess.run(["userdel", SSH_TEST_USER], check=False, capture_output=True, timeout=30)
