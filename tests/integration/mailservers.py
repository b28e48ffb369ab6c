"""Real mail servers for the ``smtp`` / ``imap`` check tests: Exim (Debian ``exim4-daemon-light``)
and Dovecot (``dovecot-imapd``), each a test-owned instance with its own configuration, spool and
logs under a temporary directory, listening on 127.0.0.1 high ports only.

The system packages are installed with the daemons disabled (``tests/setup/host-prereqs.sh``
installs them behind a ``policy-rc.d`` that exits 101); nothing here touches the system instances.
Both servers drop privileges to their packaged users (``Debian-exim``, ``dovecot`` / ``dovenull``),
so the fixtures run as root — which the test machines do — and chown the working files.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from support.net import free_port

EXIM = "/usr/sbin/exim4"
DOVECOT = "/usr/sbin/dovecot"
MAIL_USER = "probe"
#: A canary password: it must never appear in any check result.
CANARY_PASSWORD = "Canary-9f2e7c1b-pw"


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"server not listening on {port} after {timeout}s: {log.read_text(errors='replace')[-2000:]}")


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server and every child it forked (session handlers): its own process group."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        deadline = time.monotonic() + wait  # children may outlive the parent briefly
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def require_binary(path: str, package: str) -> None:
    """A missing server binary skips — which ``VANTAGE_NO_SKIP=1`` turns into a failure."""
    if not Path(path).exists():
        pytest.skip(f"{path} missing: install {package} (tests/setup/host-prereqs.sh)")
    if os.geteuid() != 0:
        pytest.skip(f"{package} test instances drop privileges to their packaged users: run as root")


@dataclass
class Certs:
    ca: Path
    cert: Path
    key: Path
    expired_cert: Path
    expired_key: Path


def make_certs(tmp: Path, owner: str) -> Certs:
    """A CA, a server certificate for mail.test / localhost / 127.0.0.1 and an expired one."""
    import datetime as dt

    ca = trustme.CA()
    good = ca.issue_cert("mail.test", "localhost", "127.0.0.1")
    expired = ca.issue_cert(
        "mail.test",
        not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(2021, 1, 1, tzinfo=dt.UTC),
    )
    certs = Certs(tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem", tmp / "expired.pem", tmp / "expired-key.pem")
    ca.cert_pem.write_to_path(str(certs.ca))
    good.cert_chain_pems[0].write_to_path(str(certs.cert))
    good.private_key_pem.write_to_path(str(certs.key))
    expired.cert_chain_pems[0].write_to_path(str(certs.expired_cert))
    expired.private_key_pem.write_to_path(str(certs.expired_key))
    user = pwd.getpwnam(owner)
    for path in (certs.cert, certs.key, certs.expired_cert, certs.expired_key):
        os.chown(path, user.pw_uid, user.pw_gid)
        path.chmod(0o600)
    return certs


@dataclass
class Exim:
    port: int
    certs: Certs


#: Exim authenticators by SMTP mechanism, each advertised only after TLS (``@USER@`` and
#: ``@PASSWORD@`` are filled in; the rest is Exim's own syntax).
EXIM_AUTHENTICATORS = {
    "PLAIN": """\
plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${if and {{eq{$auth2}{@USER@}}{eq{$auth3}{@PASSWORD@}}}}
  server_advertise_condition = ${if def:tls_in_cipher}
""",
    "LOGIN": """\
login:
  driver = plaintext
  public_name = LOGIN
  server_prompts = Username:: : Password::
  server_condition = ${if and {{eq{$auth1}{@USER@}}{eq{$auth2}{@PASSWORD@}}}}
  server_advertise_condition = ${if def:tls_in_cipher}
""",
    "CRAM-MD5": """\
cram:
  driver = cram_md5
  public_name = CRAM-MD5
  server_secret = ${if eq{$auth1}{@USER@}{@PASSWORD@}fail}
  server_advertise_condition = ${if def:tls_in_cipher}
""",
}


EXIM_CONF = """\
keep_environment =
primary_hostname = mail.test
spool_directory = {dir}/spool
log_file_path = {dir}/log/%slog
pid_file_path = {dir}/exim.pid
local_interfaces = 127.0.0.1
tls_advertise_hosts = *
tls_certificate = {cert}
tls_privatekey = {key}
acl_smtp_rcpt = acl_check_rcpt

begin acl
acl_check_rcpt:
  deny

begin authenticators
"""


@contextmanager
def server_dir(prefix: str) -> Iterator[Path]:
    """A working directory the servers' unprivileged users can traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    try:
        yield path
    finally:
        # A server child that was still finishing a session may write one more log line.
        for _ in range(20):
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                break
            time.sleep(0.1)


@contextmanager
def run_exim(
    *, expired: bool = False, mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN"), tls_on_connect: bool = False
) -> Iterator[Exim]:
    """An Exim daemon with STARTTLS (cert from our CA) and AUTH with ``mechanisms`` after TLS.

    With ``tls_on_connect`` the port speaks TLS from the first byte (SMTPS) instead of STARTTLS.
    """
    require_binary(EXIM, "exim4-daemon-light")
    with server_dir("vantage-exim-") as tmp, _exim(tmp, expired, mechanisms, tls_on_connect) as server:
        yield server


@contextmanager
def _exim(tmp: Path, expired: bool, mechanisms: tuple[str, ...], tls_on_connect: bool) -> Iterator[Exim]:
    for sub in ("spool", "log"):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
    certs = make_certs(tmp, "Debian-exim")
    user = pwd.getpwnam("Debian-exim")
    for sub in ("spool", "log"):
        os.chown(tmp / sub, user.pw_uid, user.pw_gid)
    conf = tmp / "exim.conf"
    conf.write_text(
        EXIM_CONF.format(
            dir=tmp,
            cert=certs.expired_cert if expired else certs.cert,
            key=certs.expired_key if expired else certs.key,
        )
        + "".join(EXIM_AUTHENTICATORS[m] for m in mechanisms)
        .replace("@USER@", MAIL_USER)
        .replace("@PASSWORD@", CANARY_PASSWORD)
    )
    port = free_port()
    log = tmp / "exim.out"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [EXIM, "-C", str(conf), "-bdf", "-oX", str(port), *(["-tls-on-connect"] if tls_on_connect else [])],
            stdout=out, stderr=out, start_new_session=True,
        )
    try:
        wait_port(port, proc, log)
        yield Exim(port, certs)
    finally:
        stop_group(proc)


@dataclass
class Dovecot:
    imap_port: int
    imaps_port: int
    certs: Certs


DOVECOT_CONF = """\
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:{dir}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={dir}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service stats {{
  inet_listener http {{
    port = 0
  }}
}}
"""


@contextmanager
def run_dovecot() -> Iterator[Dovecot]:
    """A Dovecot IMAP server: port with STARTTLS (plaintext LOGIN disabled before TLS) and implicit TLS."""
    require_binary(DOVECOT, "dovecot-imapd")
    with server_dir("vantage-dovecot-") as tmp, _dovecot(tmp) as server:
        yield server


@contextmanager
def _dovecot(tmp: Path) -> Iterator[Dovecot]:
    for sub in ("run", "state", "mail"):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
    certs = make_certs(tmp, "root")
    mail_owner = pwd.getpwnam("dovecot")
    os.chown(tmp / "mail", mail_owner.pw_uid, mail_owner.pw_gid)
    passwd = tmp / "passwd"
    passwd.write_text(f"{MAIL_USER}:{{PLAIN}}{CANARY_PASSWORD}\n")
    os.chown(passwd, 0, mail_owner.pw_gid)
    passwd.chmod(0o640)
    imap_port, imaps_port = free_port(), free_port()
    conf = tmp / "dovecot.conf"
    conf.write_text(
        DOVECOT_CONF.format(
            dir=tmp,
            cert=certs.cert,
            key=certs.key,
            uid=mail_owner.pw_uid,
            gid=mail_owner.pw_gid,
            imap_port=imap_port,
            imaps_port=imaps_port,
        )
    )
    log = tmp / "dovecot.log"
    log.touch()
    proc = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_port(imap_port, proc, log)
        wait_port(imaps_port, proc, log)
        yield Dovecot(imap_port, imaps_port, certs)
    finally:
        stop_group(proc)
        shutil.rmtree(tmp / "run", ignore_errors=True)
