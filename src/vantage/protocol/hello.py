"""The session hello: proof that a websocket belongs to an enrolled checkpoint instance.

The agent signs, with its instance identity key, a payload binding the server's challenge,
``<checkpoint>/<instance>`` and the control plane's URL, as type ``HELLO_TYPE``. The payload
type is part of the signed PAE, so neither an instruction nor a release envelope can ever pass
as a hello (nor the reverse), and a hello made for one control plane or challenge is useless
for another.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vantage import contract
from vantage.protocol import _payload
from vantage.protocol.constants import HELLO_TYPE
from vantage.protocol.envelope import sign
from vantage.protocol.envelope import verify as verify_envelope
from vantage.protocol.errors import VerificationError
from vantage.protocol.trust import TrustStore

PROTOCOL_VERSION = 1
DEFAULT_MAX_AGE = 60
#: websocket schemes compare equal to their HTTP counterparts (one server answers both).
_SCHEME_ALIASES = {"https": "https", "wss": "https", "http": "http", "ws": "http"}
_DEFAULT_PORTS = {"https": 443, "http": 80}


def normalize_url(url: str) -> str:
    """The comparable form of a control-plane URL: ``scheme://host:port[/path]``.

    Scheme and host are lower-cased, ``wss`` becomes ``https`` and ``ws`` becomes ``http``
    (the agent configured with ``https://cp`` connects to ``wss://cp/...``), the default port
    is made explicit (443/80), and trailing slashes are dropped. A path prefix is kept (a
    control plane behind a reverse proxy under ``/vantage``). :class:`ValueError` for other
    schemes, a missing host, a bad port, credentials, a query or a fragment.
    """
    if not isinstance(url, str):
        raise ValueError(f"URL must be a string, not {type(url).__name__}")  # noqa: TRY004 - API raises ValueError
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid URL {url!r}: {exc}") from None
    scheme = _SCHEME_ALIASES.get(parts.scheme.lower())
    if scheme is None:
        raise ValueError(f"URL {url!r} must use https, wss, http or ws")
    host = parts.hostname
    if not host:
        raise ValueError(f"URL {url!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"URL {url!r} must not contain credentials")
    if parts.query or parts.fragment or url.strip().endswith(("?", "#")):
        raise ValueError(f"URL {url!r} must not have a query or fragment")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    path = parts.path.rstrip("/")
    return f"{scheme}://{host}:{port if port is not None else _DEFAULT_PORTS[scheme]}{path}"


def _check_name(value: str, what: str) -> None:
    contract.check("name", value, what)


def make_hello(
    identity_key: Ed25519PrivateKey,
    *,
    challenge: str,
    checkpoint: str,
    instance: str,
    control_plane: str,
    now: float | None = None,
) -> dict[str, Any]:
    """The signed hello envelope answering ``challenge`` (64 lowercase hex digits)."""
    if not isinstance(challenge, str) or not _payload.HEX64.fullmatch(challenge):
        raise ValueError("challenge must be 64 lowercase hex digits")
    _check_name(checkpoint, "checkpoint")
    _check_name(instance, "instance")
    normalize_url(control_plane)  # refuse to sign for a URL the server could never accept
    payload = {
        "v": PROTOCOL_VERSION,
        "challenge": challenge,
        "checkpoint": checkpoint,
        "instance": instance,
        "control_plane": control_plane,
        "iat": int(time.time() if now is None else now),
    }
    return sign(HELLO_TYPE, _payload.encode(payload), identity_key)


def verify_hello(
    envelope: Mapping[str, Any],
    *,
    enrolled_public_key: str,
    challenge: str,
    checkpoint: str,
    instance: str,
    control_plane: str,
    now: float | None = None,
    max_age: int = DEFAULT_MAX_AGE,
) -> None:
    """Check a hello against what the server expects; raise :class:`VerificationError` if not.

    Order: envelope well formed, signed by the enrolled key (``malformed_envelope``,
    ``unknown_key``, ``bad_signature``) → JSON (``malformed_payload``) → payload type
    (``wrong_payload_type``) → fields (``malformed_payload``, ``unsupported_version``) →
    ``challenge`` (``wrong_challenge``) → checkpoint and instance (``wrong_instance``) →
    ``control_plane`` compared with :func:`normalize_url` (``wrong_control_plane``) →
    ``|now - iat| <= max_age`` (``not_yet_valid`` / ``expired``).
    ``control_plane`` is the server's own public URL (:class:`ValueError` if it is invalid, as
    for an invalid ``enrolled_public_key``: those are server-side configuration errors).
    """
    now = time.time() if now is None else now
    expected_url = normalize_url(control_plane)  # the server's own setting: ValueError if bad
    trust = TrustStore.single_key(enrolled_public_key)
    payload_type, payload, _keyid = verify_envelope(envelope, trust, now)
    obj = _payload.decode(payload)
    if payload_type != HELLO_TYPE:
        raise VerificationError("wrong_payload_type", f"expected {HELLO_TYPE}, got {payload_type[:80]!r}")
    _payload.require_version(obj, PROTOCOL_VERSION)
    got_challenge = _payload.require_str(obj, "challenge", pattern=_payload.HEX64)
    got_checkpoint = _payload.require_str(obj, "checkpoint", max_length=253)
    got_instance = _payload.require_str(obj, "instance", max_length=253)
    got_url = _payload.require_str(obj, "control_plane", max_length=2048)
    iat = _payload.require_int(obj, "iat")
    if not hmac.compare_digest(got_challenge.encode(), challenge.encode()):
        raise VerificationError("wrong_challenge", "the hello answers another challenge")
    if (got_checkpoint, got_instance) != (checkpoint, instance):
        raise VerificationError(
            "wrong_instance",
            f"hello is for {got_checkpoint[:80]!r}/{got_instance[:80]!r}, not {checkpoint}/{instance}",
        )
    try:
        matches = normalize_url(got_url) == expected_url
    except ValueError as exc:
        raise VerificationError("wrong_control_plane", str(exc)) from None
    if not matches:
        raise VerificationError("wrong_control_plane", f"hello is for {got_url[:200]!r}, not {control_plane}")
    if iat > now + max_age:
        raise VerificationError("not_yet_valid", f"hello issued at {iat}, now is {int(now)}")
    if iat < now - max_age:
        raise VerificationError("expired", f"hello issued at {iat}, older than {max_age}s")
