"""A throw-away certificate authority and a server certificate for 127.0.0.1 and localhost."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    """PEM files in one directory, and TLS contexts that use them.

    ``ca``: the CA certificate (what clients trust); ``cert``: the server's chain, leaf first;
    ``key``: the server's private key; ``client``: a client context trusting only ``ca``;
    ``server``: a server context presenting ``cert``.
    """

    ca: Path
    cert: Path
    key: Path
    client: ssl.SSLContext
    server: ssl.SSLContext


def make_pki(directory: Path) -> Pki:
    """Create ``ca.pem``, ``server.pem`` and ``server.key`` (trustme) in ``directory``."""
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    cert.private_key_pem.write_to_path(str(directory / "server.key"))
    for index, blob in enumerate(cert.cert_chain_pems):
        blob.write_to_path(str(directory / "server.pem"), append=index > 0)
    client = ssl.create_default_context(cafile=str(directory / "ca.pem"))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(str(directory / "server.pem"), str(directory / "server.key"))
    return Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key", client, server)
