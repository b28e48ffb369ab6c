"""The system's trusted CAs in a client TLS context, shared by the agent's connection and the checks."""

from __future__ import annotations

import os
import re
import ssl

_HASHED_NAME = re.compile(r"[0-9a-f]{8}\.\d+")


def trust_system_cas(context: ssl.SSLContext) -> None:
    """Make ``context`` trust the system's CAs, parsing only those a handshake needs where it can.

    The CAs are looked up in OpenSSL's hashed certificate directory where there is one
    (``/etc/ssl/certs``, or ``SSL_CERT_DIR``): a handshake then parses only the certificates it
    needs, where loading the whole bundle would hold every one of them in each context's memory
    (over 1 MB).  Without such a directory, or with ``SSL_CERT_FILE`` set, the defaults are
    loaded as usual.
    """
    paths = ssl.get_default_verify_paths()
    if paths.capath and _hashed_directory(paths.capath) and not os.environ.get(paths.openssl_cafile_env):
        context.load_verify_locations(capath=paths.capath)
    else:
        context.load_default_certs()


def _hashed_directory(path: str) -> bool:
    """Whether ``path`` holds certificates under OpenSSL's hashed names (``<8 hex>.<n>``)."""
    try:
        return any(_HASHED_NAME.fullmatch(name) for name in os.listdir(path))
    except OSError:
        return False
