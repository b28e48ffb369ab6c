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

``asyncssh`` adds about 7 MB to the agent's memory, so it is imported on the first ssh check only
(:mod:`vantage.checks.sshclient`), the way the database drivers are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vantage.checks.netpolicy import CheckOptions
from vantage.checks.result import Probe


async def run_ssh(spec: Mapping[str, Any], options: CheckOptions, probe: Probe) -> None:
    """Run a validated ``ssh`` spec (see the module docstring for the steps and the pinning rule)."""
    from vantage.checks.sshclient import run

    await run(spec, options, probe)
