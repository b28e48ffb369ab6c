"""A throw-away PostgreSQL cluster on 127.0.0.1 (``initdb`` + ``pg_ctl``), for tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support.net import free_port

BINARIES = ("initdb", "pg_ctl")


def missing_binaries() -> list[str]:
    """The PostgreSQL server programs that are not on ``PATH`` (``make`` adds their directory)."""
    return [b for b in BINARIES if shutil.which(b) is None]


@contextmanager
def server_dir(prefix: str, owner: str | None = None) -> Iterator[Path]:
    """A scratch directory, mode 0755, owned by ``owner`` when we are root; removed afterwards.

    Not under pytest's ``tmp_path``: that is private to root, and servers drop to their own user.
    """
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    if owner is not None and os.geteuid() == 0:
        shutil.chown(base, owner, owner)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def as_postgres(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the ``postgres`` user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


@dataclass
class PostgresServer:
    port: int
    base: Path

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the ``postgres`` database as the superuser (TCP, trust)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def psql(self, sql: str) -> str:
        """Run ``sql`` as the superuser over the Unix socket (trust) and return the output."""
        out = subprocess.run(
            as_postgres(["psql", "-h", str(self.base), "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                         "-v", "ON_ERROR_STOP=1", "-Atqc", sql]),
            check=True, capture_output=True, text=True, timeout=60,
        )
        return out.stdout


@contextmanager
def postgres_server(
    tls: tuple[Path, Path] | None = None, host_auth: str = "trust", max_connections: int = 100
) -> Iterator[PostgresServer]:
    """A PostgreSQL cluster on 127.0.0.1, optionally with TLS; stopped and removed afterwards.

    ``tls`` is ``(cert_chain_pem, key_pem)``; ``host_auth`` the ``pg_hba`` method for TCP clients
    (``trust`` or ``scram-sha-256``). The Unix socket in the base directory always trusts.
    :class:`FileNotFoundError` when the server programs are missing.
    """
    missing = missing_binaries()
    if missing:
        raise FileNotFoundError(f"PostgreSQL server programs not found: {', '.join(missing)}")
    port = free_port()
    with server_dir("vantage-pg-", "postgres") as base:
        data = base / "data"
        subprocess.run(as_postgres(["initdb", "-D", str(data), "-A", "trust", "-U", "postgres"]),
                       check=True, capture_output=True, timeout=120)
        (data / "pg_hba.conf").write_text(
            f"local all all trust\nhost all all 127.0.0.1/32 {host_auth}\nhost all all ::1/128 {host_auth}\n"
        )
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections={max_connections}"
        if tls is not None:
            for src, name in zip(tls, ("server.crt", "server.key"), strict=True):
                shutil.copy(src, data / name)
                (data / name).chmod(0o600)
                if os.geteuid() == 0:
                    shutil.chown(data / name, "postgres", "postgres")
            options += " -c ssl=on"
        subprocess.run(
            as_postgres(["pg_ctl", "-D", str(data), "-o", options, "-w", "-l", str(base / "log"), "start"]),
            check=True, capture_output=True, timeout=120,
        )
        try:
            yield PostgresServer(port, base)
        finally:
            subprocess.run(as_postgres(["pg_ctl", "-D", str(data), "-m", "immediate", "stop"]),
                           check=False, capture_output=True, timeout=60)
